"""Teachers made elsewhere, in the formats users hold (tiny random models written here, no hub):
transformers directories (wav2vec 2.0 / HuBERT / WavLM CTC, Whisper) and NeMo ``.nemo`` QuartzNet tars, each
distilled into a project student end to end; the waveform batch key; vocabularies that meet; bad files."""

from __future__ import annotations

import json
import shutil
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from support import SPECS, run_cli, write_spec
from support.teacher_files import nemo_config, nemo_state, save_tiny_ctc, save_tiny_whisper, write_nemo

from compressor.core.errors import SpecError, UserError
from compressor.plugins import get_plugins
from compressor.run.components import build_data
from compressor.run.engine import run_spec
from compressor.spec import load_spec

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # WavLM in torch 2.11


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("teachers")
    out = {arch: save_tiny_ctc(tmp / arch, arch) for arch in ("Wav2Vec2ForCTC", "HubertForCTC", "WavLMForCTC")}
    out["whisper"] = save_tiny_whisper(tmp / "whisper")
    out["nemo"] = write_nemo(tmp / "quartznet.nemo")
    return out


def spec_for(tmp: Path, teacher: dict[str, Any], plugin: dict[str, Any], *, from_teacher: bool = True,
             epochs: int = 2, name: str = "ext") -> dict[str, Any]:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec.update(name=name, output_dir=str(tmp / "runs"), teacher=teacher)
    spec["data"].update(train_size=16, valid_size=4, test_size=4, num_speakers=4)
    if from_teacher:
        spec["data"]["tokenizer"] = {"from_teacher": "teacher"}
    stage = spec["stages"][0]
    stage.pop("steps")
    stage.pop("lr_schedule")
    stage.update(name="distil", frozen=["teacher"], epochs=epochs, plugins=[plugin], eval={"every": "epoch"})
    spec["evaluate"] = {"split": "test", "models": ["teacher", "student"]}
    return spec


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- the waveform batch key ---------------------------------------------------------------------------------
def test_waveforms_come_only_when_a_model_reads_them(tmp_path: Path) -> None:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["data"].update(train_size=16, valid_size=4, test_size=4, num_speakers=4)
    loaded = load_spec(write_spec(tmp_path / "s.yaml", spec))
    data = build_data(loaded, get_plugins())  # quartznet reads features only
    idx = data.batches("train", 4, shuffle=False, seed=0, epoch=0)[0]
    plain = data.collate([data.dataset("train")[i] for i in idx])
    assert "audio" not in plain and "audio_lengths" not in plain
    assert set(data.info["batch_keys_on_request"]) == {"audio", "audio_lengths"}
    data.request({"audio", "audio_lengths"})
    both = data.collate([data.dataset("train")[i] for i in idx])
    assert set(both) == set(plain) | {"audio", "audio_lengths"}
    for key in plain:  # everything else exactly as before
        if isinstance(plain[key], torch.Tensor):
            assert torch.equal(plain[key], both[key]), key
        else:
            assert plain[key] == both[key], key
    audio, n, frames = both["audio"], both["audio_lengths"], both["feature_lengths"]
    assert audio.shape == (len(idx), int(n.max())) and audio.dtype == torch.float32
    assert torch.all((frames - n // 160).abs() <= 1)  # 16 kHz: 10 ms hops over the same audio
    for i in range(len(idx)):
        assert torch.all(audio[i, int(n[i]):] == 0) and audio[i, : int(n[i])].abs().max() > 0


# -- transformers CTC teachers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["Wav2Vec2ForCTC", "HubertForCTC", "WavLMForCTC"])
def test_hf_ctc_teacher_distils_into_quartznet_once_per_utterance(tmp_path: Path, files: dict[str, Path],
                                                                 arch: str) -> None:
    plugin = {"name": "logit_kd", "teacher": "teacher", "loss": "kl", "cache": True, "align": "interpolate"}
    spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(files[arch])}, plugin)
    run = run_spec(write_spec(tmp_path / "s.yaml", spec))
    rows = [r for r in metrics(run) if "teacher_cache_hits" in r]
    assert [r["teacher_cache_hits"] for r in rows if r["epoch"] == 0] == [0.0] * 2  # epoch 1 runs the teacher
    assert [r["teacher_cache_hits"] for r in rows if r["epoch"] == 1] == [1.0] * 2  # epoch 2 reads the cache
    assert all(r["loss/logit_kd"] > 0 for r in rows)
    resolved = yaml.safe_load((run / "resolved_spec.yaml").read_text())
    assert resolved["data"]["tokenizer"] == {"from_teacher": "teacher"}
    cached = list((run / "teacher_cache").glob("teacher-*.pt"))
    assert len(cached) == 1 and len(torch.load(cached[0], weights_only=True)["entries"]) == 16
    assert not (run / "offloaded").exists()  # safetensors weights are mapped from their file already
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else None
    if results is not None:
        assert "teacher" in json.dumps(results)


