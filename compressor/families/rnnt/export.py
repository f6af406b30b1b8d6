"""LSTM RNN-T models (``rnnt_lstm``) as sherpa-onnx NeMo transducers, offline and streaming.

Layouts (checked against sherpa-onnx 2.x ``offline-transducer-nemo-model.cc``,
``offline-transducer-greedy-search-nemo-decoder.cc``, ``online-transducer-nemo-model.cc``; sherpa-onnx binds
inputs and outputs by position, the names follow NeMo's export):

* ``encoder.onnx``: ``audio_signal`` (N, 80, T) float, ``length`` (N,) int64 -> ``outputs`` (N, D, T') float,
  ``encoded_lengths`` (N,) int64. Metadata ``vocab_size`` (without the blank), ``subsampling_factor``,
  ``normalize_type`` (empty: global CMVN is inside the model; ``per_feature`` when the data normalises each
  utterance, which sherpa-onnx then does too), ``pred_rnn_layers``, ``pred_hidden``, ``feat_dim``.
* ``decoder.onnx`` (one step of the LSTM prediction network): ``targets`` (N, 1) int32, ``target_length``
  (N,) int32, ``states.1`` h (L, N, H), ``states.2`` c (L, N, H) -> ``outputs`` (N, D, 1),
  ``prednet_lengths`` (N,), ``states_next.1``, ``states_next.2``.
* ``joiner.onnx``: ``encoder_outputs`` (N, D, T), ``decoder_outputs`` (N, D, U) -> ``outputs`` (N, T, U, V).
* ``encoder.streaming.onnx`` (``OnlineRecognizer.from_transducer(..., model_type="nemo_transducer")``): one
  chunk ``audio_signal`` (N, 80, W), ``length`` (N,), ``cache_last_channel`` (N, L, 1, H) = the encoder
  LSTMs' h, ``cache_last_time`` (N, L, 1, H) = their c, ``cache_last_channel_len`` (N,) -> ``outputs``
  (N, D, W / stack), lengths, the next three states. Metadata as the offline encoder plus ``window_size`` =
  ``chunk_shift`` = W and ``cache_last_{channel,time}_dim{1,2,3}`` = (L, 1, H); decoder and joiner are shared.

The offline recognizer computes the ``nemo_transducer`` front end, the online one ``nemo_online``
(:mod:`compressor.export.frontend`): each artefact is checked on the front end its runtime computes, and the
manifest says which of them the model was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compressor.core.errors import UserError
from compressor.export import graphs as G
from compressor.export import parity, quantize
from compressor.export.family import Artefact, Figure
from compressor.export.frontend import same_features, sherpa_fbank
from compressor.export.graphs import GraphFile
from compressor.families.asr import greedy
from compressor.families.asr.sherpa_export import SherpaASRExport

STREAMING_NOTE = (
    "no streaming export: the encoder is not a stack of single-layer unidirectional LSTMs of one width "
    "(the layout whose states travel in sherpa-onnx's online NeMo-transducer cache slots)")
ONLINE_FRONTEND = "nemo_online"
TAIL_SECONDS = 0.3  # at least this much silence ends a stream; more for chunks longer than 0.28 s


def tail_seconds(chunk_frames: int) -> float:
    """Silence to append to a stream so its last frames are decoded: the online recognizer decodes a chunk
    only once ``chunk + 1`` frames are ready, so the tail must be longer than a chunk (measured: a 0.3 s tail
    with 0.48 s chunks dropped the last words, WER 17.0% instead of 15.0%)."""
    return max(TAIL_SECONDS, round((chunk_frames + 2) / 100, 2))


class RNNTEncoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, enc_len = self.model.encode(audio_signal.transpose(1, 2), length)
        return enc.transpose(1, 2), enc_len.to(torch.int64)


class RNNTDecoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, targets: torch.Tensor, target_length: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pred, (h2, c2) = self.model.predict(targets.to(torch.int64), (h, c))
        return pred.transpose(1, 2), target_length + 0, h2, c2


class RNNTJoinerGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, encoder_outputs: torch.Tensor, decoder_outputs: torch.Tensor) -> torch.Tensor:
        enc = encoder_outputs.transpose(1, 2)[:, :, None, :]
        dec = decoder_outputs.transpose(1, 2)[:, None, :, :]
        return self.model.join(enc, dec)


class RNNTStreamingEncoderGraph(nn.Module):
    """One chunk of the causal LSTM encoder; the LSTM states travel in NeMo's cache slots.

    sherpa-onnx's online NeMo transducer passes three encoder states: ``cache_last_channel`` and
    ``cache_last_time`` (float, batch first) and ``cache_last_channel_len`` (int64). Here they hold the
    encoder LSTMs' ``h`` and ``c`` as (B, layers, 1, hidden) and a chunk counter.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                count: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc = self.encoder
        x = (audio_signal.transpose(1, 2) - enc.cmvn_mean) / enc.cmvn_std
        x = enc.stack_frames(x)
        hs, cs = [], []
        for i, layer in enumerate(enc.layers):
            state = (h[:, i, 0].unsqueeze(0).contiguous(), c[:, i, 0].unsqueeze(0).contiguous())
            x, (h1, c1) = layer(x, state)
            hs.append(h1[0])
            cs.append(c1[0])
        out = enc.proj(x)
        return (out.transpose(1, 2), enc.output_lengths(length).to(torch.int64),
                torch.stack(hs, 1).unsqueeze(2), torch.stack(cs, 1).unsqueeze(2), count + 1)


