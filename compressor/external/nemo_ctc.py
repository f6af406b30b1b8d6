"""NeMo ``.nemo`` CTC checkpoints, read without NeMo and mapped onto the project's ``quartznet``.

A ``.nemo`` file is a tar holding ``model_config.yaml`` (the model's Hydra config) and
``model_weights.ckpt`` (its state dict). This module reads both from the tar in memory -- members checked
first (a path that is absolute or climbs out with ``..``, a link or a device is refused; nothing is extracted
to disk) -- with ``yaml.safe_load`` and ``torch.load(weights_only=True)``, and maps NeMo's
``ConvASREncoder`` + ``ConvASRDecoder`` (QuartzNet, Jasper-style CTC models) onto
:class:`compressor.families.ctc.quartznet.QuartzNet`:

==========================================  =============================================
NeMo key                                     quartznet key
==========================================  =============================================
``encoder.encoder.{b}.mconv.{k}.conv.*``     ``encoder.layers.{b}.units.{j}.depthwise/pointwise.*``
``encoder.encoder.{b}.mconv.{k}.*`` (BN)     ``encoder.layers.{b}.units.{j}.norm.*``
``encoder.encoder.{b}.res.0.0.conv.*``       ``encoder.layers.{b}.residual.0.*``
``encoder.encoder.{b}.res.0.1.*``            ``encoder.layers.{b}.residual.1.*``
``decoder.decoder_layers.0.*``               ``decoder.*``
==========================================  =============================================

(unit ``j`` of a block is ``mconv`` modules ``j*(n+2) ..``: depthwise, pointwise, batch norm -- or conv, batch norm
when not separable -- then ReLU and dropout between units). The vocabulary is the config's ``labels`` with the
CTC blank last, as NeMo and the project both put it (a space becomes ``▁``).

What does not map is refused with the reason (one line, exit 2): another encoder (Conformer-CTC's
``ConformerEncoder``, a transducer), squeeze-and-excitation blocks (Citrinet), dense residuals, grouped
pointwise convolutions, activations other than ReLU, convolution biases.

Use it two ways:

* as a model, ``{name: nemo_ctc, path: model.nemo}``: the mapped QuartzNet (a teacher; its CMVN is the
  identity, since NeMo normalises features in its preprocessor -- give the data ``normalize: per_feature`` to
  match QuartzNet's ``normalize: per_feature``); ``data.tokenizer: {from_teacher: NAME}`` adopts its labels;
* as a starting point, ``init_from: {checkpoint: model.nemo}`` on a ``quartznet`` student: the mapped tensors
  load where name and shape match (a 64-mel first layer does not fit 80-bin features and stays fresh).
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import torch
import yaml
from pydantic import Field, field_validator

from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.teachers import safe_torch_load
from compressor.data.tokenizers import BLANK, WORD_BOUNDARY
from compressor.families.ctc.quartznet import BlockSpec, QuartzNet

CONFIG = "model_config.yaml"
WEIGHTS = "model_weights.ckpt"
ENCODER = "ConvASREncoder"
DECODER = "ConvASRDecoder"
_MAX_MEMBER = 4 << 30


def _member_name(name: str) -> str:
    return str(PurePosixPath(name)).removeprefix("./")


def read_nemo(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and state dict of a ``.nemo`` file, read safely (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{path}: no such .nemo file")
    try:
        tar = tarfile.open(p, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{path} is not a .nemo file (a tar archive): {e}") from None
    with tar:
        found: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            pure = PurePosixPath(m.name)
            if pure.is_absolute() or ".." in pure.parts:
                raise UserError(f"{path}: member '{m.name}' points outside the archive; refused")
            if m.issym() or m.islnk() or m.isdev() or m.isfifo():
                raise UserError(f"{path}: member '{m.name}' is a link or device; refused")
            if m.isfile():
                found[_member_name(m.name)] = m
        for need in (CONFIG, WEIGHTS):
            if need not in found:
                raise UserError(f"{path} has no {need} at its top level (members: "
                                f"{', '.join(sorted(found)[:6]) or 'none'}): not a .nemo checkpoint")
        if found[WEIGHTS].size > _MAX_MEMBER:
            raise UserError(f"{path}: {WEIGHTS} is larger than {_MAX_MEMBER >> 30} GiB")

        def member(name: str) -> bytes:
            f = tar.extractfile(found[name])
            assert f is not None
            return f.read()

        try:
            config = yaml.safe_load(member(CONFIG).decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: {CONFIG} is not YAML that safe_load reads ({type(e).__name__})") from None
        state = safe_torch_load(io.BytesIO(member(WEIGHTS)), f"{path}: {WEIGHTS}")
    if not isinstance(config, dict):
        raise UserError(f"{path}: {CONFIG} is not a mapping")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: {WEIGHTS} does not hold a state dict of tensors")
    return config, state


def _target(section: Any) -> str:
    return str((section or {}).get("_target_") or (section or {}).get("cls") or "?").rsplit(".", 1)[-1]


def labels_of(config: dict[str, Any], path: str) -> list[str]:
    """The config's CTC labels (``labels``, or the decoder's ``vocabulary``)."""
    labels = config.get("labels") or (config.get("decoder") or {}).get("vocabulary")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise UserError(f"{path}: {CONFIG} has no 'labels' list (the CTC vocabulary); a BPE model's tokenizer "
                        f"is not read")
    return labels


def units_from_labels(labels: list[str]) -> list[str]:
    """NeMo labels -> the project's units: a space becomes ``▁``, the blank is appended last."""
    return [WORD_BOUNDARY if lab == " " else lab for lab in labels] + [BLANK]


