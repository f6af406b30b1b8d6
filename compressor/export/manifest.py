"""What an export says about itself: ``model.json``, ``README.md`` and the same facts in ONNX metadata.

``model.json`` (``format: compressor-export``, ``format_version: 1``) is enough to load the export without
this project: each entry of ``artefacts`` names the runtime, the exact constructor (``call``), its file
arguments (``files``, relative to the export directory) and other arguments (``kwargs``), the sherpa-onnx
``model_type``, the front end the runtime computes (or the caller must compute) with all its settings,
whether the model was trained on it, the streaming chunk sizes, and measured figures with the split and the
number of utterances they cover. ``artefacts[0]`` is the recommended one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compressor.export.family import Artefact, FamilyExport
from compressor.export.frontend import frontend as frontend_settings
from compressor.export.graphs import add_metadata

FORMAT = "compressor-export"
FORMAT_VERSION = 1


def _frontend(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    try:
        return frontend_settings(name).as_dict()
    except ValueError:
        return {"name": name}


def build(unit: FamilyExport, report: dict[str, Any], artefacts: list[Artefact]) -> dict[str, Any]:
    """The manifest of an export (``model.json``)."""
    job = unit.job
    arts = []
    for a in artefacts:
        arts.append({
            "name": a.name, "runtime": a.runtime, "call": a.call, "files": a.files, "kwargs": a.kwargs,
            "int8_files": a.int8_files, "model_type": a.model_type,
            "python": a.python_call(), "python_int8": a.python_call(int8=True) if a.int8_files else None,
            "frontend": _frontend(a.frontend), "frontend_computed_by": a.frontend_computed_by,
            "frontend_matches_training": a.matches_training, "streaming": a.streaming,
            "figures": {k: f.as_dict() for k, f in a.figures.items()}, "note": a.note})
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "family": unit.name, "model": job.model_name, "model_ref": job.model_ref.get("name"),
        "sample_rate": int(unit.info.get("sample_rate", 16000)), "feature_dim": unit.feature_dim,
        "training_frontend": _frontend(unit.data_frontend),
        "normalize_type": unit.normalize_type or "none",
        **unit.manifest_fields(),
        "decode_example": unit.decode_example or None,
        "recommended": artefacts[0].name if artefacts else None,
        "artefacts": arts,
        "report": "export_report.json",
    }


def metadata(manifest: dict[str, Any], artefact: dict[str, Any]) -> dict[str, str]:
    """The manifest's facts for one artefact as ONNX ``metadata_props`` (strings)."""
    fe = artefact.get("frontend") or {}
    meta = {
        "compressor_format": f"{FORMAT}/{FORMAT_VERSION}", "manifest": "model.json",
        "family": manifest["family"], "runtime": artefact["runtime"], "artefact": artefact["name"],
        "load_call": artefact["python"], "sample_rate": str(manifest["sample_rate"]),
        "frontend": str(fe.get("name", "unknown")), "frontend_computed_by": artefact["frontend_computed_by"],
        "frontend_matches_training": str(artefact["frontend_matches_training"]).lower(),
        "training_frontend": str((manifest.get("training_frontend") or {}).get("name", "unknown")),
    }
    if artefact.get("model_type"):
        meta["sherpa_onnx_model_type"] = artefact["model_type"]
    for key in ("window", "low_freq_hz", "high_freq_hz", "mel_scale", "remove_dc_offset", "preemphasis",
                "frame_length_ms", "frame_shift_ms", "num_mel_bins"):
        if key in fe:
            meta[f"frontend_{key}"] = str(fe[key]).lower() if isinstance(fe[key], bool) else str(fe[key])
    if "blank_id" in manifest:
        meta["blank_id"] = str(manifest["blank_id"])
    if artefact.get("streaming"):
        st = artefact["streaming"]
        meta["streaming_chunk_frames"] = str(st["chunk_frames"])
        meta["streaming_chunk_seconds"] = f"{st['chunk_seconds']:.3f}"
        meta["streaming_tail_padding_seconds"] = str(st["tail_padding_seconds"])
    return meta


