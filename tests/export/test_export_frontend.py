"""The export's front ends against sherpa-onnx's own, read back from its online recognizer on real speech.

sherpa-onnx's ``OnlineStream.get_frames`` hands out the features its online recognizer computed, so the
online front end is compared exactly (no probe model). "Real speech": sentences spoken by espeak-ng (through
the ``espeakng-loader`` wheel, resampled to 16 kHz), plus the recorded speech of Debian's
``pocketsphinx-testdata`` when it is installed (``/usr/share/pocketsphinx/test/data``; never required).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.data.features import fbank
from compressor.export.frontend import FRONTENDS, frontend, same_features, sherpa_fbank

sherpa_onnx = pytest.importorskip("sherpa_onnx")
RECORDED = Path("/usr/share/pocketsphinx/test/data")


def _speech() -> list[tuple[str, np.ndarray]]:
    from compressor.corpora.synth import Voice, synthesize
    from compressor.data.audio import resample

    out = []
    for text, voice in (("turn the kitchen lights off please", Voice("en-us", "m3")),
                        ("seven green boxes arrived on monday morning", Voice("en-gb-x-rp", "f2", rate=150))):
        pcm, rate = synthesize(text, voice)
        wave = resample(torch.from_numpy(pcm.astype(np.float32) / 32768.0), rate, 16000).numpy()
        out.append((f"espeak {voice.espeak_name}", wave.astype(np.float32)))
    if RECORDED.is_dir():
        import soundfile as sf

        for path in sorted(RECORDED.rglob("*.wav"))[:4]:
            wave, rate = sf.read(str(path), dtype="float32")
            if rate == 16000 and wave.ndim == 1:
                out.append((path.name, wave))
    return out


@pytest.fixture(scope="module")
def online_recognizer(tmp_path_factory):
    """sherpa-onnx's online NeMo-transducer recognizer on a (untrained) streaming export."""
    from compressor.families.rnnt.probe import sherpa_online_probe

    return sherpa_online_probe(tmp_path_factory.mktemp("online"))


def test_online_features_equal_sherpa_onnx_online_recognizer(online_recognizer):
    speech = _speech()
    assert len(speech) >= 2
    for name, wave in speech:
        ours = sherpa_fbank(wave, 16000, "nemo_online").numpy()
        stream = online_recognizer.create_stream()
        stream.accept_waveform(16000, wave)
        stream.input_finished()
        n = ours.shape[0]
        assert n == (len(wave) + 80) // 160 > 50
        theirs = np.asarray(stream.get_frames(0, n), dtype=np.float32).reshape(n, 80)
        assert np.abs(ours - theirs).max() <= 1e-3, name
        # the data layer's torch front end, which the model is trained on, is as close
        train = fbank(torch.from_numpy(wave), 16000, "nemo_online").numpy()
        assert np.abs(train - theirs).max() <= 1e-3, name
        # and the comparison can fail: the offline recognizer's front end is far from these features
        offline = sherpa_fbank(wave, 16000, "nemo_transducer").numpy()
        assert np.abs(offline - theirs).mean() > 0.1, name


def test_frontend_settings_and_equivalences():
    assert same_features("nemo", "nemo_transducer") and same_features("nemo_ctc", "nemo_online")
    assert same_features("nemo", "nemo_online") is False and same_features(None, "kaldi") is None
    assert frontend("nemo_online").window == "hann" and frontend("nemo").high_freq_hz == 7600
    assert set(FRONTENDS) == {"kaldi", "nemo_transducer", "nemo_ctc", "nemo_online"}
    with pytest.raises(ValueError, match="unknown front end"):
        frontend("mfcc")
