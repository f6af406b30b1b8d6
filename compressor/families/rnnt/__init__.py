"""The RNN-T family: streaming LSTM RNN-T model, its loss and decoding, task ``rnnt``, ONNX export unit."""
