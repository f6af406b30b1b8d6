"""The mix dataset (ratios, one alphabet, same features) and evaluation on named sets (forgetting in the
summary, as seed 003 Tables 3-5 lay it out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import SPECS, write_spec

from compressor.core.errors import SpecError
from compressor.data.cache import default_cache_dir
from compressor.plugins import get_registry, reset_plugins
from compressor.run.engine import run_spec
from compressor.spec import load_spec

TINY = {"train_size": 48, "valid_size": 8, "test_size": 8, "num_speakers": 6, "frontend": "nemo_ctc"}
SOURCE = {"name": "read_speech", "language": "en", **TINY}
TARGET = {"name": "shifted", "condition": "domain", **TINY, "train_size": 24}


def build(args: dict):
    registry = get_registry()
    parsed = registry.parse_args("dataset", "mix", args, ("data",))
    return registry.get("dataset", "mix").factory(parsed, cache_dir=default_cache_dir(), seed=0)


def test_mix_draws_each_dataset_in_its_ratio_with_one_tokenizer() -> None:
    mix = build({"datasets": [{**TARGET, "ratio": 1}, {**SOURCE, "ratio": 3}], "epoch_size": 64})
    train = mix.dataset("train")
    assert mix.counts() == [16, 48] and len(train) == 24 + 48
    seen_target: set[int] = set()
    drawn = [0, 0]
    for epoch in range(3):
        batches = mix.batches("train", 8, shuffle=True, seed=0, epoch=epoch)
        assert batches == mix.batches("train", 8, shuffle=True, seed=0, epoch=epoch)  # deterministic
        for batch in batches:
            for i in batch:
                d, j = train.locate(i)
                drawn[d] += 1
                if d == 0:
                    seen_target.add(j)
    assert abs(drawn[0] / sum(drawn) - 0.25) < 0.05  # ratio 1 : 3 within tolerance
    assert seen_target == set(range(24))  # the small target is cycled through: every utterance used
    # one tokenizer for all: the finance words and the read-speech words decode with the mix's tokens
    item = train.item(0, 0)
    assert mix.tokenizer.decode(item["tokens"]) == item["text"]
    assert mix.info["vocab_size"] == 29 and len(mix.dataset("valid")) == 16


def test_mix_eval_datasets_pick_the_valid_and_test_splits() -> None:
    mix = build({"datasets": [{**TARGET, "ratio": 1}, {**SOURCE, "ratio": 1}], "eval_datasets": [0]})
    assert len(mix.dataset("valid")) == 8 and mix.epoch_size == 72
    assert {u.text.split()[0] for u in mix.dataset("test").utts} <= {
        "transfer", "deposit", "withdraw", "invest", "sell", "buy", "what", "the", "show"}


@pytest.mark.parametrize("parts, message", [
    ([SOURCE, {**SOURCE, "language": "de"}], "datasets\\[1\\] is language 'de' but datasets\\[0\\] is 'en': the "
                                            "datasets of a mix share one alphabet"),
    ([SOURCE, {**TARGET, "frontend": "kaldi"}], "datasets\\[1\\].frontend: front end 'kaldi' differs from "
                                                "'nemo_ctc'"),
    ([SOURCE, {**TARGET, "normalize": "per_feature"}], "normalisation 'per_feature' differs"),
    ([SOURCE, {**TARGET, "tokenizer": "bpe"}], "set 'tokenizer' on the mix itself"),
    ([SOURCE, {**TARGET, "ratio": 0}], "datasets\\[1\\].ratio must be a positive number"),
    ([SOURCE, {**TARGET, "name": "shifed"}], "unknown dataset 'shifed'; did you mean 'shifted'"),
    ([SOURCE], "at least 2 items"),
])
def test_incompatible_mixes_are_refused(parts: list, message: str) -> None:
    with pytest.raises(SpecError, match=message) as err:
        get_registry().parse_args("dataset", "mix", {"datasets": parts}, ("data",))
    assert str(err.value).startswith("<spec> at data")


def test_a_mix_of_sample_rates_is_refused() -> None:
    registry = get_registry()
    entry = registry.get("dataset", "read_speech")
    registry.add("dataset", "phone_speech", entry.factory, args=entry.args,
                 info=lambda args: {**entry.extra["info"](args), "sample_rate": 8000})
    try:
        with pytest.raises(SpecError, match="sample rate 8000 differs from 16000"):
            registry.parse_args("dataset", "mix", {"datasets": [SOURCE, {**SOURCE, "name": "phone_speech"}]},
                                ("data",))
    finally:
        reset_plugins()


def spec_with_sets(tmp_path: Path, sets: dict, **evaluate: object) -> dict:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["stages"][0]["steps"] = 3
    spec["evaluate"].update(sets=sets, **evaluate)
    return spec


def test_forgetting_shows_in_the_summary(tmp_path: Path) -> None:
    """Fine-tune on a target+source mix; evaluate source and target before and after, in one run."""
    # target: the mix's test split (eval_datasets: [0]); source: another dataset
    spec = spec_with_sets(tmp_path, {"target": {"split": "test"}, "source": {"data": SOURCE}, "gone": None},
                          before_training=True)
    spec["data"] = {"name": "mix", "datasets": [{**TARGET, "ratio": 1}, {**SOURCE, "ratio": 1}],
                    "eval_datasets": [0]}
    run_dir = run_spec(write_spec(tmp_path / "spec.yaml", spec))
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert set(results["sets"]) == {"start", "final"}
    for when in ("start", "final"):
        assert set(results["sets"][when]["student"]) == {"target", "source"}
        assert {"wer", "cer", "loss"} <= set(results["sets"][when]["student"]["source"])
    summary = (run_dir / "summary.md").read_text()
    assert "| model | target wer | target cer | source wer | source cer |" in summary
    assert "| student (before training) |" in summary and "\n| student | " in summary
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("type") == "eval_set" for r in records) == 4


@pytest.mark.parametrize("data, message", [
    ({**SOURCE, "language": "ru"}, "at evaluate.sets.source.data.language: language 'ru' has letters .* outside "
                                   "the run's 'en' alphabet"),
    ({**SOURCE, "frontend": "kaldi"}, "at evaluate.sets.source.data.frontend: front end 'kaldi' differs"),
    ({**SOURCE, "name": "read_spech"}, "unknown dataset 'read_spech'; did you mean 'read_speech'"),
])
def test_sets_the_models_cannot_read_are_refused(tmp_path: Path, data: dict, message: str) -> None:
    spec = spec_with_sets(tmp_path, {"source": {"data": data}})
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path / "spec.yaml", spec))