def supports_streaming(model: nn.Module) -> bool:
    """A causal encoder built like ``rnnt_lstm``'s: CMVN, frame stacking, unidirectional LSTMs, projection."""
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layers", None)
    needed = ("stack_frames", "proj", "cmvn_mean", "cmvn_std", "output_lengths")
    if enc is None or layers is None or not all(hasattr(enc, a) for a in needed):
        return False
    if not all(isinstance(m, nn.LSTM) and not m.bidirectional and m.num_layers == 1 for m in layers):
        return False
    if int(getattr(enc, "time_reduction", 1)) > 1:  # chunks would have to align with the reduction as well
        return False
    return len({m.hidden_size for m in layers}) == 1



def rnnt_graphs(model: nn.Module, feature_dim: int, normalize_type: str = "") -> list[GraphFile]:
    pred_layers = len(model.predictor.layers)
    pred_hidden = int(model.predictor.hidden)
    joint_dim = int(model.joiner.out.in_features)
    vocab = int(model.vocab_size)
    # frames per encoder output: the frame stacking times the time reduction inside the encoder (paper size)
    stack = int(getattr(model.encoder, "stack", 1)) * int(getattr(model.encoder, "time_reduction", 1))
    t = 37 * stack
    enc = GraphFile(
        "encoder.onnx", RNNTEncoderGraph(model),
        (torch.randn(2, feature_dim, t), torch.tensor([t, t - 5], dtype=torch.int64)),
        ["audio_signal", "length"], ["outputs", "encoded_lengths"],
        {"audio_signal": {0: "N", 2: "T"}, "length": {0: "N"}, "outputs": {0: "N", 2: "T_out"},
         "encoded_lengths": {0: "N"}},
        {"vocab_size": str(vocab - 1), "subsampling_factor": str(stack), "normalize_type": normalize_type,
         "pred_rnn_layers": str(pred_layers), "pred_hidden": str(pred_hidden), "feat_dim": str(feature_dim),
         "model_type": "EncDecRNNTBPEModel", "comment": "exported by compressor (streaming LSTM RNN-T)"})
    dec = GraphFile(
        "decoder.onnx", RNNTDecoderGraph(model),
        (torch.zeros(2, 1, dtype=torch.int32), torch.ones(2, dtype=torch.int32),
         torch.zeros(pred_layers, 2, pred_hidden), torch.zeros(pred_layers, 2, pred_hidden)),
        ["targets", "target_length", "states.1", "states.2"],
        ["outputs", "prednet_lengths", "states_next.1", "states_next.2"],
        {"targets": {0: "N"}, "target_length": {0: "N"}, "states.1": {1: "N"}, "states.2": {1: "N"},
         "outputs": {0: "N"}, "prednet_lengths": {0: "N"}, "states_next.1": {1: "N"},
         "states_next.2": {1: "N"}})
    join = GraphFile(
        "joiner.onnx", RNNTJoinerGraph(model),
        (torch.randn(2, joint_dim, 3), torch.randn(2, joint_dim, 1)),
        ["encoder_outputs", "decoder_outputs"], ["outputs"],
        {"encoder_outputs": {0: "N", 2: "T"}, "decoder_outputs": {0: "N", 2: "U"},
         "outputs": {0: "N", 1: "T", 2: "U"}})
    return [enc, dec, join]


