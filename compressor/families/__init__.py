"""Built-in model families: each package owns its model, task, export unit and registration (``plugin.py``).

* :mod:`compressor.families.rnnt`: the streaming LSTM RNN-T (``rnnt_lstm``), task ``rnnt``, export unit ``rnnt``.
* :mod:`compressor.families.ctc`: QuartzNet (``quartznet``), task ``ctc``, export unit ``ctc``.
* :mod:`compressor.families.slu`: utterance classifiers (``seq_classifier``, ``slu_student``, ``vq_bert_ds2``),
  task ``classification``, export unit ``classifier``.
* :mod:`compressor.families.units`: discrete speech units and their BERT (``vq_bert``), task ``masked_units``.
* :mod:`compressor.families.asr`: what the ASR families share (vocabulary convention, error rates, greedy decoding
  as sherpa-onnx does it, the sherpa-onnx export steps).
"""
