"""ONNX files: one graph with its example inputs, names, dynamic axes and metadata; writing them.

The families' export units (:mod:`compressor.families.rnnt.export`, :mod:`compressor.families.ctc.export`,
:mod:`compressor.families.slu.export`) build :class:`GraphFile` objects in the layouts their runtimes load;
this module writes them (TorchScript-based ``torch.onnx.export``) with their metadata.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from torch import nn

from compressor.core.errors import UserError


@dataclass
class GraphFile:
    """One ONNX file: its wrapper, example inputs, names, dynamic axes and metadata."""

    name: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, str] = field(default_factory=dict)


def write_graph(graph: GraphFile, out_dir: Path, opset: int) -> Path:
    """torch.onnx.export (TorchScript-based, ``dynamo=False``: keeps LSTM time axes dynamic) + metadata."""
    path = out_dir / graph.name
    graph.module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph.module, graph.example, str(path), input_names=graph.inputs,
                              output_names=graph.outputs, dynamic_axes=graph.dynamic_axes,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
    except Exception as e:  # an op ONNX cannot express, an unsupported construct
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot export {graph.name} to ONNX (opset {opset}): {type(e).__name__}: {first}"
                        ) from None
    proto = onnx.load(str(path))
    got = [i.name for i in proto.graph.input]
    if got != graph.inputs:
        raise UserError(f"{graph.name}: the exported graph has inputs {got}, expected {graph.inputs} "
                        f"(an input the model does not use was dropped)")
    if graph.metadata:
        del proto.metadata_props[:]
        for key, value in graph.metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return path


def add_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Add (or replace) ``metadata_props`` entries of an ONNX file, keeping the others."""
    proto = onnx.load(str(path))
    kept = [(e.key, e.value) for e in proto.metadata_props if e.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, str(path))


def write_tokens(tokens: Sequence[str], path: Path) -> Path:
    """sherpa-onnx ``tokens.txt``: ``symbol id`` per line, the blank ``<blk>`` last."""
    lines = []
    for i, tok in enumerate(tokens):
        if not tok or any(ch.isspace() for ch in tok):
            raise UserError(f"token {i} ({tok!r}) is empty or contains whitespace: sherpa-onnx's tokens.txt "
                            f"cannot hold it (use '▁' or '<space>' for word boundaries)")
        lines.append(f"{tok} {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
