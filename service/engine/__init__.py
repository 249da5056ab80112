"""Engines: what runs a model version's network. ONNX Runtime on ``model.onnx``, or the Keras
fallback for a folder without one. Kinds receive a ``Runtime`` and never know which."""
