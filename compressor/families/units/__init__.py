"""The speech-units family: k-means units with a BERT over them (``vq_bert``), task ``masked_units``."""
