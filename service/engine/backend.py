"""Pick Keras' backend for the Keras fallback, before Keras is first imported.

Only a version folder without ``model.onnx`` gets here (``service.serving.registry.open_runtime``), and
only with the ``keras`` extra installed (``pip install ".[keras]"``): every other folder runs on
ONNX Runtime (``service.engine.runtime``) and Keras is never imported.

Training needs TensorFlow; serving three small Dense networks does not. Keras 3 runs the same
``.keras`` files on its ``numpy`` backend (inference only), which starts in a fraction of a
second and needs about a third of the memory and disk of TensorFlow. Keras reads the backend
once, at import, from ``KERAS_BACKEND``; so the service sets it itself, overriding whatever the
user's environment says. ``python -m service`` always gets here before Keras is imported.

Only a process that imported Keras before the service (a test suite that also trains, say)
keeps its backend: the models load the same, and the service logs which backend it got.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

SERVING_BACKEND = "numpy"

logger = logging.getLogger("service.backend")


def load_keras() -> ModuleType:
    """Import Keras on the serving backend and return the module."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = SERVING_BACKEND
    import keras

    if keras.backend.backend() != SERVING_BACKEND:
        logger.warning(
            "Keras was imported with the %r backend before the service could select %r",
            keras.backend.backend(),
            SERVING_BACKEND,
        )
    return keras
