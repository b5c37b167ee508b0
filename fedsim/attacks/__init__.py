"""Attacks on what hospitals share: gradient inversion of updates and membership inference.

The honest-but-curious server (an observer on the replies) or anyone holding
the trained model runs them; every result is a tidy row
(attack, hospital, round, metric, value) of ``Result.attacks``.
"""
