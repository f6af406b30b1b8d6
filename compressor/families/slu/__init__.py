"""The SLU family: utterance classifiers (intents, keywords), task ``classification``, ONNX export unit."""
