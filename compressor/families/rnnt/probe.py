"""sherpa-onnx's own online features for any audio, read through a tiny untrained streaming RNN-T: what a device
computes, for comparing the export's front end (:mod:`compressor.export.frontend`) with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compressor.export.graphs import write_graph, write_tokens
from compressor.families.rnnt.export import rnnt_graphs, rnnt_streaming_graph
from compressor.families.rnnt.model import RNNTArgs, build_rnnt


def sherpa_online_probe(out_dir: Path) -> Any:
    """sherpa-onnx's online NeMo-transducer recognizer around a tiny untrained streaming RNN-T written to
    ``out_dir``: its streams compute sherpa-onnx's own online features (``stream.get_frames``) for any audio,
    which is what a device computes; its transcripts mean nothing."""
    import sherpa_onnx

    tokens = list("abcde") + ["<blk>"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_rnnt(RNNTArgs(size="tiny", encoder_layers=1, pred_layers=1, stack=3),
                           {"feature_dim": 80, "vocab_size": len(tokens), "tokens": tokens}).eval()
    for graph in [*rnnt_graphs(model, 80)[1:], rnnt_streaming_graph(model, 80, 24)]:
        write_graph(graph, out_dir, 17)
    write_tokens(tokens, out_dir / "tokens.txt")
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(out_dir / "tokens.txt"), encoder=str(out_dir / "encoder.streaming.onnx"),
        decoder=str(out_dir / "decoder.onnx"), joiner=str(out_dir / "joiner.onnx"), num_threads=1,
        model_type="nemo_transducer")
