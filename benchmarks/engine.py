"""Engine speed, measured side by side in one run; prints times and ratios.

Workload (issue 2): 20 hospitals x 3 rounds, ~600 training rows each, MLP
(features-64-64-1), batch 32, 1 local epoch, FedAvg. Compared:
  (a) fedsim's in-process Grid,
  (b) the same ClientApp on Flower's Ray simulation runtime,
  (c) a centralized compiled tf.function loop doing the same gradient steps.
Then scale: a round with 50 of 1,000 registered hospitals vs 50 of 50, and
peak RSS with 10,000 hospitals registered (in a fresh process).

    python benchmarks/engine.py [--skip-ray]
"""

import argparse
import json
import resource
import subprocess
import sys

import numpy as np
from timing import best_of, round_cost

import fedsim as fs
from fedsim.models import mlp
from fedsim.training import trainer_for

ROUNDS = 3


def fedsim_run(fed, **kwargs):
    return fs.Experiment(federation=fed, model="mlp", rounds=ROUNDS, batch_size=32,
                         evaluate_every=ROUNDS, **kwargs).run()


def centralized_loop(fed, steps):
    """The same number of SGD steps on the pooled rows, in the same compiled function."""
    trainer = trainer_for(mlp, fed.n_features)
    weights = trainer.initial_weights(0)
    per_epoch = -(-len(fed.y_train) // 32)
    epochs = -(-steps // per_epoch)
    trainer.fit(weights, fed.x_train, fed.y_train, epochs=epochs, batch_size=32, learning_rate=0.05,
                rng=np.random.default_rng(0), max_steps=steps)


def peak_rss_with(n_hospitals: int) -> float:
    """Peak RSS (MiB) of a fresh process that registers ``n_hospitals`` and runs one round on 50."""
    code = f"""
import resource, fedsim as fs
fed = fs.synthetic_federation("icu_mortality", n_hospitals={n_hospitals}, n_patients={n_hospitals} * 100, seed=0)
fs.Experiment(federation=fed, rounds=1, fraction_train=50 / {n_hospitals}, evaluate_every=1).run()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-ray", action="store_true", help="skip Flower's Ray runtime (slow)")
    args = parser.parse_args()

    fed = fs.synthetic_federation("icu_mortality", n_hospitals=20, n_patients=20 * 750, seed=0)
    steps = sum(-(-len(fed.train_rows(i)[1]) // 32) for i in range(fed.n_hospitals)) * ROUNDS
    print(f"workload: {fed!r}, {ROUNDS} rounds, {steps} SGD steps in all\n")

    fedsim_run(fed)  # warm-up: trace the compiled functions once
    centralized_loop(fed, steps)
    t_inprocess = best_of(lambda: fedsim_run(fed))
    t_central = best_of(lambda: centralized_loop(fed, steps))
    results = {"inprocess_s": t_inprocess, "centralized_s": t_central}
    if not args.skip_ray:
        results["ray_s"] = best_of(lambda: fedsim_run(fed, engine="ray"), repeat=1)

    big = fs.synthetic_federation("icu_mortality", n_hospitals=1000, n_patients=1000 * 750, seed=0)
    small = fs.synthetic_federation("icu_mortality", n_hospitals=50, n_patients=50 * 750, seed=0)
    results["round_50_of_1000_s"] = round_cost(big, fraction_train=0.05, repeat=3)
    results["round_50_of_50_s"] = round_cost(small, fraction_train=1.0, repeat=3)
    results["peak_rss_10000_hospitals_mib"] = peak_rss_with(10_000)
    results["peak_rss_this_process_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"(a) fedsim in-process          {t_inprocess:7.2f} s")
    if "ray_s" in results:
        ratio = results["ray_s"] / t_inprocess
        print(f"(b) Flower Ray runtime         {results['ray_s']:7.2f} s   (b)/(a) = {ratio:5.1f}x")
    print(f"(c) centralized compiled loop  {t_central:7.2f} s   (a)/(c) = {t_inprocess / t_central:5.2f}x")
    print(f"\none round, 50 sampled of 1,000 registered: {results['round_50_of_1000_s']:.2f} s; "
          f"of 50 registered: {results['round_50_of_50_s']:.2f} s "
          f"(ratio {results['round_50_of_1000_s'] / results['round_50_of_50_s']:.2f})")
    print(f"peak RSS, 10,000 hospitals registered (1,000,000 patients): "
          f"{results['peak_rss_10000_hospitals_mib']:.0f} MiB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
