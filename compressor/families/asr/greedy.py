"""Greedy decoding in PyTorch with the rules sherpa-onnx's greedy search uses: the reference every ASR export
(and every CTC teacher) is compared with."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SHERPA_MAX_SYMBOLS_PER_FRAME = 10  # offline-transducer-greedy-search-nemo-decoder.cc


@torch.no_grad()
def torch_greedy(family: str, model: nn.Module, feats: torch.Tensor) -> list[int]:
    """Token ids of one utterance (features (T, F)) decoded greedily as sherpa-onnx does."""
    x = feats[None].float()
    lens = torch.tensor([feats.shape[0]], dtype=torch.int64)
    if family == "ctc":
        out = model({"features": x, "feature_lengths": lens})
        return ctc_greedy(out["log_probs"], out["logit_lengths"], int(model.blank_id))[0]
    enc, enc_len = model.encode(x, lens)
    blank = int(model.vocab_size) - 1
    pred, state = model.predict(torch.tensor([[blank]]), model.initial_state(1))
    ids: list[int] = []
    for t in range(int(enc_len[0])):
        for _ in range(SHERPA_MAX_SYMBOLS_PER_FRAME):
            y = int(model.join(enc[0, t], pred[0, 0]).argmax())
            if y == blank:
                break
            ids.append(y)
            pred, state = model.predict(torch.tensor([[y]]), state)
    return ids


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks (what sherpa-onnx's greedy CTC does)."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, n in zip(best, lengths.cpu().tolist()):
        ids, prev = [], None
        for t in row[: int(n)].tolist():
            if t != prev and t != blank_id:
                ids.append(t)
            prev = t
        out.append(ids)
    return out


def torch_greedy_all(family: str, model: nn.Module, features: Sequence[torch.Tensor], desc: str | None = None
                     ) -> list[list[int]]:
    """:func:`torch_greedy` over utterances, showing progress as ``desc``."""
    if desc is None:
        return [torch_greedy(family, model, f) for f in features]
    from compressor.core.progress import track

    return [torch_greedy(family, model, f) for f in track(features, desc, total=len(features), unit="utt")]
