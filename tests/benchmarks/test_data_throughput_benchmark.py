"""benchmarks/speed/data_throughput.py --quick: the before/after section (length_buckets against lhotse's sampler,
the NeMo-manifest dataset path against the lhotse cuts one) on a tiny corpus, merged into the results file."""

from __future__ import annotations

import json
from pathlib import Path

from support import load_benchmark


def test_quick_before_after_keeps_the_other_keys(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "data_throughput.json"
    out.write_text(json.dumps({"loader_cached_utt_per_s": 1.0}))
    bench = load_benchmark("data_throughput")
    argv = ["--quick", "--utterances", "24", "--batch-size", "8", "--max-frames", "1200", "--repeats", "2",
            "--epochs", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text())
    assert results["loader_cached_utt_per_s"] == 1.0
    ba = results["before_after"]
    assert ba["train_utterances"] == 24 and ba["repeats"] == 2
    before, after = ba["sampler"]["before"], ba["sampler"]["after"]
    assert after["utterances_per_epoch"] == 24  # lhotse's sampler keeps every utterance
    assert 24 - 8 < before["utterances_per_epoch"] <= 24  # length_buckets may drop a short remainder
    for side in (before, after, ba["dataset"]["before"], ba["dataset"]["after"]):
        assert side["utt_per_s"] > 0 and side["batches_per_s"] > 0 and side["padding_fraction"] >= 0
    # the same utterances and the same sampler: the two dataset paths give the same batches
    assert ba["dataset"]["before"]["batches_per_epoch"] == ba["dataset"]["after"]["batches_per_epoch"]
    assert ba["dataset"]["before"]["padding_fraction"] == ba["dataset"]["after"]["padding_fraction"]
    assert ba["dataset"]["before"]["build_s"] > 0
    assert "sampler: lhotse (after)" in capsys.readouterr().out
