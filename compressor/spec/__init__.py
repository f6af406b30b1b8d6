"""Specs: YAML files that name a task, data, models, ordered training stages and their plugins.

Loading is safe (``yaml.safe_load`` semantics: tags that would build Python objects are refused) and all
validation happens before any work: every error names the file, the line, the key path, what was expected,
and the closest valid name for a typo. docs/specs.md and the generated docs/reference pages list every key.

One job per module: :mod:`~compressor.spec.schema` (the pydantic models of the keys),
:mod:`~compressor.spec.loading` (bounded YAML and ``--set`` overrides), :mod:`~compressor.spec.location`
(an error's file, line and key path), :mod:`~compressor.spec.checks` (checks across the whole spec and the
:class:`CheckContext` strategies receive), :mod:`~compressor.spec.resolve` (:func:`load_spec`) and
:mod:`~compressor.spec.resolved` (the :class:`LoadedSpec` it returns).
"""

from compressor.core.registry import first_model, validate_model
from compressor.spec.checks import CheckContext, check_checkpoint, check_splits, data_info, model_reads
from compressor.spec.loading import apply_overrides, dump_spec, parse_override, read_yaml
from compressor.spec.resolve import load_spec
from compressor.spec.resolved import LoadedSpec, ResolvedStage
from compressor.spec.schema import (
    DEFAULT_SPLITS,
    BaselineSpec,
    EvalSetSpec,
    EvalSpec,
    EvaluateSpec,
    ExportSpec,
    InitFrom,
    LRScheduleRef,
    ModelSpec,
    OptimizerRef,
    Ref,
    ReferenceResult,
    Spec,
    StageSpec,
    TrainerSpec,
    safe_name,
)

__all__ = [
    "DEFAULT_SPLITS", "BaselineSpec", "CheckContext", "EvalSetSpec", "EvalSpec", "EvaluateSpec", "ExportSpec",
    "InitFrom",
    "LRScheduleRef", "LoadedSpec", "ModelSpec", "OptimizerRef", "Ref", "ReferenceResult", "ResolvedStage",
    "Spec", "StageSpec", "TrainerSpec", "apply_overrides", "check_checkpoint", "check_splits", "data_info",
    "dump_spec", "first_model", "load_spec", "model_reads", "parse_override", "read_yaml", "safe_name",
    "validate_model",
]
