"""What the ASR families share: token convention, error rates, sherpa-onnx-style greedy decoding and export."""
