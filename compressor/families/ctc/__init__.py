"""The CTC family: QuartzNet model, task ``ctc``, ONNX export unit."""
