"""Edge export: ONNX files that onnxruntime / sherpa-onnx load without this project.

* ``compressor export RUN_DIR [--out DIR] [--force]`` (:func:`compressor.cli.export.export_run`), or an
  ``export: {name: onnx, ...}`` section in a spec (the engine runs it after the last stage); both hand the
  model to :func:`compressor.export.run.export_model`, which writes into a folder :mod:`compressor.export.api`
  allows.
* :mod:`compressor.export.exporter` does what every model family shares (graphs, ``onnx.checker``,
  onnxruntime parity, the int8 guard, latency, the manifest); the family's export unit supplies the rest
  (:mod:`compressor.families.rnnt.export`: sherpa-onnx NeMo transducer, offline and streaming;
  :mod:`compressor.families.ctc.export`: NeMo CTC; :mod:`compressor.families.slu.export`: onnxruntime), a
  :class:`compressor.export.family.FamilyExport` registered as an ``export_unit`` component. This package never
  imports a family: the exporter finds the unit through the registry.
* Every export describes itself (:mod:`compressor.export.manifest`: ``model.json``, ``README.md``, ONNX
  metadata): runtime, exact call, ``model_type``, front end per artefact, chunk sizes, figures with coverage.
* sherpa-onnx computes its own features; :mod:`compressor.export.frontend` computes the same ones with its
  library (kaldi-native-fbank) and says which runtime path computes which.
"""
