"""SecAgg+ overhead, measured side by side in one run; prints times and ratios.

Workload: 10 and 50 hospitals, ~600 training rows each, MLP (features-64-64-1),
batch 32, 1 local epoch, every hospital every round. Compared per training
round (evaluation excluded: (3 rounds - 1 round) / 2, evaluating only at the end):
  plain FedAvg on the in-process Grid  vs  FedAvg through Flower's SecAgg+
  (default SecAgg(): num_shares=3, reconstruction_threshold=2, and a wider
  neighbourhood num_shares=0.5 of the sampled hospitals, threshold 0.6).
Then dropouts: with 10 hospitals, d of them fail after sharing keys, every
round; how many rounds SecAgg+ still completes, and the round time.

    python benchmarks/secagg.py
"""

import json
import time

from timing import round_cost

import fedsim as fs
from fedsim.privacy import SecAgg

ROUNDS = 3


def offline_after_sharing_keys(n_dropped):
    """Hospitals 0..n_dropped-1 fail in SecAgg+'s masked-vector stage (after sending their key shares)."""
    def mod(message, context, call_next):
        if context.node_config["partition-id"] < n_dropped:
            raise RuntimeError("offline mid-protocol")
        return call_next(message, context)

    return mod


def main():
    results = {}
    wide = SecAgg(num_shares=0.5, reconstruction_threshold=0.6)
    print(f"per training round (s), MLP, {ROUNDS} - 1 rounds, every hospital sampled\n")
    print(f"{'hospitals':>9} {'plain':>8} {'SecAgg+ k=3':>12} {'ratio':>6} {'SecAgg+ k=n/2':>14} {'ratio':>6}")
    for n in (10, 50):
        fed = fs.synthetic_federation("icu_mortality", n_hospitals=n, n_patients=n * 750, seed=0)
        plain = round_cost(fed, rounds=ROUNDS, batch_size=32)
        secagg = round_cost(fed, rounds=ROUNDS, batch_size=32, privacy=SecAgg())
        secagg_wide = round_cost(fed, rounds=ROUNDS, batch_size=32, privacy=wide)
        results[n] = {"plain_s": plain, "secagg_s": secagg, "secagg_wide_s": secagg_wide}
        print(f"{n:>9} {plain:>8.3f} {secagg:>12.3f} {secagg / plain:>5.1f}x {secagg_wide:>14.3f} "
              f"{secagg_wide / plain:>5.1f}x")

    print("\ndropouts after key sharing, 10 hospitals, every round:")
    print(f"{'dropped':>7} {'settings':>10} {'rounds completed':>17} {'wall s / round (all in)':>24}")
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=10, n_patients=10 * 750, seed=0)
    for n_dropped in (0, 1, 3, 5):
        for name, settings in (("k=3, t=2", SecAgg()), ("k=5, t=3", SecAgg(num_shares=5, reconstruction_threshold=3))):
            mods = [offline_after_sharing_keys(n_dropped)]
            start = time.perf_counter()
            res = fs.Experiment(federation=fed, rounds=ROUNDS, evaluate_every=ROUNDS, privacy=settings,
                                client_mods=mods).run()
            seconds = (time.perf_counter() - start) / ROUNDS
            aborted = int((res.participation["event"] == "aborted").sum()) if len(res.participation) else 0
            results[f"dropped_{n_dropped}_{name}"] = {"completed": ROUNDS - aborted, "s_per_round": seconds}
            print(f"{n_dropped:>7} {name:>10} {ROUNDS - aborted:>13} / {ROUNDS} {seconds:>24.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
