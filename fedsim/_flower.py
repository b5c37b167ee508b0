"""Flower's logger, turned down while fedsim shows its own progress."""

import logging
from contextlib import contextmanager


@contextmanager
def flower_log_level(level: int):
    """Raise the ``flwr`` logger's threshold for the duration of the block."""
    logger = logging.getLogger("flwr")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