def write_metadata(out: Path, manifest: dict[str, Any]) -> None:
    """Add every artefact's facts to its ONNX files (a file shared by two artefacts gets the first's)."""
    done: set[str] = set()
    for art in manifest["artefacts"]:
        meta = metadata(manifest, art)
        for files in (art["files"], art.get("int8_files") or {}):
            for name in files.values():
                path = out / name
                if name.endswith(".onnx") and name not in done and path.exists():
                    shared = [a["name"] for a in manifest["artefacts"]
                              if name in a["files"].values() or name in (a.get("int8_files") or {}).values()]
                    add_metadata(path, {**meta, "artefacts": ",".join(shared)})
                    done.add(name)


def _fe_line(fe: dict[str, Any] | None) -> str:
    if not fe:
        return "not named by the data module"
    if "window" not in fe:
        return f"`{fe['name']}`"
    return (f"`{fe['name']}`: {fe['window']} window, mel {fe['low_freq_hz']:g}-{fe['high_freq_hz']:g} Hz "
            f"({fe['mel_scale']}), {fe['num_mel_bins']} bins, {fe['frame_length_ms']:g} ms frames every "
            f"{fe['frame_shift_ms']:g} ms, pre-emphasis {fe['preemphasis']}, "
            f"{'' if fe['remove_dc_offset'] else 'no '}DC-offset removal, {fe['samples_scale']}")


def readme(manifest: dict[str, Any]) -> str:
    """The export directory's README.md."""
    m = manifest
    lines = [f"# {m['model']} ({m['model_ref']}, {m['family']}) exported by compressor", "",
             "Everything here runs without compressor. `model.json` holds the same facts, machine-readable; "
             "the ONNX files carry them in their metadata (`load_call`, `frontend_*`, `sample_rate`, ...). "
             "`export_report.json` has every check and measurement.", "",
             f"- sample rate: {m['sample_rate']} Hz mono, samples as float in [-1, 1]",
             f"- trained on front end {_fe_line(m.get('training_frontend'))}",
             f"- normalisation: {m['normalize_type']}"
             + (" (global CMVN is inside the model)" if m["normalize_type"] == "none" else
                " (per utterance; sherpa-onnx applies it from the metadata)")]
    if "blank_id" in m:
        lines.append(f"- tokens: `{m['tokens']}` ({m['vocab_size']} entries), blank `{m['blank_token']}` = id "
                     f"{m['blank_id']} (the last)")
    if "labels" in m:
        lines.append(f"- labels: `{m['labels']}` ({m['num_classes']} classes, one per line, index = logit)")
    lines.append("")
    lines += _decode_section(m)
    for i, a in enumerate(m["artefacts"]):
        title = f"## {a['name']}: {a['runtime']}" + (" (recommended)" if i == 0 else "")
        lines += [title, ""]
        files = ", ".join(f"`{v}`" for v in a["files"].values())
        lines.append(f"- files: {files}" + (f"; int8: {', '.join(f'`{v}`' for v in a['int8_files'].values())}"
                                               if a.get("int8_files") else ""))
        if a.get("model_type"):
            lines.append(f"- sherpa-onnx `model_type`: `{a['model_type']}` (required: without it sherpa-onnx "
                         f"loads the files as another model type and stops)")
        who = "sherpa-onnx computes" if a["frontend_computed_by"] == "runtime" else "you compute"
        how = (f" (`fbank()` in `{m['decode_example']}` computes it in numpy)"
               if a["frontend_computed_by"] == "caller" and m.get("decode_example") else "")
        lines.append(f"- front end ({who} it){how}: {_fe_line(a['frontend'])}")
        if a["frontend_matches_training"] is False:
            lines.append("- **this front end is not the one the model was trained on**: " + a["note"])
        elif a["frontend_matches_training"]:
            lines.append("- the model was trained on this front end")
        st = a.get("streaming")
        if st:
            lines.append(f"- streaming: chunks of {st['chunk_frames']} feature frames ({st['chunk_seconds']:.2f} s; "
                         f"{st['encoder_frames_per_chunk']} encoder frames), decoded once a chunk and "
                         f"{st['lookahead_frames']} more frame are ready; {st['feed']}")
        for key, f in a["figures"].items():
            cover = (f"all {f['split_size']} {f['split']} utterances" if f["utterances"] >= f["split_size"]
                     else f"the first {f['utterances']} of {f['split_size']} {f['split']} utterances")
            lines.append(f"- {key}: {f['value']:.2%} on {cover}")
        lines += ["", "```python", f"import {a['runtime'].replace('-', '_')}",
                  a["python"].replace("'", '"'), "```", ""]
        if a.get("python_int8"):
            lines += ["int8:", "", "```python", a["python_int8"].replace("'", '"'), "```", ""]
    return "\n".join(lines)