def test_student_adopts_the_teachers_vocabulary(tmp_path: Path, files: dict[str, Path]) -> None:
    plugin = {"name": "logit_kd", "teacher": "teacher", "align": "interpolate"}
    spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(files["Wav2Vec2ForCTC"])}, plugin)
    loaded = load_spec(write_spec(tmp_path / "s.yaml", spec))
    data = build_data(loaded, get_plugins())
    vocab = json.loads((files["Wav2Vec2ForCTC"] / "vocab.json").read_text())
    # the teacher's units, its pad (the CTC blank) moved last, '|' written '▁', upper case lowered
    assert data.info["tokens"][:4] == ["<s>", "</s>", "<unk>", "▁"] and data.info["tokens"][-1] == "<blk>"
    assert len(data.info["tokens"]) == len(vocab) and data.info["blank_id"] == len(vocab) - 1
    batch = data.collate([data.dataset("train")[0]])
    text = batch["text"][0]
    ids = batch["tokens"][0, : int(batch["token_lengths"][0])].tolist()
    assert "".join(data.info["tokens"][i] for i in ids).replace("▁", " ") == text
    assert "audio" in batch  # hf_speech reads waveforms: the data loads them


def test_logit_kd_refuses_teacher_with_other_units(tmp_path: Path, files: dict[str, Path]) -> None:
    plugin = {"name": "logit_kd", "teacher": "teacher"}
    spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(files["Wav2Vec2ForCTC"])}, plugin,
                    from_teacher=False)
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(tmp_path / "s.yaml", spec))
    msg = str(e.value)
    assert "32 units" in msg and "29" in msg and "from_teacher: teacher" in msg and "sequence-level KD" in msg
    assert e.value.path == ("stages", 0, "plugins", 0, "teacher")


def test_cache_refused_when_augmentation_changes_the_waveforms_a_teacher_hears(tmp_path: Path,
                                                                                files: dict[str, Path]) -> None:
    plugin = {"name": "logit_kd", "teacher": "teacher", "cache": True, "align": "interpolate"}
    spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(files["Wav2Vec2ForCTC"])}, plugin)
    spec["data"]["augment"] = {"noise_snr": [10, 20]}
    with pytest.raises(SpecError, match="waveform augmentation changes"):
        load_spec(write_spec(tmp_path / "s.yaml", spec))


def test_from_teacher_needs_a_model_with_a_vocabulary(tmp_path: Path) -> None:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["data"]["tokenizer"] = {"from_teacher": "student"}
    with pytest.raises(SpecError, match="no vocabulary of its own"):
        load_spec(write_spec(tmp_path / "s.yaml", spec))
    spec["data"]["tokenizer"] = {"from_teacher": "teachr"}
    with pytest.raises(SpecError, match="no model named 'teachr'"):
        load_spec(write_spec(tmp_path / "s.yaml", spec))


def test_per_frame_logits_at_another_rate_are_refused_unless_interpolated() -> None:
    from plugins.logit_kd import resample_frames

    teacher = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    out = resample_frames(teacher, torch.tensor([6, 4]), torch.tensor([3, 4]), 5)
    assert out.shape == (2, 5, 3)
    assert torch.equal(out[1, :4], teacher[1, :4]) and torch.all(out[0, 3:] == 0) and torch.all(out[1, 4:] == 0)
    assert torch.allclose(out[0, :3], torch.nn.functional.interpolate(
        teacher[0, :6].T[None], size=3, mode="linear")[0].T)


# -- bad transformers directories -------------------------------------------------------------------------------
def bad_dirs(files: dict[str, Path], tmp: Path) -> dict[str, tuple[Path, str]]:
    import transformers

    out = {}
    good = files["Wav2Vec2ForCTC"]
    base = tmp / "base"  # a wav2vec 2.0 without its CTC head
    shutil.copytree(good, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["architectures"] = ["Wav2Vec2Model"]
    (base / "config.json").write_text(json.dumps(cfg))
    out["architecture"] = (base, "holds a Wav2Vec2Model model; hf_speech loads Wav2Vec2ForCTC")
    novocab = tmp / "novocab"
    shutil.copytree(good, novocab)
    (novocab / "vocab.json").unlink()
    out["vocab"] = (novocab, "has no vocab.json")
    rate = tmp / "rate"
    shutil.copytree(good, rate)
    pc = json.loads((rate / "processor_config.json").read_text())
    pc["feature_extractor"]["sampling_rate"] = 8000
    (rate / "processor_config.json").write_text(json.dumps(pc))
    out["rate"] = (rate, "sampling_rate 8000, but the data gives 16 kHz")
    pickled = tmp / "pickled"
    shutil.copytree(good, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1), "code": transformers.Wav2Vec2Config()}, pickled / "pytorch_model.bin")
    out["pickle"] = (pickled, "is a pickle that torch.load(weights_only=True) refuses")
    return out


