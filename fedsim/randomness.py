"""Where a run's randomness comes from, and who could reproduce it.

Two kinds of randomness, kept apart:

- **public**: what makes a run repeat from its ``seed`` (the data split,
  initial weights, plain training's batch order, which hospitals attack).
  The seed travels in every train message, ``config.yaml`` and the audit
  log: anyone may know it;
- **secret**: what a privacy claim rests on (DP-SGD's record sample and
  noise, local DP's noise, central DP's noise and the hospital sample it
  amplifies by). A party who could regenerate it could strip the noise and
  void the epsilon. Each hospital draws its own from a secret it alone holds
  (``hospital_rng``; on Flower's runtimes the node's own, never anything the
  server sends); the server draws its noise and sample from a secret the
  hospitals and log readers do not have (``global_generators``).

The experimenter may fix the secret with ``Experiment(noise_seed=...)`` to
repeat a DP run; it stays in the experimenter's process and is never written
to messages, ``config.yaml``, the audit log or a study's cache key in the
clear. Without it every run draws a fresh secret from the operating system.
"""

import contextlib
import random
import secrets

import numpy as np

HOSPITAL = 0x5EC2E7  # tags: a hospital's private stream and the server's never coincide
SERVER = 0x5E2FE2


def fresh_secret() -> int:
    """128 bits from the operating system's generator: a secret nobody else can reproduce."""
    return secrets.randbits(128)


def hospital_rng(secret: int, seed: int, server_round: int, hospital: int) -> np.random.Generator:
    """Hospital ``hospital``'s private generator in a round (DP-SGD's record sample and noise), from ``secret``.

    The public ``seed`` is mixed in, so that runs of a sweep over seeds draw
    independent noise under one ``noise_seed``; it adds no secrecy.
    """
    return np.random.default_rng([secret, seed, server_round, hospital, HOSPITAL])


@contextlib.contextmanager
def kept_global_generators():
    """Whatever the block does to Python's ``random`` and numpy's global generator is undone when it ends."""
    saved_random, saved_numpy = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(saved_random)
        np.random.set_state(saved_numpy)


@contextlib.contextmanager
def global_generators(entropy):
    """Python's ``random`` and numpy's global generator drawn from ``entropy`` inside the block, restored after.

    Flower samples hospitals with ``random`` and its DP wrappers and mods
    draw noise from numpy's global generator; neither takes a generator, so
    the run lends them a state of its own. The caller's states are put back
    when the block ends (a notebook's own random numbers are left alone).
    """
    words = np.random.SeedSequence(entropy).generate_state(8)
    with kept_global_generators():
        random.setstate(random.Random(int.from_bytes(words[:4].tobytes(), "little")).getstate())
        np.random.set_state(np.random.RandomState(np.random.MT19937(np.random.SeedSequence(words[4:]))).get_state())
        yield


def server_entropy(seed: int, secret: int, private: bool) -> list[int]:
    """What the server's global generators are drawn from: the public ``seed``, or its ``secret`` when a privacy
    claim rests on the server's noise or sample (``private``)."""
    return [secret, seed, SERVER] if private else [seed]
