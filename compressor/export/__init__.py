"""Edge export (issue 5): ONNX files that onnxruntime / sherpa-onnx load without this project.

* ``compressor export RUN_DIR [--out DIR] [--force]`` (:func:`compressor.export.api.export_run`), or an
  ``export: {name: onnx, ...}`` section in a spec (the engine runs it after the last stage).
* RNN-T students (``rnnt_lstm``) become sherpa-onnx NeMo-transducer files (``encoder.onnx``, ``decoder.onnx``,
  ``joiner.onnx``, ``tokens.txt``), CTC models (``quartznet``) a NeMo-CTC ``model.onnx``, classifiers a
  ``model.onnx`` from fbank to logits plus ``labels.txt``. See :mod:`compressor.export.graphs`.
* Every export checks parity (onnx.checker, onnxruntime vs PyTorch, sherpa-onnx vs PyTorch transcripts on the
  test split) and fails with a :class:`~compressor.errors.UserError` when it does not hold; int8 files are
  kept only within ``int8_tolerance``; a latency/RTF report and ``export_report.png`` come with the files.
* sherpa-onnx computes its own features; :mod:`compressor.export.frontend` documents (and re-implements) the
  front end it uses per model type. ``examples/transcribe_sherpa.py`` decodes WAVs with the exported files.
"""