def test_bad_transformers_directories_are_one_line_exit_2(tmp_path: Path, files: dict[str, Path]) -> None:
    plugin = {"name": "logit_kd", "teacher": "teacher"}
    cases = bad_dirs(files, tmp_path)
    for what, (path, expected) in cases.items():
        spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(path)}, plugin)
        with pytest.raises(SpecError) as e:
            load_spec(write_spec(tmp_path / f"{what}.yaml", spec))
        assert expected in str(e.value), (what, str(e.value))
        assert e.value.path[:2] == ("teacher", "path"), what
    spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(cases["pickle"][0])}, plugin)
    res = run_cli("validate", str(write_spec(tmp_path / "cli.yaml", spec)))
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "weights_only" in lines[0] and "Traceback" not in res.stderr


# -- Whisper ----------------------------------------------------------------------------------------------------
def test_whisper_encoder_teaches_the_students_encoder(tmp_path: Path, files: dict[str, Path]) -> None:
    plugin = {"name": "representation_kd", "teacher": "teacher", "cache": True,
              "pairs": [{"name": "enc", "teacher": {"output": "states"},
                         "student": {"module": "encoder", "index": 0, "layout": "bct", "lengths": "none"},
                         "align": "interpolate", "loss": "mse"}]}
    spec = spec_for(tmp_path, {"name": "hf_speech", "path": str(files["whisper"])}, plugin, from_teacher=False)
    spec["evaluate"]["models"] = ["student"]  # Whisper's outputs are states and transcripts, not CTC logits
    bad = spec_for(tmp_path, spec["teacher"], {"name": "logit_kd", "teacher": "teacher"}, from_teacher=False)
    with pytest.raises(SpecError, match="gives no per-frame logits .* representation_kd"):
        load_spec(write_spec(tmp_path / "bad.yaml", bad))
    run = run_spec(write_spec(tmp_path / "s.yaml", spec))
    rows = [r for r in metrics(run) if "loss/repr_enc" in r]
    assert len(rows) == 4 and all(r["loss/repr_enc"] > 0 for r in rows)
    assert len(list((run / "teacher_cache").glob("teacher-*.pt"))) == 1

    from compressor.external.hf_speech import HFSpeechArgs, build_hf_speech

    model = build_hf_speech(HFSpeechArgs(path=str(files["whisper"]), max_new_tokens=4))
    texts = model.transcribe_batch({"audio": torch.randn(2, 8000) * 0.1, "audio_lengths": torch.tensor([8000, 6000])})
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


# -- NeMo .nemo ---------------------------------------------------------------------------------------------------
def test_nemo_checkpoint_maps_every_tensor_onto_quartznet(files: dict[str, Path]) -> None:
    from compressor.external.nemo_ctc import load_nemo_quartznet

    model, units = load_nemo_quartznet(files["nemo"])
    state = nemo_state(nemo_config())
    own = model.state_dict()
    assert units[0] == "▁" and units[-1] == "<blk>" and len(units) == 29
    # block 1, unit 1: NeMo's mconv.5/6/7 (after dw, pw, bn, act, dropout of unit 0)
    assert torch.equal(own["encoder.layers.1.units.1.depthwise.weight"], state["encoder.encoder.1.mconv.5.conv.weight"])
    assert torch.equal(own["encoder.layers.1.units.1.norm.running_var"], state["encoder.encoder.1.mconv.7.running_var"])
    assert torch.equal(own["encoder.layers.1.residual.0.weight"], state["encoder.encoder.1.res.0.0.conv.weight"])
    assert torch.equal(own["encoder.layers.3.units.0.pointwise.weight"], state["encoder.encoder.3.mconv.0.conv.weight"])
    assert torch.equal(own["decoder.weight"], state["decoder.decoder_layers.0.weight"])
    model.eval()
    out = model({"features": torch.randn(1, 50, 80), "feature_lengths": torch.tensor([50])})
    assert out["log_probs"].shape == (1, 25, 29)