def rnnt_streaming_graph(model: nn.Module, feature_dim: int, chunk_frames: int) -> GraphFile:
    enc = model.encoder
    stack = int(enc.stack)
    layers, hidden = len(enc.layers), int(enc.layers[0].hidden_size)
    w = chunk_frames
    return GraphFile(
        "encoder.streaming.onnx", RNNTStreamingEncoderGraph(model),
        (torch.randn(2, feature_dim, w), torch.tensor([w, w], dtype=torch.int64),
         torch.zeros(2, layers, 1, hidden), torch.zeros(2, layers, 1, hidden),
         torch.zeros(2, dtype=torch.int64)),
        ["audio_signal", "length", "cache_last_channel", "cache_last_time", "cache_last_channel_len"],
        ["outputs", "encoded_lengths", "cache_last_channel_next", "cache_last_time_next",
         "cache_last_channel_len_next"],
        {"audio_signal": {0: "N"}, "length": {0: "N"}, "cache_last_channel": {0: "N"},
         "cache_last_time": {0: "N"}, "cache_last_channel_len": {0: "N"}, "outputs": {0: "N"},
         "encoded_lengths": {0: "N"}, "cache_last_channel_next": {0: "N"}, "cache_last_time_next": {0: "N"},
         "cache_last_channel_len_next": {0: "N"}},
        {"vocab_size": str(int(model.vocab_size) - 1), "subsampling_factor": str(stack),
         "window_size": str(w), "chunk_shift": str(w), "normalize_type": "",
         "pred_rnn_layers": str(len(model.predictor.layers)), "pred_hidden": str(int(model.predictor.hidden)),
         "cache_last_channel_dim1": str(layers), "cache_last_channel_dim2": "1",
         "cache_last_channel_dim3": str(hidden), "cache_last_time_dim1": str(layers),
         "cache_last_time_dim2": "1", "cache_last_time_dim3": str(hidden), "feat_dim": str(feature_dim),
         "model_type": "EncDecRNNTBPEModel",
         "comment": "exported by compressor (streaming LSTM RNN-T chunk)"})


@torch.no_grad()
def torch_streaming_greedy(model: nn.Module, feats: torch.Tensor, chunk: int) -> list[int]:
    """What sherpa-onnx's online NeMo transducer decodes: chunks of ``chunk`` frames while a whole chunk
    *and one more frame* are ready (``IsReady``), encoder LSTM states carried, greedy as offline."""
    graph = RNNTStreamingEncoderGraph(model)
    layers, hidden = len(model.encoder.layers), int(model.encoder.layers[0].hidden_size)
    h = torch.zeros(1, layers, 1, hidden)
    c = torch.zeros(1, layers, 1, hidden)
    count = torch.zeros(1, dtype=torch.int64)
    blank = int(model.vocab_size) - 1
    pred, state = model.predict(torch.tensor([[blank]]), model.initial_state(1))
    ids: list[int] = []
    start = 0
    while start + chunk < feats.shape[0]:
        x = feats[start:start + chunk].T[None].float()
        out, _, h, c, count = graph(x, torch.tensor([chunk]), h, c, count)
        start += chunk
        for t in range(out.shape[2]):
            for _ in range(greedy.SHERPA_MAX_SYMBOLS_PER_FRAME):
                y = int(model.join(out[0, :, t], pred[0, 0]).argmax())
                if y == blank:
                    break
                ids.append(y)
                pred, state = model.predict(torch.tensor([[y]]), state)
    return ids


