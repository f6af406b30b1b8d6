"""Synthetic corpora: espeak-ng speakers reading generated sentences, built once into the cache and read back
through the data layer (:mod:`compressor.data`) like any user corpus.

* :mod:`~compressor.corpora.synth`, :mod:`~compressor.corpora.voices`: the speech synthesiser and its speakers;
* :mod:`~compressor.corpora.grammars`, :mod:`~compressor.corpora.grammars_large`,
  :mod:`~compressor.corpora.lexicon`: the sentences;
* :mod:`~compressor.corpora.corpus`, :mod:`~compressor.corpora.build`: a corpus's settings and plan, and its
  synthesis into the cache;
* :mod:`~compressor.corpora.datasets`: the ``commands``, ``read_speech`` and ``shifted`` dataset components;
* :mod:`~compressor.corpora.synthetic_features`: ``synthetic_features``, feature sequences without audio for fast
  engine tests.
"""