def test_nemo_teacher_and_init_from(tmp_path: Path, files: dict[str, Path]) -> None:
    plugin = {"name": "logit_kd", "teacher": "teacher", "cache": True}
    spec = spec_for(tmp_path, {"name": "nemo_ctc", "path": str(files["nemo"])}, plugin)
    spec["data"]["normalize"] = "per_feature"  # NeMo's preprocessor normalises per feature
    # the student starts from the same checkpoint: what matches by name and shape loads (its first residual
    # block's first unit and residual), the rest (other kernels and widths) stays freshly initialised
    spec["student"] = {"name": "quartznet", "preset": "5x1", "size": "tiny",
                       "init_from": {"checkpoint": str(files["nemo"])}}
    run = run_spec(write_spec(tmp_path / "s.yaml", spec))
    report = json.loads((run / "init_from.json").read_text())["student"]
    assert "encoder.layers.1.units.0.depthwise.weight" in report["loaded"]
    assert "encoder.layers.1.residual.0.weight" in report["loaded"]
    assert any(s["key"] == "encoder.layers.0.units.0.depthwise.weight" for s in report["skipped"])
    rows = [r for r in metrics(run) if "teacher_cache_hits" in r]
    assert rows[-1]["teacher_cache_hits"] == 1.0 and rows[0]["teacher_cache_hits"] == 0.0
    assert (run / "offloaded" / "teacher.pt").is_file()  # its weights left memory once its outputs were cached


def test_bad_nemo_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    from compressor.external.nemo_ctc import read_nemo

    conformer = nemo_config(encoder="nemo.collections.asr.modules.ConformerEncoder")
    se = nemo_config()
    se["encoder"]["jasper"] = [dict(b, se=True) for b in se["encoder"]["jasper"]]
    cases = {
        "conformer": (write_nemo(tmp_path / "c.nemo", conformer, nemo_state(nemo_config())),
                      "ConformerEncoder, which does not map onto quartznet"),
        "citrinet": (write_nemo(tmp_path / "se.nemo", se), "squeeze-and-excitation"),
        "traversal": (write_nemo(tmp_path / "t.nemo", extra={"../evil.txt": b"x"}), "points outside the archive"),
        "pickle": (write_nemo(tmp_path / "p.nemo", state={"w": torch.zeros(1), "obj": UserError("x")}),
                   "weights_only=True"),
    }
    plugin = {"name": "logit_kd", "teacher": "teacher"}
    for what, (path, expected) in cases.items():
        spec = spec_for(tmp_path, {"name": "nemo_ctc", "path": str(path)}, plugin)
        with pytest.raises(SpecError) as e:
            load_spec(write_spec(tmp_path / f"{what}.yaml", spec))
        assert expected in str(e.value), (what, str(e.value))
    with pytest.raises(UserError, match="weights_only"):
        read_nemo(cases["pickle"][0])


def test_cache_key_hashes_models_with_batch_norm_counters() -> None:
    from compressor.teaching.teacher_cache import weights_hash

    model = torch.nn.BatchNorm1d(4)  # num_batches_tracked is a 0-d tensor
    first = weights_hash(model)
    model.num_batches_tracked += 1
    assert weights_hash(model) != first


def mapped_from(path: Path, tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s memory lies in a mapping of ``path`` (Linux /proc/self/maps)."""
    ptr = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= ptr < hi:
                return True
    return False


def test_offloaded_teacher_gives_the_same_outputs_from_a_mapped_file(tmp_path: Path,
                                                                      files: dict[str, Path]) -> None:
    from compressor.core.teachers import offload
    from compressor.external.hf_speech import HFSpeechArgs, build_hf_speech

    model = build_hf_speech(HFSpeechArgs(path=str(files["Wav2Vec2ForCTC"]))).eval()
    batch = {"audio": torch.randn(2, 8000) * 0.1, "audio_lengths": torch.tensor([8000, 6400])}
    with torch.no_grad():
        before = model(batch)
    keys = set(model.state_dict())
    grad = model.hf.lm_head.weight.requires_grad
    path = tmp_path / "teacher.pt"
    assert not mapped_from(path, model.hf.lm_head.weight)
    old = weakref.ref(model.hf.lm_head.weight)
    assert offload(model, path) and not offload(model, path)
    assert old() is None  # the in-memory weights are freed
    weight = model.hf.lm_head.weight
    assert mapped_from(path, weight) and weight.requires_grad == grad
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        after = model(batch)
    for k in ("logits", "states", "logit_lengths"):
        assert torch.equal(before[k], after[k]), k
