"""Every ``FEDSIM_*`` environment variable fedsim reads, in one place (read when asked, never cached).

- ``FEDSIM_TF_LOG``: TensorFlow's native log level (any ``TF_CPP_MIN_LOG_LEVEL``
  value); set, or ``fedsim --verbose``, to see TensorFlow's own log lines;
- ``FEDSIM_RESULTS``: where runs without ``out=`` write their folder (default:
  the temp dir);
- ``FEDSIM_CACHE``: the studies' run cache (default: ``.fedsim_cache``);
- ``FEDSIM_CLAIMS``: ``strict`` makes a notebook's false claim raise (the
  notebook tests set it);
- ``FEDSIM_FEDERATION_TAG``: marks the processes of a loopback federation
  (set by fedsim on them, so that they can be found and stopped).
"""

import os
import sys
from pathlib import Path

TF_LOG = "FEDSIM_TF_LOG"
RESULTS = "FEDSIM_RESULTS"
CACHE = "FEDSIM_CACHE"
CLAIMS = "FEDSIM_CLAIMS"
FEDERATION_TAG = "FEDSIM_FEDERATION_TAG"


def tf_log_level() -> str | None:
    """TensorFlow's native log level asked for: ``FEDSIM_TF_LOG``, "0" for ``fedsim --verbose``, else None.

    The command line's ``--verbose`` is read from ``sys.argv`` here: the CLI parses its arguments only after
    fedsim (and TensorFlow, whose start-up lines it governs) loaded.
    """
    if TF_LOG in os.environ:
        return os.environ[TF_LOG]
    argv = getattr(sys, "argv", None) or [""]
    return "0" if Path(argv[0]).name == "fedsim" and "--verbose" in argv[1:] else None


def results_base() -> str | None:
    """The folder under which runs without ``out=`` write theirs (``FEDSIM_RESULTS``), or None: the temp dir."""
    return os.environ.get(RESULTS) or None


def cache_folder() -> str:
    """Where studies cache their runs (``FEDSIM_CACHE``, default ``.fedsim_cache``)."""
    return os.environ.get(CACHE, ".fedsim_cache")


def strict_claims() -> bool:
    """Whether a notebook's false claim raises (``FEDSIM_CLAIMS=strict``) rather than prints."""
    return os.environ.get(CLAIMS, "").lower() == "strict"
