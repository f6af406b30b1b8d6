"""External teachers: models trained elsewhere, loaded from other toolkits' files (Hugging Face, NeMo, fairseq,
sherpa-onnx ONNX layouts, CTranslate2 Whisper). Each module registers its model(s); they use the families, never
the other way round."""