def blocks_of(config: dict[str, Any], path: str) -> tuple[int, list[BlockSpec]]:
    """``(feat_in, one BlockSpec per NeMo block)`` of a ``ConvASREncoder`` config, or a one-line refusal."""
    enc = config.get("encoder") or {}
    target = _target(enc)
    if target != ENCODER:
        raise UserError(f"{path}: its encoder is {target}, which does not map onto quartznet (only NeMo's "
                        f"{ENCODER} does: QuartzNet/Jasper CTC models; a Conformer-CTC needs its own family)")
    if _target(config.get("decoder")) != DECODER:
        raise UserError(f"{path}: its decoder is {_target(config.get('decoder'))}, not the CTC {DECODER}")
    act = str(enc.get("activation", "relu"))
    if act != "relu":
        raise UserError(f"{path}: encoder activation '{act}' does not map (quartznet uses ReLU)")
    blocks = enc.get("jasper")
    if not isinstance(blocks, list) or not blocks:
        raise UserError(f"{path}: encoder.jasper (the block list) is missing")
    specs = []
    for i, b in enumerate(blocks):
        where = f"{path}: encoder.jasper[{i}]"
        if b.get("se"):
            raise UserError(f"{where} has squeeze-and-excitation (a Citrinet), which quartznet has not")
        if b.get("residual_dense") or str(b.get("residual_mode", "add")) != "add":
            raise UserError(f"{where}: dense or non-additive residuals do not map onto quartznet")
        if int(b.get("groups", 1)) != 1:
            raise UserError(f"{where}: grouped convolutions (groups: {b.get('groups')}) do not map onto quartznet")
        one = {}
        for key in ("kernel", "stride", "dilation"):
            v = b.get(key, [1])
            v = v if isinstance(v, list) else [v]
            if len(v) != 1:
                raise UserError(f"{where}: 2-D {key} {v} does not map onto quartznet's 1-D convolutions")
            one[key] = int(v[0])
        if one["stride"] > 1 and int(b.get("repeat", 1)) != 1:
            raise UserError(f"{where}: a strided block with repeats does not map onto quartznet")
        specs.append(BlockSpec(f"N{i}", int(b.get("repeat", 1)), one["kernel"], int(b["filters"]),
                               stride=one["stride"], dilation=one["dilation"],
                               separable=bool(b.get("separable", False)), residual=bool(b.get("residual", False))))
    return int(enc.get("feat_in", 64)), specs


