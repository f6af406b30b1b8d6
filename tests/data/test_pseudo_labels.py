"""Pseudo-labels from audio without transcripts: the normaliser's spellings, the filters and their counts,
unlabelled audio (a folder, a manifest without text, a labelled corpus with its labels hidden), and a project
teacher's pseudo-labels combined with logit KD end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from support.tones import LETTERS, synth

from compressor.core.errors import UserError


# -- the normaliser and the filters ------------------------------------------------------------------------
def test_british_spellings_map_onto_the_corpus_spelling():
    from compressor.teaching.transcripts import to_units, word_error_rate

    assert to_units("The Colour of the Theatre, organised!") == "the color of the theater organized"
    assert to_units("Colourful") == "colourful"  # whole words only: the table names no derived forms
    assert word_error_rate("the colour grey", "The color gray.") == 0.0
    assert word_error_rate("a b c", "a x c") == pytest.approx(1 / 3)
    assert word_error_rate("a", "") == 1.0 and word_error_rate("", "") == 0.0


def test_filters_count_what_each_keeps_and_drops_in_order():
    from compressor.teaching.pseudo_labels import FilterCounts, chars_per_second, judge
    from compressor.teaching.transcripts import Transcript

    def run(cases, **kw):
        counts = FilterCounts()
        counts.active |= {"min_confidence", "chars_per_second", "agreement", "reference_wer"}
        kept = [judge(counts, *case, language="en", **kw) for case in cases]
        return kept, {r["filter"]: (r["seen"], r["dropped"]) for r in counts.rows()}

    good = Transcript("turn on the light", -0.1)
    cases = [
        (None, None, 1.0, None, None),  # unreadable
        (Transcript("x", -3.0), "x", 1.0, None, None),  # low confidence
        (Transcript("Héllo", -0.1), None, 1.0, None, None),  # unmapped
        (good, "turn on the light", 0.2, good, None),  # 70 letters a second: a repetition loop
        (good, "turn on the light", 1.0, Transcript("turn off a lamp", -0.2), None),  # the two decodes disagree
        (good, "turn on the light", 1.0, good, "turn off the night"),  # far from its reference
        (good, "turn on the light", 1.0, good, "turn on the light"),  # kept
        (good, "turn on the light", 1.0, good, None),  # kept: no reference to judge
    ]
    kept, rows = run(cases, min_confidence=-1.0, cps=(1.0, 30.0), max_disagreement=0.25, max_wer=0.2)
    assert kept == [False] * 6 + [True, True]
    assert rows == {"unreadable": (8, 1), "min_confidence": (7, 1), "unmapped": (6, 1), "chars_per_second": (5, 1),
                    "agreement": (4, 1), "reference_wer": (2, 1)}  # judged: the two with a reference
    assert chars_per_second("ab cd", 2.0) == 2.0


# -- unlabelled audio --------------------------------------------------------------------------------------
def _wave(path: Path, g: torch.Generator) -> tuple[float, str]:
    ids = torch.randint(0, len(LETTERS), (int(torch.randint(2, 4, (1,), generator=g)),), generator=g).tolist()
    wave = synth(ids, g)
    sf.write(path, wave.numpy(), 16000)
    return wave.numel() / 16000, "".join(LETTERS[j] for j in ids)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tone utterances: labelled train/valid/test manifests, a folder of 6 audio files and a manifest of 4
    utterances without text."""
    root = tmp_path_factory.mktemp("pseudo")
    g = torch.Generator().manual_seed(3)
    for split, n in (("train", 16), ("valid", 4), ("test", 4)):
        lines = []
        for i in range(n):
            seconds, text = _wave(root / f"{split}_{i}.wav", g)
            lines.append(json.dumps({"audio_filepath": f"{split}_{i}.wav", "duration": seconds, "text": text}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "folder" / "sub").mkdir(parents=True)
    for i in range(6):
        _wave(root / "folder" / ("sub" if i % 2 else "") / f"u{i}.wav", g)
    (root / "folder" / "notes.txt").write_text("not audio", encoding="utf-8")
    lines = []
    for i in range(4):
        seconds, _ = _wave(root / f"audio_only_{i}.wav", g)
        lines.append(json.dumps({"audio_filepath": f"audio_only_{i}.wav", "duration": seconds}))
    (root / "audio_only.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _data(corpus: Path, **kw):
    from compressor.data.datasets import NemoManifestArgs, build_nemo_manifest

    args = NemoManifestArgs(train=str(corpus / "train.jsonl"), valid=str(corpus / "valid.jsonl"),
                            test=str(corpus / "test.jsonl"), frontend="nemo_ctc", **kw)
    return build_nemo_manifest(args, cache_dir=corpus / "cache", seed=0)


def test_unlabelled_audio_from_a_folder_and_a_manifest_without_text(corpus):
    from compressor.data.formats import read_nemo_manifest

    with pytest.raises(UserError, match="missing field"):  # a labelled manifest still needs its text
        read_nemo_manifest(corpus / "audio_only.jsonl", "train", strict=True)
    data = _data(corpus, unlabelled=[str(corpus / "folder"), str(corpus / "audio_only.jsonl")])
    train = data.dataset("train")
    unlabelled = [u for u in train.utts if not u.labelled]
    assert len(train) == 26 and len(unlabelled) == 10 and data.info["num_unlabelled"] == 10
    assert {u.id for u in unlabelled} >= {"u0.wav", "sub/u1.wav"}  # folder ids: paths under the folder
    assert all(train.tokens[train.utts.index(u)] == [] for u in unlabelled)
    # without a labeller, training batches leave the unlabelled audio out; with one they carry a 'labelled' mask
    seen = [i for b in data.batches("train", 4, shuffle=True, seed=0, epoch=0) for i in b]
    assert seen and all(train.utts[i].labelled for i in seen)
    data.include_unlabelled = True
    batches = data.batches("train", 26, shuffle=False, seed=0, epoch=0)
    batch = data.collate([train[i] for b in batches for i in b])
    assert int((~batch["labelled"]).sum()) == 10
    with pytest.raises(UserError, match=r"data.unlabelled: .*nowhere not found \(give a folder of audio files"):
        _data(corpus, unlabelled=str(corpus / "nowhere"))
    (corpus / "empty").mkdir(exist_ok=True)
    with pytest.raises(UserError, match="audio folder has no audio files"):
        _data(corpus, unlabelled=str(corpus / "empty"))


def test_hide_labels_hides_a_seeded_share_and_keeps_them_for_measuring(corpus):
    a, b = _data(corpus, hide_labels=0.75), _data(corpus, hide_labels=0.75)
    hidden = [u.id for u in a.dataset("train").utts if not u.labelled]
    assert len(hidden) == 12 and hidden == [u.id for u in b.dataset("train").utts if not u.labelled]
    assert all(u.hidden_text and not u.text for u in a.dataset("train").utts if not u.labelled)
    assert all(u.labelled for u in a.dataset("test").utts)  # only training transcripts are hidden
    audio_only = _data(corpus, hide_labels=1.0)  # characters need no transcripts to learn from
    assert not any(u.labelled for u in audio_only.dataset("train").utts)
    with pytest.raises(UserError, match="no transcripts to train on .*sequence_kd"):
        audio_only.batches("train", 4, shuffle=True, seed=0, epoch=0)
    with pytest.raises(UserError, match="data.tokenizer: a sentencepiece tokenizer learns its pieces"):
        _data(corpus, hide_labels=1.0, tokenizer="sentencepiece", vocab_size=8)


# -- a project teacher's pseudo-labels, with logit KD, end to end ------------------------------------------
def test_project_teacher_pseudo_labels_combine_with_logit_kd_and_reach_the_summary(corpus, tmp_path):
    from support import write_spec

    from compressor.run.engine import run_spec

    def quartznet() -> dict:
        return {"name": "quartznet", "preset": "5x1", "size": "tiny", "width": 0.25}

    def train(model: str, steps: int) -> dict:
        return {"name": f"train_{model}", "train": [model], "steps": steps, "batch_size": 4,
                "optimizer": {"name": "adamw", "lr": 0.01}}

    spec = {
        "name": "pseudo", "seed": 0, "output_dir": str(tmp_path / "runs"), "task": {"name": "ctc"},
        "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"), "valid": str(corpus / "valid.jsonl"),
                 "test": str(corpus / "test.jsonl"), "frontend": "nemo_ctc", "hide_labels": 0.25,
                 "unlabelled": str(corpus / "folder")},
        "teacher": quartznet(), "student": quartznet(), "models": {"second": quartznet()},
        "trainer": {"progress_bar": False, "threads": 1},
        "stages": [
            train("teacher", 120), train("second", 60),
            {"name": "distil", "train": ["student"], "frozen": ["teacher", "second"], "steps": 6, "batch_size": 8,
             "optimizer": {"name": "adamw", "lr": 0.003},
             "plugins": [{"name": "sequence_kd", "teacher": "teacher", "min_confidence": -2.0,
                          "chars_per_second": [0.5, 40.0], "agree_with": "second", "max_disagreement": 0.5,
                          "max_wer": 0.5},
                         {"name": "logit_kd", "teacher": "teacher", "loss": "kl", "temperature": 2.0}]}],
        "evaluate": {"split": "test", "models": ["student"]},
    }
    run_dir = run_spec(write_spec(tmp_path / "s.yaml", spec))
    report = json.loads((run_dir / "sequence_kd.json").read_text())
    # 6 in the folder, 4 hidden
    assert report["project_teacher"] and report["utterances"] == 22 and report["unlabelled"] == 10
    rows = {r["filter"]: r for r in report["filters"]}
    assert list(rows) == ["unreadable", "min_confidence", "unmapped", "chars_per_second", "agreement",
                          "reference_wer"]
    assert rows["unreadable"]["seen"] == 22
    assert sum(r["dropped"] for r in rows.values()) + report["pseudo_labelled"] == 22
    # the reference filter judges only the 12 utterances whose transcripts are visible
    assert 0 < rows["reference_wer"]["seen"] <= 12
    # pseudo-label WER is measured against the visible and the hidden transcripts (the folder has none)
    assert report["pseudo_label_references"] <= 16
    summary = (run_dir / "summary.md").read_text()
    assert "## Pseudo-labels" in summary and "| agreement | second within WER 0.5 |" in summary
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    distil = [m for m in metrics if "seqkd_pseudo_share" in m]
    assert distil and any("kd" in k for k in distil[-1])  # logit KD's term trained beside the pseudo-labels
    assert distil[0]["seqkd_pseudo_labelled"] == report["pseudo_labelled"]