def _decode_section(m: dict[str, Any]) -> list[str]:
    """How to decode with this folder alone: the command, then the loop the example runs."""
    script = m.get("decode_example")
    if not script:
        return []
    lines = ["## Decode", "", f"`{script}` (in this folder) is a complete example; it needs only the runtime, "
             "numpy and soundfile, and reads everything else from `model.json`:", "", "```bash"]
    if m["family"] == "classifier":
        lines += ["pip install onnxruntime numpy soundfile", f"python {script} a.wav b.wav        # FILE, LABEL, "
                  "PROBABILITY per line; --int8 for the int8 model", "```", "", "What it does for each file:", "",
                  "```python", "import numpy as np, onnxruntime", f"from {script[:-3]} import fbank, read_16k",
                  "", "session = onnxruntime.InferenceSession(\"model.onnx\", providers=[\"CPUExecutionProvider\"])",
                  "labels = open(\"labels.txt\", encoding=\"utf-8\").read().split(\"\\n\")",
                  "feats = fbank(read_16k(\"a.wav\"), \"" + str((m.get("training_frontend") or {}).get("name", "nemo"))
                  + "\")  # (T, 80) log-mel, the training front end",
                  "feed = {\"features\": feats[None], \"feature_lengths\": np.array([len(feats)])}",
                  "logits = session.run(None, feed)[0][0]",
                  "print(labels[int(logits.argmax())])", "```", ""]
        if m.get("normalize_type") == "per_feature":  # before the model: per-utterance normalisation
            at = next(i for i, line in enumerate(lines) if line.startswith("feed = "))
            lines.insert(at, "feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)  # per_feature normalisation")
        return lines
    lines += ["pip install sherpa-onnx numpy soundfile", f"python {script} a.wav b.wav        # FILE, TRANSCRIPT per "
              "line; --int8, --streaming (when there is a streaming artefact)", "```", "",
              "What it does for each file (offline recognizer):", "", "```python",
              "import soundfile as sf", f"from {script[:-3]} import to_text", "",
              "recognizer = ...  # the constructor below, with its files", "samples, rate = sf.read(\"a.wav\", "
              "dtype=\"float32\")  # mono, in [-1, 1]", "stream = recognizer.create_stream()",
              "stream.accept_waveform(rate, samples)", "recognizer.decode_stream(stream)",
              "print(to_text(list(stream.result.tokens)))  # tokens -> words", "```", ""]
    return lines


def write(out: Path, manifest: dict[str, Any]) -> list[Path]:
    """``model.json`` and ``README.md`` into ``out``, metadata into the ONNX files."""
    write_metadata(out, manifest)
    (out / "model.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (out / "README.md").write_text(readme(manifest), encoding="utf-8")
    return [out / "model.json", out / "README.md"]
