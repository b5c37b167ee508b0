"""TensorFlow, imported the one way that works with tensorflow-privacy, and quietly.

tensorflow-privacy's optimizers need Keras 2 (the ``tf-keras`` package), which
TensorFlow only serves as ``tf.keras`` when ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is first imported. Every fedsim module gets ``tf`` from here.

TensorFlow's native code writes log lines to the process's stderr (oneDNN,
CUDA drivers, ``failed call to cuInit``, absl's "before InitializeLog"
warning) before Python logging exists, whatever ``TF_CPP_MIN_LOG_LEVEL``
says; so stderr's file descriptor points to /dev/null while TensorFlow is
imported and looks for GPUs, and TensorFlow's later logs stop at level 3.
To see them all: ``FEDSIM_TF_LOG=0`` (any ``TF_CPP_MIN_LOG_LEVEL`` value),
or ``fedsim --verbose ...`` on the command line.
"""

import contextlib
import logging
import os
import sys

from fedsim.settings import tf_log_level

if os.environ.get("TF_USE_LEGACY_KERAS", "1") != "1":
    raise ImportError(
        "fedsim needs Keras 2 (tf-keras): TF_USE_LEGACY_KERAS must be 1, "
        f"not {os.environ['TF_USE_LEGACY_KERAS']!r}."
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

_LEVEL = tf_log_level()
VERBOSE = _LEVEL is not None
os.environ["TF_CPP_MIN_LOG_LEVEL"] = _LEVEL if VERBOSE else "3"


@contextlib.contextmanager
def native_stderr_silenced(silence: bool = not VERBOSE):
    """Point file descriptor 2 at /dev/null (native code's stderr), then back; Python's own errors still show."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with native_stderr_silenced():
    import tensorflow as tf

    GPUS = tf.config.list_physical_devices("GPU")  # initialises CUDA (and its cuInit error) while stderr is off

if not tf.keras.__name__.startswith("tf_keras"):
    raise ImportError(
        "TensorFlow was imported with Keras 3 before fedsim. Import fedsim (or set "
        "TF_USE_LEGACY_KERAS=1) before anything imports tensorflow or keras."
    )

if not VERBOSE:
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
# AutoGraph echoes notes about library helpers it runs as-is to stdout in notebooks.
tf.autograph.set_verbosity(0, alsologtostdout=False)

# tensorflow_privacy/__init__ imports removed estimator code; this flag skips it
# so that its submodules can be imported directly.
sys.skip_tf_privacy_import = True

_noted = []


def device_note() -> str:
    """The compute device in one line: "no GPU found, using CPU" or the GPUs TensorFlow uses."""
    if not GPUS:
        return "no GPU found, using CPU"
    return f"using {len(GPUS)} GPU{'s' if len(GPUS) > 1 else ''}: {', '.join(g.name for g in GPUS)}"


def note_device() -> None:
    """Print ``device_note()`` once per process, where training starts."""
    if not _noted:
        _noted.append(True)
        print(device_note(), flush=True)


__all__ = ["GPUS", "device_note", "note_device", "native_stderr_silenced", "tf"]
