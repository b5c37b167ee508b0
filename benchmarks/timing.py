"""Timing helpers shared by the benchmarks (run as scripts: ``python benchmarks/X.py``)."""

import time

import fedsim as fs


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` (the caller warms up first)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def round_cost(fed, rounds: int = 3, repeat: int = 2, **experiment) -> float:
    """Seconds per training round: (``rounds`` - 1 round) / (rounds - 1), so set-up and evaluation cancel."""
    def run(n):
        fs.Experiment(federation=fed, rounds=n, evaluate_every=n, **experiment).run()

    run(1)  # warm-up: trace the compiled functions
    return (best_of(lambda: run(rounds), repeat) - best_of(lambda: run(1), repeat)) / (rounds - 1)
