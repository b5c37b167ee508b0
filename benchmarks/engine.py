"""Engine speed, measured side by side in one run; prints times and ratios.

Workloads (same model everywhere: MLP features-64-64-1, batch 32, 1 local epoch, FedAvg, learning rate 0.05):
  W1: 20 hospitals x ~600 training rows x 3 rounds, evaluation at the end;
  W2: 1,000 hospitals x ~80 training rows, 1 round, every hospital training;
  W3: 3 and 10 hospitals x ~600 training rows, 1 and 3 rounds, for Flower's own runtimes as processes.
Compared on each:
  (a) the cohort engine (engine="inprocess", the default),
  (b) the per-hospital path (engine="sequential"),
  (c) Flower's simulation runtime, on Ray (the exported app with `flwr run`; W1 only: 1,000 nodes would
      take minutes to start),
  (d) an in-graph sequential loop: the same number of SGD steps on the pooled rows, one tf.function.
Then: DP-SGD on the cohort engine against plain; the cohort engine's compiled program alone on the same
work (no messages), plain and DP-SGD; the cost of one W2 round of Flower messages with no training at
all (the floor the message format sets); hospitals x steps per second; and, in a fresh
process, peak RSS and round time with 10,000 hospitals registered and 1,000 training. On W3: the exported
Flower app on the Deployment Engine (loopback SuperLink, one SuperNode and one long-lived ClientApp process
per hospital) and on Flower's simulation runtime (`flwr run`) against the cohort engine: seconds per round
((3 rounds - 1 round) / 2) and start-up (the 1-round run less one round).

    python benchmarks/engine.py [--skip-simulation] [--skip-deployment]     # make bench
On a CUDA GPU: pip install -e ".[gpu]" then the same command (TF_FORCE_GPU_ALLOW_GROWTH is set by fedsim).
"""

import argparse
import json
import resource
import subprocess
import sys
import textwrap

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict
from timing import best_of

import fedsim as fs
from fedsim._tf import tf
from fedsim.cohort import CohortTrainer, Task
from fedsim.engine.cohort import batch_slot
from fedsim.models import mlp
from fedsim.training import DPTraining, expected_batch, local_batches, noise_draws, trainer_for

W1 = {"n_hospitals": 20, "rows": 750, "rounds": 3}
W2 = {"n_hospitals": 1000, "rows": 100, "rounds": 1}
W3 = {"rows": 750}


def federation(workload):
    n = workload["n_hospitals"]
    return fs.synthetic_federation("icu_mortality", n_hospitals=n, n_patients=n * workload["rows"], seed=0)


def experiment(fed, workload, **changes):
    return fs.Experiment(federation=fed, model="mlp", rounds=workload["rounds"], batch_size=32,
                         evaluate_every=workload["rounds"], **changes)


