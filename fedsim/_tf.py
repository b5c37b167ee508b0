"""TensorFlow, imported the one way that works with tensorflow-privacy.

tensorflow-privacy's optimizers need Keras 2 (the ``tf-keras`` package), which
TensorFlow only serves as ``tf.keras`` when ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is first imported. Every fedsim module gets ``tf`` from here.
"""

import os
import sys

if os.environ.get("TF_USE_LEGACY_KERAS", "1") != "1":
    raise ImportError(
        "fedsim needs Keras 2 (tf-keras): TF_USE_LEGACY_KERAS must be 1, "
        f"not {os.environ['TF_USE_LEGACY_KERAS']!r}."
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import tensorflow as tf  # noqa: E402

if not tf.keras.__name__.startswith("tf_keras"):
    raise ImportError(
        "TensorFlow was imported with Keras 3 before fedsim. Import fedsim (or set "
        "TF_USE_LEGACY_KERAS=1) before anything imports tensorflow or keras."
    )

# AutoGraph echoes notes about library helpers it runs as-is to stdout in notebooks.
tf.autograph.set_verbosity(0, alsologtostdout=False)

# tensorflow_privacy/__init__ imports removed estimator code; this flag skips it
# so that its submodules can be imported directly.
sys.skip_tf_privacy_import = True

__all__ = ["tf"]
