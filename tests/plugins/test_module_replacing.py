"""Module replacing (LCMR / BERT-of-Theseus): the math of Eq. 1-4, its schedulers (Eq. 5), and validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from support import SPECS, run_cli, write_spec
from torch import nn

from compressor.core.context import StageContext
from compressor.core.errors import SpecError
from compressor.core.introspect import Pairing, pair_containers, validate_pairings
from compressor.core.schedules import Constant, Exponential, Linear, LogCurriculum
from compressor.families.rnnt.model import RNNTArgs, build_rnnt
from compressor.spec import StageSpec, load_spec
from plugins.module_replacing import ModuleReplacing, TheseusModel

INFO = {"feature_dim": 80, "vocab_size": 10, "blank_id": 9}


def _batch() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"features": torch.randn(2, 30, 80, generator=g), "feature_lengths": torch.tensor([30, 24]),
            "tokens": torch.randint(0, 9, (2, 4), generator=g), "token_lengths": torch.tensor([4, 3])}


def _ctx(models: dict[str, nn.Module], train: list[str], frozen: list[str], steps: int = 10) -> StageContext:
    stage = StageSpec(name="lcmr", train=train, frozen=frozen, steps=steps)
    return StageContext(name="lcmr", index=0, stage=stage, models=dict(models), forward_model=train[0],
                        task=None, data=None, device=torch.device("cpu"), run_dir=Path("."), spec={},
                        total_steps=steps)


def _strategy(**kw) -> ModuleReplacing:
    args = ModuleReplacing.Args(**{"containers": ["encoder.layers", "predictor.layers"], **kw})
    return ModuleReplacing(args)


def _rnnt_pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = build_rnnt(RNNTArgs(preset="exp1_teacher", size="tiny"), INFO)
    student = build_rnnt(RNNTArgs(preset="exp1_student", size="tiny"), INFO)
    return teacher, student


# -- Eq. 1-4 ------------------------------------------------------------------------------------------


def test_rnnt_p0_is_teacher_p1_is_student_and_keys_stay_stable() -> None:
    teacher, student = _rnnt_pair()
    keys = (list(teacher.state_dict()), list(student.state_dict()))
    strategy = _strategy(replacing_rate={"name": "constant", "value": 0.0}, allow_partial=True)
    ctx = _ctx({"teacher": teacher, "student": student}, ["student"], ["teacher"])
    strategy.compressor_prepare_models(ctx)
    hybrid = ctx.models["theseus"]
    assert ctx.forward_model == "theseus"
    assert (list(teacher.state_dict()), list(student.state_dict())) == keys  # structures untouched
    batch = _batch()
    hybrid.train()
    hybrid.draw(0.0)
    assert torch.equal(hybrid(batch)["logits"], teacher(batch)["logits"])
    hybrid.draw(1.0)
    assert torch.equal(hybrid(batch)["logits"], student(batch)["logits"])
    hybrid.eval()  # evaluation measures the student
    assert torch.equal(hybrid(batch)["logits"], student(batch)["logits"])
    # mixed draw: the gradient reaches exactly the modules that ran
    hybrid.train()
    hybrid.set_gates([1, 0, 1])
    hybrid(batch)["logits"].sum().backward()
    assert student.encoder.layers[0].weight_ih_l0.grad is not None
    assert student.encoder.layers[1].weight_ih_l0.grad is None
    assert teacher.encoder.layers[0].weight_ih_l0.grad is None
    assert teacher.encoder.layers[2].weight_ih_l0.grad is not None
    strategy.compressor_finalize_student(ctx)
    assert "theseus" not in ctx.models and ctx.forward_model == "student"


def test_draws_use_global_rng_and_follow_p() -> None:
    teacher, student = _rnnt_pair()
    strategy = _strategy()
    ctx = _ctx({"teacher": teacher, "student": student}, ["student"], ["teacher"], steps=100)
    strategy.compressor_prepare_models(ctx)
    torch.manual_seed(5)
    first = [ctx.models["theseus"].draw(0.5).tolist() for _ in range(200)]
    torch.manual_seed(5)
    again = [ctx.models["theseus"].draw(0.5).tolist() for _ in range(200)]
    assert first == again
    assert 0.4 < sum(map(sum, first)) / 600 < 0.6
    ctx.step = 0
    strategy.compressor_step_start(ctx)
    assert ctx.scalars["replacing_rate"] == pytest.approx(math.log(2.0) / math.log(40.0))


def test_strategy2_updates_only_student_modules() -> None:
    teacher, student = _rnnt_pair()
    teacher.requires_grad_(False)  # the engine freezes the stage's frozen models
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    strategy = _strategy(replacing_rate={"name": "linear", "start": 0.5, "end": 1.0})
    ctx = _ctx({"teacher": teacher, "student": student}, ["student"], ["teacher"], steps=6)
    strategy.compressor_prepare_models(ctx)
    hybrid = ctx.models["theseus"]
    opt = torch.optim.SGD([p for p in hybrid.parameters() if p.requires_grad], lr=0.5)
    from torchaudio.functional import rnnt_loss

    for step in range(6):
        ctx.step = step
        strategy.compressor_step_start(ctx)
        out = hybrid(_batch())
        b = _batch()
        loss = rnnt_loss(out["logits"], b["tokens"].int(), out["logit_lengths"].int(),
                         b["token_lengths"].int(), blank=9)
        opt.zero_grad()
        loss.backward()
        opt.step()
    strategy.compressor_finalize_student(ctx)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before_t[k]), k
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before_s[k])}
    assert any(k.startswith("encoder.layers.") for k in changed)
    # shared parts (joint network, embedding, projections) are the teacher's in the compact student (Eq. 4)
    assert torch.equal(student.joiner.out.weight, teacher.joiner.out.weight)
    assert torch.equal(student.predictor.embedding.weight, teacher.predictor.embedding.weight)


class _TransformerModel(nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, batch: dict) -> dict:
        mask = batch["mask"]
        return {"logits": self.head(self.encoder(self.embed(batch["x"]), src_key_padding_mask=mask))}


def test_generic_transformer_encoder_p0_teacher_p1_student() -> None:
    torch.manual_seed(0)
    teacher, student = _TransformerModel(4), _TransformerModel(2)
    pairings = pair_containers(teacher, student, "encoder.layers", "encoder.layers")
    assert pairings[0] == Pairing(("encoder.layers.0", "encoder.layers.1"), ("encoder.layers.0",))
    validate_pairings(teacher, student, pairings)
    strategy = ModuleReplacing(ModuleReplacing.Args(containers=["encoder.layers"]))
    ctx = _ctx({"teacher": teacher, "student": student}, ["student"], ["teacher"])
    strategy.compressor_prepare_models(ctx)
    hybrid = ctx.models["theseus"].train()
    batch = {"x": torch.randn(2, 7, 6), "mask": torch.tensor([[False] * 7, [False] * 5 + [True] * 2])}
    teacher.train(), student.train()
    hybrid.set_gates([0, 0])
    assert torch.allclose(hybrid(batch)["logits"], teacher(batch)["logits"], atol=1e-6)
    hybrid.set_gates([1, 1])
    assert torch.allclose(hybrid(batch)["logits"], student(batch)["logits"], atol=1e-6)


def test_generic_mlp_stack_with_explicit_groups() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(6)])
    student = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(2)])
    pairings = [Pairing(("0", "1", "2", "3"), ("0",)), Pairing(("4", "5"), ("1",))]
    validate_pairings(teacher, student, pairings)
    hybrid = TheseusModel(teacher, student, pairings).train()
    x = torch.randn(3, 8)
    hybrid.set_gates([0, 0])
    assert torch.equal(hybrid(x), teacher(x))
    hybrid.set_gates([1, 1])
    assert torch.equal(hybrid(x), student(x))
    hybrid.set_gates([1, 0])
    assert torch.equal(hybrid(x), teacher[5](teacher[4](student[0](x))))


def test_unpairable_groups_are_refused() -> None:
    torch.manual_seed(0)
    teacher = build_rnnt(RNNTArgs(size="tiny", encoder_layers=5), INFO)
    student = build_rnnt(RNNTArgs(size="tiny", encoder_layers=2), INFO)
    with pytest.raises(ValueError, match="5 teacher modules .* cannot be split evenly onto 2"):
        pair_containers(teacher, student, "encoder.layers", "encoder.layers")
    with pytest.raises(ValueError, match="did you mean 'encoder.layers.1'"):
        validate_pairings(teacher, student, [Pairing(("encoder.layer.1",), ("encoder.layers.0",))])
    with pytest.raises(ValueError, match="consecutive"):
        validate_pairings(teacher, student, [Pairing(("encoder.layers.0", "encoder.layers.2"),
                                                     ("encoder.layers.0",))])
    wide = build_rnnt(RNNTArgs(size="tiny", encoder_layers=2, encoder_hidden=40), INFO)
    with pytest.raises(ValueError, match="width"):
        validate_pairings(teacher, wide, [Pairing(("encoder.layers.1", "encoder.layers.2"),
                                                  ("encoder.layers.1",))])
    # explicit grouping makes 5 -> 2 possible
    validate_pairings(teacher, student, [
        Pairing(("encoder.layers.0", "encoder.layers.1", "encoder.layers.2"), ("encoder.layers.0",)),
        Pairing(("encoder.layers.3", "encoder.layers.4"), ("encoder.layers.1",))])


# -- Eq. 5 and the other schedulers --------------------------------------------------------------------


class _Clock:
    def __init__(self, step: int, total: int = 100) -> None:
        self.step, self.epoch, self.total_steps, self.total_epochs = step, 0, total, 1
        self.steps_per_epoch, self.batch_error = total, None


def test_log_curriculum_matches_eq5_at_known_points() -> None:
    s = LogCurriculum(LogCurriculum.Args(base=40.0, b=2.0, k=1.0))
    assert s(_Clock(0)) == pytest.approx(math.log(2) / math.log(40))  # log_B(b): the basic rate, 0.1879
    assert s(_Clock(18)) == pytest.approx(math.log(20) / math.log(40))  # 0.8121
    assert s(_Clock(38)) == pytest.approx(1.0)
    assert s(_Clock(500)) == 1.0  # min(., 1)
    e = LogCurriculum(LogCurriculum.Args(base=math.e, b=1.0, k=0.5))
    assert e(_Clock(2)) == pytest.approx(math.log(2.0))
    # k = (B - b) / (reach_at * T_last), T_last = 99 for a 100-step stage (steps count 0..99)
    derived = LogCurriculum(LogCurriculum.Args(base=40.0, b=2.0, reach_at=0.5))
    assert derived(_Clock(50, total=100)) == pytest.approx(1.0)
    assert derived(_Clock(25, total=100)) == pytest.approx(math.log(2 + 38 * 25 / 49.5) / math.log(40))


def test_constant_linear_exponential_schedulers() -> None:
    assert Constant(Constant.Args(value=0.75))(_Clock(42)) == 0.75
    lin = Linear(Linear.Args(start=0.5, end=1.0, duration=10))
    assert lin(_Clock(0)) == 0.5 and lin(_Clock(5)) == pytest.approx(0.75) and lin(_Clock(20)) == 1.0
    ex = Exponential(Exponential.Args(p0=0.1, k=0.1))
    assert ex(_Clock(10)) == pytest.approx(0.1 * math.e) and ex(_Clock(100)) == 1.0


# -- validation through specs and an engine run ----------------------------------------------------------


def _mlp_spec(tmp_path: Path) -> dict:
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["name"] = "tiny_theseus"
    spec["teacher"] = {"name": "seq_classifier", "encoder": "mlp", "hidden": 16, "layers": 4}
    spec["student"] = {"name": "seq_classifier", "encoder": "mlp", "hidden": 16, "layers": 2}
    groups = [{"teacher": [f"encoder.{i}" for i in range(6)],
               "student": ["encoder.0", "encoder.1", "encoder.2"]},
              {"teacher": [f"encoder.{i}" for i in range(6, 12)], "student": ["encoder.3", "encoder.4",
                                                                                "encoder.5"]}]
    spec["stages"][1] = {"name": "theseus", "train": ["student"], "frozen": ["teacher"], "steps": 12,
                         "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.01},
                         "plugins": [{"name": "module_replacing", "modules": groups,
                                      "replacing_rate": {"name": "log_curriculum", "base": 40, "b": 2}}]}
    spec["stages"].append({"name": "finetune", "train": ["student"], "epochs": 1, "batch_size": 16})
    return spec


def build_seq_student() -> nn.Module:
    from compressor.families.slu.classifier import SeqClassifierArgs, build_seq_classifier

    return build_seq_classifier(SeqClassifierArgs(encoder="mlp", hidden=16, layers=2),
                                {"feature_dim": 8, "num_classes": 4})


def _refusal(tmp_path: Path, spec: dict) -> str:
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(tmp_path / "bad.yaml", spec))
    return str(e.value)


def test_validation_refuses_bad_specs(tmp_path: Path) -> None:
    spec = _mlp_spec(tmp_path)
    load_spec(write_spec(tmp_path / "ok.yaml", spec))
    plugin = spec["stages"][1]["plugins"][0]

    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["stages"][1]["plugins"][0]["modules"][0]["teacher"][0] = "encodr.0"
    msg = _refusal(tmp_path, bad)
    assert "no module 'encodr.0' in the teacher; did you mean 'encoder.0'" in msg
    assert "stages[1].plugins[0].modules" in msg

    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["teacher"]["layers"] = 5
    bad["stages"][1]["plugins"][0] = {"name": "module_replacing", "containers": ["encoder"]}
    assert "15 teacher modules in 'encoder' cannot be split evenly onto 6" in _refusal(tmp_path, bad)

    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["stages"][1]["plugins"][0] = dict(plugin, replacing_rate={"name": "constant", "value": 0.75})
    assert "ends at p = 0.75 < 1" in _refusal(tmp_path, bad)
    bad["stages"][1]["plugins"][0]["allow_partial"] = True
    load_spec(write_spec(tmp_path / "partial.yaml", bad))

    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["stages"][1]["plugins"][0] = dict(plugin, replacing_rate={"name": "log_curriculum", "k": 0.1, "b": 2})
    assert "ends at p = " in _refusal(tmp_path, bad)  # log_40(0.1 * 12 + 2) < 1 within 12 steps

    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["stages"][1]["frozen"] = []
    assert "strategy 1" in _refusal(tmp_path, bad)

    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["student"]["hidden"] = 12
    assert "width" in _refusal(tmp_path, bad)

    bad = yaml.safe_load(yaml.safe_dump(spec))
    wrong = tmp_path / "wrong_teacher.pt"
    torch.save({"encoder.0.weight": torch.zeros(3, 3)}, wrong)
    bad["teacher"]["checkpoint"] = str(wrong)
    assert "does not match the 'teacher' model" in _refusal(tmp_path, bad)


def test_engine_run_strategy2_keeps_teacher_and_logs_rate(tmp_path: Path) -> None:
    import json

    from compressor.families.slu.classifier import SeqClassifierArgs, build_seq_classifier

    spec = _mlp_spec(tmp_path)
    torch.manual_seed(7)
    teacher = build_seq_classifier(SeqClassifierArgs(encoder="mlp", hidden=16, layers=4),
                                   {"feature_dim": 8, "num_classes": 4})
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    spec["teacher"]["checkpoint"] = str(tmp_path / "teacher.pt")
    spec["stages"] = spec["stages"][1:]  # a pre-trained teacher: strategy 2 straight away
    done = run_cli("run", str(write_spec(tmp_path / "theseus.yaml", spec)))
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next(p for p in (tmp_path / "runs").glob("*/*") if p.is_dir())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["replacing_rate"] for r in records if r.get("stage") == "theseus" and "replacing_rate" in r]
    assert len(rates) == 12 and rates[0] == pytest.approx(math.log(2) / math.log(40)) and rates[-1] == 1.0
    assert rates == sorted(rates)
    final_teacher = torch.load(run_dir / "final" / "teacher.pt", weights_only=True)
    for key, value in teacher.state_dict().items():  # strategy 2: the frozen teacher is untouched
        assert torch.equal(final_teacher[key], value), key
    final = torch.load(run_dir / "final" / "student.pt", weights_only=True)
    assert sorted(final) == sorted(build_seq_student().state_dict())  # the student's own keys, no wrapper


# -- the fine-tuning phase inside the stage (Fig. 2: epochs 75-100; Sec. 4: one LR schedule) -------------


def _rnnt_step(hybrid: nn.Module, opt: torch.optim.Optimizer) -> None:
    from compressor.families.rnnt.task import rnnt_lattice_loss

    b = _batch()
    loss = rnnt_lattice_loss(hybrid(b), b, 9)
    opt.zero_grad()
    if loss.requires_grad:
        loss.backward()
    opt.step()


def test_finetune_phase_trains_the_combined_student_with_its_shared_parts() -> None:
    teacher, student = _rnnt_pair()
    strategy = _strategy(replacing_rate={"name": "log_curriculum", "reach_at": 0.75}, finetune=0.25)
    ctx = _ctx({"teacher": teacher, "student": student}, ["teacher", "student"], [], steps=8)  # strategy 1
    strategy.compressor_prepare_models(ctx)
    hybrid = ctx.models["theseus"].train()
    params = list({id(p): p for p in [*teacher.parameters(), *student.parameters()]}.values())
    opt = torch.optim.SGD(params, lr=0.5)
    rates = []
    for step in range(6):  # module replacing: the teacher (strategy 1) trains its shared parts
        ctx.step = step
        strategy.compressor_step_start(ctx)
        rates.append(ctx.scalars["replacing_rate"])
        _rnnt_step(hybrid, opt)
        assert not hybrid.is_finetuning
    assert rates[0] < rates[-1] < 1.0 or rates[-1] == 1.0
    assert not torch.equal(student.joiner.out.weight, teacher.joiner.out.weight)  # not yet copied
    ctx.step = 6
    strategy.compressor_step_start(ctx)  # the last quarter starts: the student runs alone
    assert hybrid.is_finetuning and ctx.scalars["replacing_rate"] == 1.0
    assert torch.equal(student.joiner.out.weight, teacher.joiner.out.weight)  # Eq. 4: shared parts combined
    hybrid.eval(), student.eval()
    b = _batch()
    assert torch.equal(hybrid(b)["logits"], student(b)["logits"])  # the hybrid *is* the student now
    assert hybrid.encode is not None and hybrid.predict.__self__ is student  # decoding goes to the student
    hybrid.train()
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    for step in (6, 7):
        ctx.step = step
        strategy.compressor_step_start(ctx)
        _rnnt_step(hybrid, opt)
    for k, v in teacher.state_dict().items():  # fine-tuning trains the student only
        assert torch.equal(v, t_before[k]), k
    moved = {k for k, v in student.state_dict().items() if not torch.equal(v, s_before[k])}
    assert {"joiner.out.weight", "predictor.embedding.weight", "encoder.proj.weight",
            "encoder.layers.0.weight_ih_l0"} <= moved
    tuned = student.joiner.out.weight.clone()
    strategy.compressor_finalize_student(ctx)  # the fine-tuned shared parts are kept, not overwritten
    assert torch.equal(student.joiner.out.weight, tuned)
    assert "theseus" not in ctx.models and ctx.forward_model == "teacher"


def test_finetune_flag_travels_in_the_hybrid_state_and_decides_the_final_copy() -> None:
    teacher, student = _rnnt_pair()
    strategy = _strategy(finetune=0.5)
    ctx = _ctx({"teacher": teacher, "student": student}, ["teacher", "student"], [], steps=4)
    strategy.compressor_prepare_models(ctx)
    hybrid = ctx.models["theseus"]
    before = {k: v.clone() for k, v in hybrid.state_dict().items()}
    assert "finetuning" in before and int(before["finetuning"]) == 0
    ctx.step = 2
    strategy.compressor_step_start(ctx)
    saved = {k: v.clone() for k, v in hybrid.state_dict().items()}
    assert int(saved["finetuning"]) == 1
    # a best checkpoint from before the phase was handed over: the student gets the teacher's shared parts
    hybrid.load_state_dict(before)
    assert not hybrid.is_finetuning
    with torch.no_grad():
        student.joiner.out.weight.add_(1.0)
    strategy.compressor_finalize_student(ctx)
    assert torch.equal(student.joiner.out.weight, teacher.joiner.out.weight)
    # resuming inside the phase: no second copy over the student's fine-tuned parts
    strategy2 = _strategy(finetune=0.5)
    ctx2 = _ctx({"teacher": teacher, "student": student}, ["teacher", "student"], [], steps=4)
    strategy2.compressor_prepare_models(ctx2)
    ctx2.models["theseus"].load_state_dict(saved)
    with torch.no_grad():
        student.joiner.out.weight.add_(1.0)
    tuned = student.joiner.out.weight.clone()
    ctx2.step = 3
    strategy2.compressor_step_start(ctx2)
    assert torch.equal(student.joiner.out.weight, tuned)


def test_finetune_makes_a_partial_schedule_valid_and_engine_runs_it(tmp_path: Path) -> None:
    import json

    spec = _mlp_spec(tmp_path)
    mr = spec["stages"][1]
    mr["plugins"][0]["replacing_rate"] = {"name": "constant", "value": 0.75}
    with pytest.raises(SpecError, match="ends at p = 0.75 < 1"):
        load_spec(write_spec(tmp_path / "bad.yaml", spec))
    mr["plugins"][0]["finetune"] = 0.25  # the last 3 of 12 steps fine-tune the student: no extra stage needed
    mr["handoff"] = "last"
    spec["stages"] = spec["stages"][:2]
    done = run_cli("run", str(write_spec(tmp_path / "ft.yaml", spec)))
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next(p for p in (tmp_path / "runs").glob("*/*") if p.is_dir())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["replacing_rate"] for r in records if r.get("stage") == "theseus" and "replacing_rate" in r]
    assert rates == [0.75] * 9 + [1.0] * 3
    final_s = torch.load(run_dir / "final" / "student.pt", weights_only=True)
    final_t = torch.load(run_dir / "final" / "teacher.pt", weights_only=True)
    head = [k for k in final_s if k.startswith("classifier.")]
    assert head and any(not torch.equal(final_s[k], final_t[k]) for k in head)  # fine-tuned, not copied back


def test_init_student_copies_the_first_module_of_each_teacher_group() -> None:
    torch.manual_seed(0)
    teacher = build_rnnt(RNNTArgs(size="tiny", encoder_layers=6, pred_layers=2, stack=6), INFO)
    student = build_rnnt(RNNTArgs(size="tiny", encoder_layers=2, pred_layers=1, stack=6), INFO)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    strategy = _strategy(init_student="first", finetune=0.25)
    strategy.compressor_prepare_models(_ctx({"teacher": teacher, "student": student}, ["student"], ["teacher"]))
    t, s = teacher.state_dict(), student.state_dict()
    for s_layer, t_layer in (("encoder.layers.0", "encoder.layers.0"), ("encoder.layers.1", "encoder.layers.3"),
                             ("predictor.layers.0", "predictor.layers.0")):
        for key in [k for k in s if k.startswith(s_layer + ".")]:
            assert torch.equal(s[key], t[t_layer + key[len(s_layer):]]), key
            assert not torch.equal(s[key], before[key])
    # "last" needs the group's last module to have the student module's shape: the first encoder layer's input
    # (6 stacked frames) differs from the third's, so it is refused before any weight is touched
    with pytest.raises(ValueError, match="differ in shape"):
        _strategy(init_student="last", finetune=0.25).compressor_prepare_models(
            _ctx({"teacher": teacher, "student": student}, ["student"], ["teacher"]))
