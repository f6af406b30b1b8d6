"""Decode examples an export carries: each export folder gets the one for its family, so a device engineer
can run it with nothing else (``python transcribe_sherpa.py a.wav`` inside the folder).

* ``transcribe_sherpa.py``: RNN-T and CTC exports, sherpa-onnx offline or streaming (``--streaming``);
* ``classify_onnxruntime.py``: classifier exports, onnxruntime, with the front end computed in numpy.

They import nothing from compressor (``examples/`` links to them).
"""
