"""RNN-T decoding: batched greedy search and torchaudio's ``RNNTBeamSearch``.

Both work on any model with ``encode(features, lengths)``, ``predict(tokens, state)`` and ``join(enc, pred)``
(:class:`compressor.families.rnnt.model.RNNTModel`, or a module-replacing hybrid of two of them) and return token-id
lists without blanks.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import RNNT, RNNTBeamSearch


@torch.no_grad()
def greedy_search(model: nn.Module, features: torch.Tensor, lengths: torch.Tensor, blank_id: int,
                  max_symbols_per_frame: int = 5) -> list[list[int]]:
    """Batched greedy RNN-T decoding: at each frame emit argmax labels until blank (at most N per frame)."""
    enc, enc_lengths = model.encode(features, lengths)
    b, t_max, _ = enc.shape
    device = enc.device
    tokens = torch.full((b, 1), blank_id, dtype=torch.long, device=device)
    pred, state = model.predict(tokens, None)
    pred = pred[:, 0]
    hyps: list[list[int]] = [[] for _ in range(b)]
    for t in range(t_max):
        active = enc_lengths > t
        if not bool(active.any()):
            break
        frame = enc[:, t]
        for _ in range(max_symbols_per_frame):
            best = model.join(frame, pred).argmax(-1)
            emit = active & (best != blank_id)
            if not bool(emit.any()):
                break
            for i in torch.nonzero(emit).flatten().tolist():
                hyps[i].append(int(best[i]))
            new_pred, new_state = model.predict(best[:, None], state)
            keep = emit[:, None]
            pred = torch.where(keep, new_pred[:, 0], pred)
            state = (torch.where(keep[None], new_state[0], state[0]),
                     torch.where(keep[None], new_state[1], state[1]))
            active = emit
    return hyps


class _Transcriber(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(input, lengths)


class _Predictor(nn.Module):
    """torchaudio's predictor interface; state is [[h_layer, c_layer] per layer], batch on dim 0."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor, lengths: torch.Tensor,
                state: list[list[torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
        hc = None
        if state is not None:
            hc = (torch.stack([s[0] for s in state], 0), torch.stack([s[1] for s in state], 0))
        out, (h, c) = self.model.predict(input, hc)
        return out, lengths, [[h[i], c[i]] for i in range(h.shape[0])]


class _Joiner(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, source_encodings: torch.Tensor, source_lengths: torch.Tensor,
                target_encodings: torch.Tensor, target_lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.model.join(source_encodings[:, :, None], target_encodings[:, None])
        return logits, source_lengths, target_lengths


def torchaudio_rnnt(model: nn.Module) -> RNNT:
    """View a model with encode/predict/join as a ``torchaudio.models.RNNT`` (shares its weights)."""
    return RNNT(_Transcriber(model), _Predictor(model), _Joiner(model))


@torch.no_grad()
def beam_search(model: nn.Module, features: torch.Tensor, lengths: torch.Tensor, blank_id: int,
                beam_width: int = 4, max_symbols_per_frame: int = 5) -> list[list[int]]:
    """Beam search with ``torchaudio.models.RNNTBeamSearch``, one utterance at a time."""
    search = RNNTBeamSearch(torchaudio_rnnt(model), blank_id, step_max_tokens=max_symbols_per_frame)
    out: list[list[int]] = []
    for i in range(features.shape[0]):
        n = int(lengths[i])
        hyps = search(features[i, :n], lengths[i], beam_width)
        out.append([tok for tok in hyps[0][0] if tok != blank_id])
    return out