class RNNTExport(SherpaASRExport):
    """LSTM RNN-T models for sherpa-onnx's NeMo-transducer recognizers (offline and online)."""

    name = "rnnt"
    offline_frontend = "nemo_transducer"
    model_type = "nemo_transducer"

    @classmethod
    def detect(cls, model: nn.Module, model_ref: dict[str, Any], task_name: str) -> bool:
        return all(hasattr(model, m) for m in ("encode", "predict", "join"))

    def graphs(self) -> list[GraphFile]:
        return rnnt_graphs(self.model, self.feature_dim, self.normalize_type)

    def offline_files(self, suffix: str = "") -> dict[str, Path]:
        return {k: self.out / f"{k}{suffix}.onnx" for k in ("encoder", "decoder", "joiner")}

    def offline_call(self) -> tuple[str, dict[str, Any]]:
        return "from_transducer", {"model_type": self.model_type, "decoding_method": "greedy_search"}

    def streams(self) -> bool:
        """Whether a streaming encoder can be exported (and is asked for)."""
        return bool(self.args.streaming) and not self.normalize_type and supports_streaming(self.model)

    def any_artefact_matches(self) -> bool:
        if same_features(self.data_frontend, self.offline_frontend) is not False:
            return True
        return self.streams() and same_features(self.data_frontend, ONLINE_FRONTEND) is not False

    @property
    def chunk(self) -> int:
        stack = int(self.model.encoder.stack)
        return -(-self.args.chunk_frames // stack) * stack

    def parity_inputs(self, graphs: list[GraphFile], batch: dict[str, Any], g: torch.Generator
                      ) -> dict[str, tuple[torch.Tensor, ...]]:
        model = self.model
        feats = batch["features"].float()
        lens = batch["feature_lengths"].to(torch.int64)
        with torch.no_grad():
            enc, _ = model.encode(feats, lens)
        n = feats.shape[0]
        layers, hidden = len(model.predictor.layers), int(model.predictor.hidden)
        tokens = torch.randint(0, int(model.vocab_size), (n, 1), generator=g, dtype=torch.int32)
        h = torch.randn(layers, n, hidden, generator=g) * 0.5
        c = torch.randn(layers, n, hidden, generator=g) * 0.5
        with torch.no_grad():
            pred, _ = model.predict(tokens.long(), (h, c))
        return {"encoder.onnx": (feats.transpose(1, 2).contiguous(), lens),
                "decoder.onnx": (tokens, torch.ones(n, dtype=torch.int32), h, c),
                "joiner.onnx": (enc.transpose(1, 2).contiguous(), pred.transpose(1, 2).contiguous())}

    # -- streaming -------------------------------------------------------------------------------
    def extras(self, report: dict[str, Any]) -> list[Path]:
        args = self.args
        if args.streaming and self.normalize_type:
            report["streaming"] = {"exported": False, "note": "no streaming export: per_feature normalisation "
                                   "needs the whole utterance, a stream has only a prefix"}
            return []
        if not self.streams():
            report["streaming"] = {"exported": False,
                                   "note": STREAMING_NOTE if args.streaming else "streaming: false"}
            return []
        report["streaming"] = self._streaming(report["int8"])
        files = [self.out / "encoder.streaming.onnx"]
        if report["streaming"].get("int8_kept"):
            files.append(self.out / "encoder.streaming.int8.onnx")
        return files

    def streaming_files(self, suffix: str = "") -> dict[str, Path]:
        return {"encoder": self.out / f"encoder.streaming{suffix}.onnx",
                "decoder": self.out / f"decoder{suffix}.onnx", "joiner": self.out / f"joiner{suffix}.onnx"}

    def _streaming(self, int8: dict[str, Any]) -> dict[str, Any]:
        """encoder.streaming.onnx for sherpa-onnx's OnlineRecognizer (model_type nemo_transducer)."""
        model, args, out, chunk = self.model, self.args, self.out, self.chunk
        graph = rnnt_streaming_graph(model, self.feature_dim, chunk)
        path = G.write_graph(graph, out, args.opset)
        parity.check_onnx(path)
        sess = parity.session(path)
        g = torch.Generator().manual_seed(1)
        layers, hidden = len(model.encoder.layers), int(model.encoder.layers[0].hidden_size)
        worst = 0.0
        batch = parity.first_batch(self.job.data, max(3, args.parity_batch_sizes[0]))
        for n in (1, 3):
            feats = batch["features"][:n, :chunk].float().transpose(1, 2).contiguous()
            if feats.shape[0] < n or feats.shape[2] < chunk:
                continue
            inputs = (feats, torch.full((n,), chunk, dtype=torch.int64), torch.randn(n, layers, 1, hidden,
                      generator=g) * 0.5, torch.randn(n, layers, 1, hidden, generator=g) * 0.5,
                      torch.zeros(n, dtype=torch.int64))
            worst = max(worst, parity.max_abs_diff(graph, sess, inputs))
        if worst > args.parity_atol:
            raise UserError(f"parity failed: encoder.streaming.onnx differs from PyTorch by {worst:.3g} "
                            f"(> parity_atol {args.parity_atol})")
        utts = parity.load_utterances(self.job.data, "test", args.decode_utterances)
        tail_s = tail_seconds(chunk)
        tail = np.zeros(int(tail_s * 16000), dtype=np.float32)
        online_feats = [sherpa_fbank(np.concatenate([u.wave, tail]), 16000, ONLINE_FRONTEND) for u in utts]
        from compressor.core.progress import track

        ref = [torch_streaming_greedy(model, f, chunk)
               for f in track(online_feats, "export check: PyTorch streaming decode (test)", unit="utt")]
        ids = parity.token_lookup(self.tokens)
        got = parity.sherpa_online_decode(self.streaming_files(), out / "tokens.txt", [u.wave for u in utts],
                                          ids, tail_seconds=tail_s,
                                          desc="export check: sherpa-onnx online decode (test)")
        offline = greedy.torch_greedy_all("rnnt", model, [u.features for u in utts],
                                          desc="export check: PyTorch offline decode (test)")
        match = sum(a == b for a, b in zip(ref, got)) / max(1, len(utts))
        wer_online = self.wer(got, utts)[0]
        matched = same_features(self.data_frontend, ONLINE_FRONTEND)
        res = {"exported": True, "file": path.name, "chunk_frames": chunk,
               "chunk_seconds": chunk * 0.01, "encoder_frames_per_chunk": chunk // int(model.encoder.stack),
               "lookahead_frames": 1, "tail_padding_seconds": tail_s, "max_abs_diff": worst,
               "split": "test", "utterances": len(utts), "split_size": self.split_size("test"),
               "exact_match_vs_pytorch_streaming": match,
               "match_vs_offline": sum(a == b for a, b in zip(got, offline)) / max(1, len(utts)),
               "wer_online_sherpa": wer_online, "wer_offline_pytorch": self.wer(offline, utts)[0],
               "runtime_frontend": ONLINE_FRONTEND, "frontend_matches_training": matched,
               "frontend_note": (f"sherpa-onnx's online NeMo recognizer computes '{ONLINE_FRONTEND}' features "
                                 f"(hann window, 0-8000 Hz); the model was trained on '{self.trained_on}'"
                                 + ("" if matched is not False else ": a mismatch (train with "
                                    "data.frontend=nemo_online for streaming)"))}
        if match < args.min_transcript_match:
            raise UserError(f"parity failed: sherpa-onnx's online recognizer equals the PyTorch streaming "
                            f"decode for only {match:.0%} of {len(utts)} test utterances")
        # The same keys whatever the int8 guards decide: None where no int8 streaming encoder was tried.
        res.update(wer_online_int8=None, int8_kept=False,
                   int8_reason="the offline int8 decoder/joiner was not kept, so no int8 streaming encoder")
        if int8.get("kept"):  # the offline int8 decoder/joiner passed the guard: add an int8 streaming encoder
            qpath = quantize.quantize_dynamic_file(path, quantize.int8_name(path))
            parity.check_onnx(qpath)
            qgot = parity.sherpa_online_decode(self.streaming_files(".int8"), out / "tokens.txt",
                                               [u.wave for u in utts], ids, tail_seconds=tail_s,
                                               desc="export int8 guard: sherpa-onnx online int8 (test)")
            wer_q = self.wer(qgot, utts)[0]
            kept = wer_q - wer_online <= args.int8_tolerance
            res.update(wer_online_int8=wer_q, int8_kept=kept,
                       int8_reason="kept" if kept else f"int8 online WER worse by {wer_q - wer_online:.3g} "
                                                     f"(> int8_tolerance {args.int8_tolerance})")
            if not kept:
                qpath.unlink(missing_ok=True)
        return res

    # -- description -----------------------------------------------------------------------------
    def artefacts(self, report: dict[str, Any]) -> list[Artefact]:
        arts = [self.offline_artefact(report)]
        st = report.get("streaming") or {}
        if st.get("exported"):
            files = {k: p.name for k, p in self.streaming_files().items()}
            files["tokens"] = "tokens.txt"
            int8 = None
            if st.get("int8_kept"):
                int8 = {**{k: p.name for k, p in self.streaming_files(".int8").items()}, "tokens": "tokens.txt"}
            chunk = {k: st[k] for k in ("chunk_frames", "chunk_seconds", "encoder_frames_per_chunk",
                                        "lookahead_frames", "tail_padding_seconds")}
            chunk["feed"] = ("accept_waveform(16000, samples) as audio arrives; decode_stream while is_ready; "
                             f"at the end append {st['tail_padding_seconds']} s of silence (flushes the last "
                             "chunk: it must be longer than a chunk), "
                             "input_finished(), decode while is_ready")
            matched = st["frontend_matches_training"]
            arts.append(Artefact(
                "streaming", "sherpa-onnx", "sherpa_onnx.OnlineRecognizer.from_transducer", files,
                {"num_threads": 1, "model_type": self.model_type, "decoding_method": "greedy_search"},
                self.model_type, ONLINE_FRONTEND, "runtime", matched, int8, chunk,
                {"wer": Figure(st["wer_online_sherpa"], st["split"], st["utterances"], st["split_size"])},
                "" if matched is not False else
                f"sherpa-onnx's online recognizer computes '{ONLINE_FRONTEND}' features, the model was trained "
                f"on '{self.trained_on}': its WER here is measured on those features"))
        # the artefact whose runtime computes the training front end first
        return sorted(arts, key=lambda a: a.matches_training is False)

    def bench_rows(self, report: dict[str, Any]) -> tuple[list[dict[str, Any]], Figure, str]:
        from compressor.export import bench

        rows, cover, note = super().bench_rows(report)
        if (report.get("streaming") or {}).get("exported"):
            utts = parity.load_utterances(self.job.data, "test", self.args.bench_utterances)
            seconds = sum(len(u.wave) for u in utts) / 16000.0
            files = self.streaming_files()
            ids = parity.token_lookup(self.tokens)
            t = bench.timed(lambda: parity.sherpa_online_decode(
                files, self.out / "tokens.txt", [u.wave for u in utts], ids, tail_seconds(self.chunk),
                bench.latency_threads(self.args.threads)))
            rows.append(bench.row(self.variant("ONNX streaming"), None, list(files.values()), t, len(utts), seconds))
            note += "; streaming row: sherpa-onnx OnlineRecognizer, whole utterance fed at once"
        return rows, cover, note

    @classmethod
    def summary_lines(cls, report: dict[str, Any]) -> list[str]:
        lines = super().summary_lines(report)
        st = report.get("streaming")
        if st and st.get("exported"):
            cover = Figure(0, st["split"], st["utterances"], st["split_size"]).coverage()
            lines.append(
                f"- streaming (`{st['file']}`, sherpa-onnx OnlineRecognizer, chunks of {st['chunk_frames']} "
                f"frames = {st['chunk_seconds']:.2f} s) on {cover}: exact match with the PyTorch streaming decode "
                f"{st['exact_match_vs_pytorch_streaming']:.1%}, with the offline decode "
                f"{st['match_vs_offline']:.1%}; WER online {st['wer_online_sherpa']:.2%} vs offline (PyTorch, "
                f"training features) {st['wer_offline_pytorch']:.2%} ({st['frontend_note']})")
            if st.get("wer_online_int8") is not None:
                lines.append(f"- streaming int8 on the same utterances: WER online {st['wer_online_int8']:.2%}; "
                             + ("kept (`encoder.streaming.int8.onnx`)" if st["int8_kept"] else st["int8_reason"]))
            else:
                lines.append(f"- streaming int8: {st['int8_reason']}")
        elif st:
            lines.append(f"- streaming: {st['note']}")
        return lines