def test_semi_supervised_batches_keep_references_and_drop_audio_without_a_pseudo_label():
    from compressor.core.context import StageContext
    from compressor.data.base import DataModule
    from compressor.families.ctc.task import CTCTask
    from compressor.spec import StageSpec
    from plugins.sequence_kd import SequenceKD

    blank = 5
    batch = {"features": torch.randn(4, 7, 80), "feature_lengths": torch.tensor([7, 6, 5, 4]),
             "tokens": torch.tensor([[0, 1], [2, 2], [blank, blank], [blank, blank]]),
             "token_lengths": torch.tensor([2, 2, 0, 0]), "text": ["ab", "cc", "", ""],
             "ids": ["lab0", "lab1", "audio0", "audio1"], "labelled": torch.tensor([True, True, False, False])}
    data = DataModule({}, {"blank_id": blank})
    ctx = StageContext(name="kd", index=0, stage=StageSpec(name="kd", train=["student"], steps=1), models={},
                       forward_model="student", task=CTCTask(CTCTask.Args(), data.info), data=data,
                       device=torch.device("cpu"), run_dir=Path("."), spec={})
    kd = SequenceKD(SequenceKD.Args(pseudo_fraction=0.0))
    kd.targets = {"lab0": ([4], "e"), "audio0": ([3, 3], "dd")}
    kd.dropped = {"audio1"}
    out = {k: (v.clone() if isinstance(v, torch.Tensor) else list(v)) for k, v in batch.items()}
    kd.compressor_transform_batch(ctx, out)
    # labelled utterances keep their references (pseudo_fraction 0); audio0 learns its pseudo-label; audio1 has
    # neither and leaves the batch; the mask is consumed
    assert out["ids"] == ["lab0", "lab1", "audio0"] and out["text"] == ["ab", "cc", "dd"]
    assert out["tokens"].tolist() == [[0, 1], [2, 2], [3, 3]] and "labelled" not in out
    assert ctx.scalars["seqkd_pseudo_share"] == pytest.approx(1 / 4)