def map_state(state: dict[str, torch.Tensor], specs: list[BlockSpec], path: str) -> dict[str, torch.Tensor]:
    """NeMo's encoder/decoder keys -> quartznet's (the table of the module docstring); preprocessor buffers and
    ``num_batches_tracked`` counters aside. A tensor that has no place is refused, naming it."""
    out: dict[str, torch.Tensor] = {}
    per_unit = {True: ("depthwise", "pointwise", "norm"), False: ("pointwise", "norm")}
    pat = re.compile(r"encoder\.encoder\.(\d+)\.(mconv\.(\d+)|res\.0\.([01]))\.(.+)")
    for key, value in state.items():
        if key.startswith("preprocessor.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith("decoder.decoder_layers.0."):
            out["decoder." + key.rsplit(".", 1)[1]] = value
            continue
        m = pat.fullmatch(key)
        if m is None or int(m.group(1)) >= len(specs):
            raise UserError(f"{path}: tensor '{key}' has no place in quartznet")
        b, rest = int(m.group(1)), m.group(5)
        spec = specs[b]
        prefix = f"encoder.layers.{b}"
        if m.group(4) is not None:  # residual: conv then batch norm
            out[f"{prefix}.residual.{m.group(4)}.{rest.removeprefix('conv.')}"] = value
            continue
        names = per_unit[spec.separable]
        unit, slot = divmod(int(m.group(3)), len(names) + 2)
        if slot >= len(names) or unit >= spec.repeat:
            raise UserError(f"{path}: tensor '{key}' has no place in quartznet (block {b} has {spec.repeat} units)")
        if rest.startswith("conv.") and rest != "conv.weight":
            raise UserError(f"{path}: '{key}': convolution biases do not map onto quartznet")
        out[f"{prefix}.units.{unit}.{names[slot]}.{rest.removeprefix('conv.')}"] = value
    return out


def load_nemo_quartznet(path: str | Path) -> tuple[QuartzNet, list[str]]:
    """The mapped QuartzNet (weights loaded, every tensor placed) and its units."""
    config, state = read_nemo(path)
    labels = labels_of(config, str(path))
    feat_in, specs = blocks_of(config, str(path))
    model = QuartzNet(feat_in, len(labels) + 1, specs)
    mapped = map_state(state, specs, str(path))
    own = model.state_dict()
    missing = [k for k in own if k not in mapped and not k.startswith("cmvn_")
               and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{path}: the checkpoint lacks '{missing[0]}' of the mapped quartznet "
                        f"({len(missing)} tensors missing)")
    for k, v in mapped.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise UserError(f"{path}: '{k}' has shape {tuple(v.shape)}, the config's quartznet {tuple(own[k].shape)}")
    if not next(model.parameters()).is_meta:  # built for shapes only (validation) needs no weights
        model.load_state_dict(mapped, strict=False)
    return model, units_from_labels(labels)


def nemo_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under quartznet's names (``init_from: {checkpoint: model.nemo}``)."""
    config, state = read_nemo(path)
    _, specs = blocks_of(config, str(path))
    return map_state(state, specs, str(path))


class NemoCTCArgs(Args):
    """Arguments of ``nemo_ctc``."""

    path: str = Field(description="a NeMo .nemo file of a QuartzNet/Jasper CTC model")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="after every ReLU (when a stage trains it)")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        try:
            config, _ = read_nemo(v)
            labels_of(config, v)
            blocks_of(config, v)
        except UserError as e:
            raise ValueError(str(e)) from None
        return v


def units_of(args: NemoCTCArgs) -> list[str]:
    config, _ = read_nemo(args.path)
    return units_from_labels(labels_of(config, args.path))


def build_nemo_ctc(args: NemoCTCArgs, info: dict[str, Any] | None = None) -> QuartzNet:
    """A NeMo .nemo QuartzNet/Jasper CTC checkpoint as a quartznet (weights loaded)."""
    from compressor.core.teachers import files_hash

    model, units = load_nemo_quartznet(args.path)
    dim = (info or {}).get("feature_dim")
    if dim is not None and int(dim) != model.feature_dim:
        raise UserError(f"{args.path}: the model reads {model.feature_dim} mel features, the data gives {dim}")
    if args.dropout:
        for m in model.modules():
            if hasattr(m, "dropout") and isinstance(m.dropout, torch.nn.Dropout):
                m.dropout.p = args.dropout
    model.units = units  # type: ignore[assignment]
    model.source_hash = files_hash([Path(args.path).expanduser()])  # type: ignore[assignment]
    return model


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "nemo_ctc", build_nemo_ctc, args=NemoCTCArgs,
                 doc="A NeMo .nemo QuartzNet/Jasper CTC checkpoint (read without NeMo) as a quartznet teacher.",
                 reads=("features", "feature_lengths"), units=units_of)
    registry.add("weights_reader", ".nemo", "compressor.external.nemo_ctc:nemo_state",
                 doc="A NeMo .nemo QuartzNet/Jasper CTC archive's tensors under quartznet's names (init_from).")