def total_steps(fed, rounds: int) -> int:
    return sum(-(-len(fed.train_rows(i)[1]) // 32) for i in range(fed.n_hospitals)) * rounds


def in_graph_loop(fed, steps: int) -> None:
    """The same number of SGD steps on the pooled rows, in one compiled function."""
    trainer = trainer_for(mlp, fed.n_features)
    per_epoch = -(-len(fed.y_train) // 32)
    trainer.fit(trainer.initial_weights(0), fed.x_train, fed.y_train, epochs=-(-steps // per_epoch), batch_size=32,
                learning_rate=0.05, rng=np.random.default_rng(0), max_steps=steps)


def cohort_trainer_alone(fed, workload):
    """The cohort engine's compiled program on the same work, with no Flower messages around it.

    Returns ``run(dp=None)``. Every hospital's batch plan (and DP-SGD noise) is drawn as the engine
    draws it, cohorts of at most 256 hospitals as the engine splits them; the start weights are the
    same every round.
    """
    trainer = trainer_for(mlp, fed.n_features)
    start = trainer.initial_weights(0)
    n = fed.n_hospitals
    size = -(-n // -(-n // 256))
    k = min(256, -(-size // 8) * 8)
    # DP-SGD's Poisson batches vary around 32: the engine's slot for them (fedsim.engine.cohort.batch_slot)
    trainers = {False: CohortTrainer(mlp, fed.n_features, k, 32), True: CohortTrainer(mlp, fed.n_features, k,
                                                                                      batch_slot(32, 33))}

    def run(dp: DPTraining | None = None) -> None:
        cohort = trainers[dp is not None]
        for server_round in range(1, workload["rounds"] + 1):
            tasks = []
            for hospital in range(n):
                x, y = fed.train_rows(hospital)
                rng = np.random.default_rng([0, server_round, hospital])
                order, bounds = local_batches(len(x), epochs=1, batch_size=32, rng=rng, dp=dp)
                noise = noise_draws(rng, len(bounds) - 1, trainer.n_parameters) if dp else None
                tasks.append(Task(start, x, y, order, bounds, 0.05, 0.0, noise, expected_batch(len(x), 32) if dp
                                  else None))
            for first in range(0, n, size):
                cohort.fit(tasks[first:first + size], dp)

    return run


def echo(message, context, call_next):
    """A hospital that sends the weights it got straight back: Flower's messages, no training."""
    if message.metadata.message_type != "train":
        return call_next(message, context)
    metrics = MetricRecord({"num-examples": 80, "train_loss": 0.0, "local_steps": 1})
    return Message(RecordDict({"arrays": message.content["arrays"], "metrics": metrics}), reply_to=message)


def fresh_process_10000() -> dict:
    """Peak RSS (MiB) and round time of a fresh process: 10,000 hospitals registered, 1,000 training."""
    code = textwrap.dedent("""
        import json, resource, time, fedsim as fs
        fed = fs.synthetic_federation("icu_mortality", n_hospitals=10_000, n_patients=1_000_000, seed=0)
        run = fs.Experiment(federation=fed, model="mlp", rounds=1, fraction_train=0.1, evaluate_every=1)
        run.run()
        start = time.perf_counter()
        run.replace(seed=1).run()
        print(json.dumps({"round_s": time.perf_counter() - start,
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def flower_runtimes(n_hospitals: int) -> dict:
    """Seconds per round and start-up of the cohort engine and of Flower's runtimes as processes (W3)."""
    fed = federation({"n_hospitals": n_hospitals, **W3})
    found = {}
    for engine in ("inprocess", "deployment", "simulation"):
        run = {rounds: experiment(fed, {"rounds": rounds}, engine=engine) for rounds in (1, 3)}
        if engine == "inprocess":
            run[1].run()  # warm-up: trace the compiled functions once
        one, three = (best_of(run[rounds].run, repeat=1) for rounds in (1, 3))
        per_round = (three - one) / 2
        found[engine] = {"round_s": per_round, "start_s": one - per_round}
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-simulation", action="store_true", help="skip W1 on Flower's simulation runtime (slow)")
    parser.add_argument("--skip-deployment", action="store_true",
                        help="skip W3 on Flower's Deployment Engine and simulation runtime (a minute or two)")
    args = parser.parse_args()
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    results = {"device": device}
    dp = fs.privacy.DPSGD(noise_multiplier=1.0)
    for name, workload in (("W1", W1), ("W2", W2)):
        fed = federation(workload)
        steps = total_steps(fed, workload["rounds"])
        runs = {"cohort": experiment(fed, workload), "per_hospital": experiment(fed, workload, engine="sequential"),
                "cohort_dpsgd": experiment(fed, workload, privacy=dp)}
        for run in runs.values():
            run.run()  # warm-up: trace the compiled functions once
        in_graph_loop(fed, steps)
        alone = cohort_trainer_alone(fed, workload)
        alone(), alone(DPTraining(1.0, 1.0))
        row = {"steps": steps, "loop_s": best_of(lambda: in_graph_loop(fed, steps)),  # noqa: B023
               "trainer_alone_s": best_of(alone),
               "trainer_alone_dpsgd_s": best_of(lambda: alone(DPTraining(1.0, 1.0)))}  # noqa: B023
        for label, run in runs.items():
            row[f"{label}_s"] = best_of(run.run, repeat=3 if name == "W1" else 2)
        if name == "W1" and not args.skip_simulation:
            row["simulation_s"] = best_of(experiment(fed, workload, engine="simulation").run, repeat=1)
        if name == "W2":
            floor = experiment(fed, workload, engine="sequential", client_mods=[echo])
            floor.run()
            row["messages_only_s"] = best_of(floor.run, repeat=2)
        results[name] = row

    if not args.skip_deployment:
        results["W3"] = {n: flower_runtimes(n) for n in (3, 10)}
    results["10000_hospitals"] = fresh_process_10000()
    results["peak_rss_this_process_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"device: {device}\n")
    for name in ("W1", "W2"):
        r = results[name]
        print(f"{name} ({r['steps']} SGD steps in all)")
        print(f"  (a) cohort engine            {r['cohort_s']:7.3f} s   (a)/(d) = "
              f"{r['cohort_s'] / r['loop_s']:5.2f}x   {r['steps'] / r['cohort_s']:8.0f} hospital-steps/s")
        print(f"  (b) per-hospital path        {r['per_hospital_s']:7.3f} s   (b)/(a) = "
              f"{r['per_hospital_s'] / r['cohort_s']:5.1f}x")
        if "simulation_s" in r:
            print(f"  (c) Flower simulation (Ray)  {r['simulation_s']:7.3f} s   (c)/(a) = "
                  f"{r['simulation_s'] / r['cohort_s']:5.1f}x")
        print(f"  (d) in-graph sequential loop {r['loop_s']:7.3f} s")
        print(f"  DP-SGD on the cohort engine  {r['cohort_dpsgd_s']:7.3f} s   DP-SGD / plain = "
              f"{r['cohort_dpsgd_s'] / r['cohort_s']:5.2f}x")
        print(f"  cohort trainer alone         {r['trainer_alone_s']:7.3f} s   (no messages; / (d) = "
              f"{r['trainer_alone_s'] / r['loop_s']:4.2f}x)")
        print(f"  ... with DP-SGD              {r['trainer_alone_dpsgd_s']:7.3f} s   (DP-SGD / plain = "
              f"{r['trainer_alone_dpsgd_s'] / r['trainer_alone_s']:4.2f}x, Gaussian draws included)")
        if "messages_only_s" in r:
            print(f"  Flower messages, no training {r['messages_only_s']:7.3f} s   (floor / (d) = "
                  f"{r['messages_only_s'] / r['loop_s']:4.2f}x)")
        print()
    for n, r in results.get("W3", {}).items():
        print(f"W3, {n} hospitals: seconds per round, and start-up (processes, imports, first contact)")
        for engine, label in (("inprocess", "cohort engine"), ("deployment", "Deployment Engine (flwr run)"),
                              ("simulation", "simulation runtime (flwr run)")):
            per_round, start = r[engine]["round_s"], r[engine]["start_s"]
            shown = (f"{per_round:7.3f} s/round ({per_round / r['inprocess']['round_s']:6.1f}x)" if per_round > 0
                     else "rounds lost in the start-up's spread")  # two extra rounds cost less than its jitter
            print(f"  {label:30s} {shown}   start-up {start:6.1f} s")
        print()
    big = results["10000_hospitals"]
    print(f"10,000 hospitals registered, 1,000 training: one round {big['round_s']:.2f} s, "
          f"peak RSS {big['peak_rss_mib']:.0f} MiB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