def test_a_project_rnnt_teacher_transcribes_greedily_with_its_per_token_log_probability(corpus):
    from compressor.families.asr.metrics import detokenize
    from compressor.families.rnnt.loss import rnnt_loss_torch
    from compressor.families.rnnt.model import RNNTArgs, build_rnnt
    from compressor.families.rnnt.task import RNNTTask
    from compressor.teaching.pseudo_labels import project_transcripts

    data = _data(corpus, unlabelled=str(corpus / "folder"))
    torch.manual_seed(0)
    model = build_rnnt(RNNTArgs(size="tiny", encoder_layers=1, pred_layers=1), data.info)
    task = RNNTTask(RNNTTask.Args(max_symbols_per_frame=2), data.info)
    got = project_transcripts(model, task, data, "train", batch_size=5)
    train = data.dataset("train")
    assert len(got) == len(train) == 22 and model.training  # every utterance, audio-only ones too; mode restored
    blank = data.info["blank_id"]
    for i in (0, 17, 21):  # one at a time: the same greedy search, the same log P(y|x) per token
        batch = data.collate([{"features": train.features[i], "tokens": [], "text": "", "id": train.utts[i].id}])
        model.eval()
        with torch.no_grad():
            (hyp,) = task.decode(model, batch)
            batch["tokens"] = torch.tensor([hyp or [blank]])
            batch["token_lengths"] = torch.tensor([len(hyp)])
            out = task.forward(model, batch)
            nll = float(rnnt_loss_torch(out["logits"], batch["tokens"], out["logit_lengths"], batch["token_lengths"],
                                        blank, reduction="none")[0])
        model.train()
        assert got[i].text == detokenize(hyp, data.info["tokens"], blank)
        assert got[i].confidence == pytest.approx(-nll / max(1, len(hyp)), abs=1e-4) and got[i].confidence <= 0


