"""Registers the SLU family: task ``classification``, models ``seq_classifier`` and ``slu_student``, and the
export unit ``classifier`` of every utterance classifier (``vq_bert_ds2`` registers itself)."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.families.slu.classifier import SeqClassifierArgs, build_seq_classifier
from compressor.families.slu.student import SLUStudentArgs, build_slu_student
from compressor.families.slu.task import Classification


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("task", Classification.name, Classification)
    registry.add("model", "seq_classifier", build_seq_classifier, args=SeqClassifierArgs,
                 reads=("features", "feature_lengths"), outputs=("logits", "hidden"))
    registry.add("model", "slu_student", build_slu_student, args=SLUStudentArgs,
                 reads=("features", "feature_lengths"),
                 outputs=("logits", "hidden", "intent_states", "acoustic", "log_probs", "logit_lengths"))
    registry.add("export_unit", "classifier", "compressor.families.slu.export:ClassifierExport", order=30,
                 doc="Utterance classifiers (task 'classification') for onnxruntime, features in, logits out.")
