"""Reliability: spec loading is bounded, and validation refuses before any work everything it can check.

Every case is refused with exit code 2, one line, no traceback, and no run directory (``run`` is used, not
only ``validate``, to prove nothing is written).
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from support import write_spec
from support.reliability import cli, one_line, tiny

from compressor.core.errors import SpecError
from compressor.spec import load_spec
from compressor.spec.safe_yaml import MAX_DEPTH, MAX_NODES

HEAD = """name: bomb
task: {name: classification}
data: {name: synthetic_features, num_classes: 4, feature_dim: 8}
student: {name: seq_classifier, hidden: 8}
stages: [{name: s, train: [student], steps: 1}]
"""


def _list_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return HEAD + "x:\n" + "\n".join("  " + line for line in lines) + f"\ndescription: *a{levels}\n"


def _mapping_bomb(levels: int, merge: bool) -> str:
    lines = ["k0: &k0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, levels + 1):
        if merge:  # '<<' merges: PyYAML's flattening alone would copy 9^levels key pairs
            body = f"<<: [{', '.join([f'*k{i - 1}'] * 9)}]"
        else:
            body = ", ".join(f"m{j}: *k{i - 1}" for j in range(9))
        lines.append(f"k{i}: &k{i} {{{body}}}")
    return HEAD + "x:\n" + "\n".join("  " + line for line in lines) + f"\nmodels: {{p: *k{levels}}}\n"


def _string_bomb() -> str:
    long = "x" * 200_000
    return HEAD + f"x: &s '{long}'\nmodels: {{p: {{name: seq_classifier, note: [{', '.join(['*s'] * 50)}]}}}}\n"


BOMBS = {
    "list_9_levels": (_list_bomb(9), "nodes"),
    "list_30_levels": (_list_bomb(30), "nodes"),  # 9^30 nodes as a tree
    "nested_mappings": (_mapping_bomb(12, merge=False), "nodes"),
    "merge_keys": (_mapping_bomb(12, merge=True), "nodes"),
    "long_string_x50": (_string_bomb(), "characters"),
    "recursive_alias": (HEAD + "x: &r [1, *r]\n", "contains it"),
    "deep_lists": (HEAD + "x: " + "[" * 5000 + "]" * 5000 + "\n", f"deeper than {MAX_DEPTH}"),
    "deep_mappings": (HEAD + "x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", f"deeper than {MAX_DEPTH}"),
    "deep_block": (HEAD + "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v\n",
                   f"deeper than {MAX_DEPTH}"),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_yaml_bombs_are_refused_fast_with_bounded_memory(tmp_path: Path, capsys, kind: str) -> None:
    text, fragment = BOMBS[kind]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_spec(path)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert fragment in str(info.value) and str(info.value).startswith(f"{path}:")
    # The unbounded loader took 10 s and 0.9 GB for 5 levels; bounded it is milliseconds and the text's size.
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert seconds < 5, f"{seconds:.2f} s"
    code, err = cli(capsys, "run", path)
    assert code == 2 and fragment in one_line(err)
    assert not (tmp_path / "runs").exists()


def test_node_limit_leaves_room_for_real_specs(tmp_path: Path) -> None:
    # a long but honest spec (40,000 plain nodes, no aliases) is still read: the limit is far above real specs
    text = HEAD + "x:\n" + "".join(f"  - [{i}, {i + 1}, {i + 2}]\n" for i in range(MAX_NODES // 10))
    path = tmp_path / "long.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="unknown key 'x'"):
        load_spec(path)


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda p: p.write_text(HEAD + "#" * (2 << 20) + "\n"), "larger than 1024 KiB"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 10), "not a UTF-8 text file"),
    (lambda p: p.mkdir(), "directory"),
    (lambda p: p.symlink_to(p), "cannot read the spec"),
    (lambda p: p.write_text(HEAD + "seed: " + "9" * 5000 + "\n"), "cannot convert"),
    (lambda p: p.write_text(HEAD + "---\n" + HEAD), "malformed YAML"),
    (lambda p: p.write_text(HEAD + "x: !!python/object/apply:os.system [echo hi]\n"), "is not allowed"),
    (lambda p: p.write_text(HEAD + "x: *nowhere\n"), "malformed YAML"),
])
def test_hostile_spec_files(tmp_path: Path, capsys, make, fragment: str) -> None:
    path = tmp_path / "spec.yaml"
    make(path)
    code, err = cli(capsys, "validate", path)
    assert code == 2 and fragment in one_line(err), err


def test_dev_zero_as_a_spec_is_refused_without_reading_it_all(capsys) -> None:
    code, err = cli(capsys, "validate", "/dev/zero")
    assert code == 2 and "larger than 1024 KiB" in one_line(err)


# -- duplicate keys ---------------------------------------------------------------------------------------


def test_duplicate_keys_name_both_lines(tmp_path: Path, capsys) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(HEAD + "seed: 1\ndescription: x\nseed: 2\n")
    code, err = cli(capsys, "validate", path)
    line = one_line(err)
    assert code == 2 and "duplicate key 'seed' (first at line 6, again at line 8)" in line, line
    assert f"{path}:8" in line


def test_duplicate_keys_nested_in_a_flow_mapping_and_in_set(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "dup.yaml"
    spec.write_text(HEAD.replace("hidden: 8}", "hidden: 8, hidden: 16}"))
    code, err = cli(capsys, "validate", spec)
    assert code == 2 and "duplicate key 'hidden'" in one_line(err)
    good = write_spec(tmp_path / "good.yaml", tiny(tmp_path))
    code, err = cli(capsys, "validate", good, "--set", "student={name: seq_classifier, hidden: 4, hidden: 8}")
    line = one_line(err)
    assert code == 2 and line.startswith("error: --set student=") and "duplicate key 'hidden'" in line


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    # '<<: *base' then an explicit key is YAML's override idiom, not a duplicate
    path = tmp_path / "merge.yaml"
    path.write_text(HEAD.replace("student: {name: seq_classifier, hidden: 8}",
                                 "base: &m {name: seq_classifier, hidden: 8}\nstudent: {<<: *m, hidden: 4}")
                    .replace("base:", "models: {}\nx:"))
    with pytest.raises(SpecError, match="unknown key 'x'"):
        load_spec(path)


# -- --set errors name the flag ------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "fragment"), [
    ("stages[0].epochs=-1", "greater than or equal to 1"),
    ("stages.0.epochs=lots", "valid integer"),
    ("trainer.nosuch=1", "unknown key 'nosuch'"),
    ("stages[7].epochs=1", "no list item 7"),
    ("stages[1].train=[teacher]", "both trained and frozen"),  # found at stages[1].frozen, a sibling key
    ("student.name=seq_clasifier", "did you mean 'seq_classifier'"),
    ("seed.x=1", "cannot set a key inside a scalar"),
    ("description=[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
     "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
     "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]]", "nodes"),
    ("a" + ".a" * 200 + "=1", "deeper than"),
])
def test_set_errors_name_the_flag_not_the_file(tmp_path: Path, capsys, flag: str, fragment: str) -> None:
    spec = write_spec(tmp_path / "tiny.yaml", tiny(tmp_path))
    code, err = cli(capsys, "run", spec, "--set", flag)
    line = one_line(err)
    assert code == 2 and fragment in line, line
    assert line.startswith(f"error: --set {flag[:20]}"), line
    assert "tiny.yaml" not in line
    assert not (tmp_path / "runs").exists()


def test_a_file_error_stays_at_its_line_despite_an_unrelated_set(tmp_path: Path, capsys) -> None:
    spec = tiny(tmp_path)
    spec["stages"][1]["frozen"] = ["teacher", "student"]  # the file's own mistake
    path = write_spec(tmp_path / "tiny.yaml", spec)
    code, err = cli(capsys, "validate", path, "--set", "stages[1].epochs=3")
    line = one_line(err)
    assert code == 2 and "both trained and frozen" in line and f"{path}:" in line and "--set" not in line


# -- everything checkable is checked before work ----------------------------------------------------------------


CASES = [
    # (--set flags separated by " ; ", fragment of the message)
    ("stages[0].epochs=1000000000", "less than or equal to 10000"),
    ("stages[0].steps=100000000000", "less than or equal to 10000000"),
    # 12,000 steps an epoch x 900 epochs: found with the data, before the run directory exists
    ("data.train_size=12000 ; stages[0].batch_size=1 ; stages[0].epochs=900", "more than 10,000,000 optimizer"),
    ("data.train_size=1000000000", "more than this machine's memory"),
    ("data.feature_dim=1000000000", "more than this machine's memory"),
    ("seed=1000000000000000000000000000000", "less than 4294967296"),
    ("seed=-1", "greater than or equal to 0"),
    ("stages[0].optimizer.lr=.inf", "finite number"),
    ("stages[1].plugins[0].weight={name: constant, value: .nan}", "finite number"),
    ("stages[1].plugins[0].temperature=.inf", "finite number"),
    ("stages[0].grad_clip=.nan", "finite number"),
    ("stages[0].lr_schedule.min_lr=-.inf", "finite number"),
    ("stages[0].eval.split=tset", "no split 'tset'; did you mean 'test'"),
    ("evaluate.split=dev", "no split 'dev'"),
    ("name=" + "n" * 300, "1 to 128"),
    ("name=..", "not starting with '.'"),
    ("name=.", "not starting with '.'"),
    ("name=../../escape", "letters, digits"),
    ("name=-rf", "not starting with '.' or '-'"),
    ("stages[0].name=../../../tmp/x", "letters, digits"),
    ("models={../evil: {name: seq_classifier}}", "letters, digits"),
    ("output_dir=/dev/null", "is not a directory"),
    ("output_dir=/dev/null/runs", "is not a directory"),
    ("output_dir=/proc/version/runs", "is not a directory"),
    ("student.hidden=1000000000", "too large"),
    ("teacher.layers=100000000", "too large"),
    ("student.hidden=100000", "too large"),  # 160 GB of training state: plausible-looking, still too much
    ("trainer.num_workers=100000", "CPUs"),
    ("trainer.threads=100000", "CPUs"),
    ("stages[0].grad_accum=1000", "leaves no full step"),  # found with the data, before the run dir
]


@pytest.mark.parametrize(("flags", "fragment"), CASES, ids=[c[0][:40] for c in CASES])
def test_refused_before_any_work(tmp_path: Path, capsys, flags: str, fragment: str) -> None:
    spec = write_spec(tmp_path / "tiny.yaml", tiny(tmp_path))
    t0 = time.perf_counter()
    code, err = cli(capsys, "run", spec, *[a for f in flags.split(" ; ") for a in ("--set", f)])
    line = one_line(err)
    assert code == 2 and fragment in line, line
    assert time.perf_counter() - t0 < 30  # the unchecked runs hung or ran out of memory
    assert not (tmp_path / "runs").exists(), "a refused run left a run directory behind"


def test_output_dir_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("precious")
    for out in ("file", "file/runs"):
        spec = write_spec(tmp_path / "tiny.yaml", tiny(tmp_path, output_dir=str(tmp_path / out)))
        code, err = cli(capsys, "run", spec)
        assert code == 2 and "output_dir" in one_line(err) and "not a directory" in err
    assert (tmp_path / "file").read_text() == "precious"


def _spec_with_checkpoint(tmp_path: Path, make) -> Path:
    ckpt = tmp_path / "teacher.pt"
    make(ckpt)
    return write_spec(tmp_path / "tiny.yaml", tiny(tmp_path, teacher={
        "name": "seq_classifier", "encoder": "lstm", "hidden": 32, "layers": 2, "checkpoint": str(ckpt)}))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p: p.write_bytes(b"PK\x03\x04 garbage"), "cannot load checkpoint"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.symlink_to(p), "cannot read checkpoint"),
    (lambda p: torch.save({"model": _Evil()}, p), "cannot load checkpoint"),
    (lambda p: torch.save([1, 2, 3], p), "does not hold a model state dict"),
    (lambda p: torch.save({"encoder.weight_ih_l0": torch.zeros(3, 3)}, p), "does not match"),
], ids=["empty", "garbage", "directory", "symlink-loop", "malicious-pickle", "a-list", "wrong-shapes"])
def test_checkpoints_are_checked_at_validation(tmp_path: Path, capsys, make, fragment: str) -> None:
    spec = _spec_with_checkpoint(tmp_path, make)
    code, err = cli(capsys, "run", spec)
    line = one_line(err)
    assert code == 2 and fragment in line and "teacher.checkpoint" in line and "teacher.pt" in line, line
    assert "pwned" not in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_real_format_without_a_test_split_is_refused_before_training(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    spec = tiny(tmp_path, data={"name": "nemo_manifest", "train": str(manifest), "valid": str(manifest)})
    code, err = cli(capsys, "validate", write_spec(tmp_path / "s.yaml", spec))
    assert code == 2 and "evaluate.split" in one_line(err) and "no split 'test'" in err


def test_batch_counts_for_step_budgets_are_exact(monkeypatch) -> None:
    """Stage budgets count batches in constant time per epoch: the counts equal the real batching's."""
    import random
    import types

    import compressor.data.speech as speech
    from compressor.data.base import DataModule, ListDataset

    class Lengths:
        def __init__(self, n: int) -> None:
            self.lengths = [random.randint(5, 50) for _ in range(n)]
            self.epoch = 0

        def __len__(self) -> int:
            return len(self.lengths)

    monkeypatch.setattr(speech, "SpeechSplit", Lengths)
    for n in (1, 2, 5, 16, 17, 33, 101):
        for bs in (1, 2, 3, 4, 7, 16, 64):
            modules = [DataModule({"train": ListDataset(list(range(n)))}),
                       speech.SpeechDataModule({"train": Lengths(n)}, {}, num_buckets=6)]
            partly = Lengths(n)  # audio-only utterances (hidden or missing transcripts) are not trained on
            partly.utts = [types.SimpleNamespace(labelled=i % 3 != 1) for i in range(n)]
            modules.append(speech.SpeechDataModule({"train": partly}, {}, num_buckets=6))
            for dm in modules:
                for shuffle in (True, False):
                    real = len(dm.batches("train", bs, shuffle=shuffle, seed=1, epoch=2))
                    assert dm.num_batches("train", bs, shuffle=shuffle, seed=1, epoch=2) == real, (n, bs, shuffle)