def test_agree_with_names_a_frozen_model_of_the_spec(corpus, tmp_path):
    from support import write_spec

    from compressor.spec import load_spec

    q = {"name": "quartznet", "preset": "5x1", "size": "tiny", "width": 0.25}
    spec = {"name": "agree", "seed": 0, "output_dir": str(tmp_path), "task": {"name": "ctc"},
            "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"),
                     "valid": str(corpus / "valid.jsonl"), "frontend": "nemo_ctc"},
            "teacher": q, "student": q, "evaluate": {"split": "valid"},
            "stages": [{"name": "kd", "train": ["student"], "frozen": ["teacher"], "steps": 1,
                        "plugins": [{"name": "sequence_kd", "agree_with": "teachr"}]}]}
    with pytest.raises(UserError, match=r"plugins\[0\]\.agree_with.*no model named 'teachr'"):
        load_spec(write_spec(tmp_path / "a.yaml", spec))
    spec["stages"][0]["plugins"][0]["agree_with"] = "student"
    with pytest.raises(UserError, match="'student' is trained in this stage; agree_with names a frozen model"):
        load_spec(write_spec(tmp_path / "b.yaml", spec))
    spec["stages"][0]["plugins"][0] = {"name": "sequence_kd", "chars_per_second": [20, 2]}
    with pytest.raises(UserError, match=r"plugins\[0\]\.chars_per_second.*low <= high, got \[20\.0, 2\.0\]"):
        load_spec(write_spec(tmp_path / "c.yaml", spec))


def test_project_rnnt_teacher_pseudo_labels_combine_with_lattice_kd(corpus, tmp_path):
    from support import write_spec

    from compressor.run.engine import run_spec

    rnnt = {"name": "rnnt_lstm", "size": "tiny", "encoder_layers": 1, "pred_layers": 1}
    spec = {
        "name": "pseudo_lattice", "seed": 0, "output_dir": str(tmp_path / "runs"), "task": {"name": "rnnt"},
        "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"), "valid": str(corpus / "valid.jsonl"),
                 "test": str(corpus / "test.jsonl"), "unlabelled": str(corpus / "audio_only.jsonl"),
                 # 16 utterances in lhotse's 6 buckets make batches of 2-3: the 6-step teacher needs full ones
                 "sampler": "length_buckets"},
        "teacher": rnnt, "student": rnnt, "trainer": {"progress_bar": False, "threads": 1},
        "stages": [
            {"name": "teacher", "train": ["teacher"], "steps": 6, "batch_size": 8,
             "optimizer": {"name": "adamw", "lr": 0.01}},
            {"name": "distil", "train": ["student"], "frozen": ["teacher"], "steps": 4, "batch_size": 10,
             "optimizer": {"name": "adamw", "lr": 0.003},
             "plugins": [{"name": "sequence_kd", "teacher": "teacher", "pseudo_fraction": 0.0},
                         {"name": "lattice_kd", "teacher": "teacher", "alpha": 0.01}]}],
        "evaluate": {"split": "test", "models": ["student"]},
    }
    run_dir = run_spec(write_spec(tmp_path / "s.yaml", spec))
    report = json.loads((run_dir / "sequence_kd.json").read_text())
    assert report["project_teacher"] and report["utterances"] == 20 and report["unlabelled"] == 4
    # every utterance is labelled (and measured where a reference exists); the 16 train on their references
    assert report["pseudo_label_references"] == 16
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    distil = [m for m in metrics if "seqkd_pseudo_share" in m]
    assert distil and all("loss/lattice_kd" in m for m in distil)


def test_a_mix_refuses_parts_with_audio_without_transcripts(corpus):
    from compressor.data.mix import MixArgs, build_mix

    part = {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"), "valid": str(corpus / "valid.jsonl"),
            "frontend": "nemo_ctc"}
    args = MixArgs(datasets=[part, {**part, "hide_labels": 0.5}])
    with pytest.raises(UserError, match=r"mix datasets\[1\] \(nemo_manifest\): audio without transcripts"):
        build_mix(args, cache_dir=corpus / "cache", seed=0)
