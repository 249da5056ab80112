"""The contract between training and serving: the on-disk model format (``artifacts``) and the
preprocessing both sides must share (``vectorize``, ``tfidf``). The only part of ``service``
that ``training`` imports, besides the engine's reference rows; it imports nothing of the rest."""
