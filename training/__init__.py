"""Offline training of the three chapter-3 models, and of models fitted on a user's own CSV or
JSON Lines file (``python -m training --help``).

Training needs TensorFlow (Keras' numpy backend cannot fit). The backend is chosen here, before
any module of this package imports Keras, so that neither the import order of ``export`` /
``evaluate`` nor a ``keras.json`` left by another tool can move training to another backend. An
explicit ``KERAS_BACKEND`` in the environment still wins. TensorFlow's start-up chatter is
silenced so that a data error prints as the one line it is meant to be.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
