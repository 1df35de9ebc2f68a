"""Data-parallel training on this machine: samples per second with 1 and 2 ranks (one
compute thread each), the gradient Allreduce's time per step and its share, and a
scaling estimate for clusters from a measured step time and the bytes it reduces.

    python bench/distributed.py                       dcgan and gan, 1 and 2 ranks
    python bench/distributed.py --models dcgan --steps 40
    python bench/distributed.py --estimate            the cluster estimate (docs/distributed.md)

Each rank trains with the trainer itself (ganforge.gan.Trainer with a World), so what is
timed is what `ganforge train --nproc N` runs: the model's step, the Allreduces of its
updates, the losses averaged for the logs, the EMA. Weak scaling: the batch per rank is
fixed, so N ranks process N times the samples of one step.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "distributed.json")


def rank_main(model, steps, warmup, sync_batch_norm):
    """What each rank runs: warm-up steps, then `steps` timed ones; rank 0 prints JSON."""
    from ganforge import distributed
    from ganforge.backends.cpu import runtime
    from ganforge.gan import Trainer
    runtime.hold_freed_memory()  # as `ganforge train` does
    world = distributed.World.from_mpi()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, out, world, steps=10 ** 6, progress=False, sample_every=10 ** 6,
                          checkpoint_every=10 ** 6, sync_batch_norm=sync_batch_norm)
        for _ in range(warmup):
            trainer.train_step()
        communication, reduced, times = world.communication_s, world.reduced_bytes, []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - start)
        per_step = statistics.median(times)
        # the Allreduces alone, all ranks lined up first: in the step, their time also holds
        # the wait for the slowest rank
        buffers = [opt.gradient_sync.buffer for opt in trainer.model.optimizers.values() if opt.gradient_sync]
        alone = 0.0
        if buffers:
            for _ in range(10):
                world.comm.Barrier()
                start = time.perf_counter()
                for buffer in buffers:
                    world.allreduce_sum_(buffer.copy())
                alone += (time.perf_counter() - start) / 10
        if world.is_root:
            allreduce = (world.communication_s - communication) / steps
            print(json.dumps({"model": model, "ranks": world.size, "sync_batch_norm": sync_batch_norm, "batch_per_rank": trainer.config["batch_size"],
                              "step_ms": 1e3 * per_step, "samples_per_s": world.size * trainer.config["batch_size"] / per_step,
                              "allreduce_ms": 1e3 * allreduce, "allreduce_share": allreduce / statistics.mean(times),
                              "allreduce_alone_ms": 1e3 * alone,
                              "reduced_mb_per_step": (world.reduced_bytes - reduced) / steps / 1e6}))


def run_ranks(model, n, steps, warmup, sync_batch_norm):
    from ganforge.distributed import mpirun_command
    command = mpirun_command(n, threads_per_rank=1) + [sys.executable, os.path.abspath(__file__), "--rank", model,
                                                        str(steps), str(warmup), str(int(sync_batch_norm))]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(models, ranks, steps, warmup, rounds, sync_batch_norm=True):
    """Each rank count in turn, `rounds` times (this host's speed drifts over seconds, so
    the counts alternate, as in bench/in_turns.py); the medians over the rounds."""
    rows = []
    for model in models:
        runs = {n: [] for n in ranks}
        for _ in range(rounds):
            for n in ranks:
                runs[n].append(run_ranks(model, n, steps, warmup, sync_batch_norm))
        for n in ranks:
            row = {key: statistics.median(r[key] for r in runs[n]) if isinstance(runs[n][0][key], float)
                   else runs[n][0][key] for key in runs[n][0]}
            rows.append(row)
            print(f"{model:6s} {n} rank(s) x batch {row['batch_per_rank']}: {row['step_ms']:7.1f} ms/step, "
                  f"{row['samples_per_s']:7.0f} samples/s, Allreduce {row['allreduce_ms']:.2f} ms/step "
                  f"({100 * row['allreduce_share']:.1f}%, with the wait for the slower rank; "
                  f"{row['allreduce_alone_ms']:.2f} ms alone), {row['reduced_mb_per_step']:.2f} MB reduced/step",
                  flush=True)
        speeds = [statistics.median(r["samples_per_s"] for r in runs[n]) for n in ranks]
        print(f"{model:6s} samples/s relative to {ranks[0]} rank(s): "
              + ", ".join(f"{n} ranks {s / speeds[0]:.2f}x" for n, s in zip(ranks[1:], speeds[1:])))
    return rows


# --- the cluster estimate --------------------------------------------------------------------------

def ring_allreduce_s(nbytes, nodes, gbit_per_s, latency_s=20e-6):
    """Time of a ring Allreduce: each node sends and receives 2(N-1)/N of the bytes, in 2(N-1) steps."""
    if nodes == 1:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes / (gbit_per_s * 1e9 / 8) + 2 * (nodes - 1) * latency_s


def dcgan64_step():
    """(seconds per step, gradient bytes per step, batch) of dcgan64 on this machine."""
    from ganforge.gan import benchmarks
    G, D, step, batch = benchmarks.build("dcgan64")
    step()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for net in (G, D) for p in net.parameters())
    return statistics.median(times), 4 * params, batch  # one D and one G update: every weight's gradient once


# StyleGAN2 is not built yet (issue 20): its parameters as published (Karras et al. 2020, config F
# at 1024 px, G 30.0M including the mapping network, D 29.0M); its compute time here is unknown,
# so the estimate gives the compute time per step at which communication stays under 10% and 50%.
STYLEGAN2_PARAMS = 30.0e6 + 29.0e6


def estimate():
    step_s, nbytes, batch = dcgan64_step()
    print(f"dcgan64 (batch {batch} per node): {1e3 * step_s:.0f} ms per step on this machine (2 threads), "
          f"{nbytes / 1e6:.1f} MB of gradients per step")
    print("nodes  link      dcgan64: Allreduce  efficiency  samples/s | StyleGAN2: Allreduce  compute for 90% / 50%")
    rows = []
    for nodes in (8, 64):
        for gbit in (10, 100):
            t_dc = ring_allreduce_s(nbytes, nodes, gbit)
            t_sg = ring_allreduce_s(4 * STYLEGAN2_PARAMS, nodes, gbit)
            efficiency = step_s / (step_s + t_dc)
            rows.append({"nodes": nodes, "gbit_per_s": gbit, "dcgan64_allreduce_ms": 1e3 * t_dc,
                         "dcgan64_efficiency": efficiency, "dcgan64_samples_per_s": nodes * batch / (step_s + t_dc),
                         "stylegan2_allreduce_ms": 1e3 * t_sg})
            print(f"{nodes:5d}  {gbit:3d} Gb/s  {1e3 * t_dc:16.1f} ms  {100 * efficiency:9.1f}%  "
                  f"{nodes * batch / (step_s + t_dc):9.0f} | {1e3 * t_sg:16.1f} ms  {9e3 * t_sg:8.0f} / {1e3 * t_sg:.0f} ms")
    return {"dcgan64_step_ms": 1e3 * step_s, "dcgan64_batch": batch, "dcgan64_gradient_mb": nbytes / 1e6,
            "stylegan2_gradient_mb": 4 * STYLEGAN2_PARAMS / 1e6, "rows": rows}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":
        model, steps, warmup, sync = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
        return rank_main(model, steps, warmup, sync)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dcgan", "gan"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each rank count, in turns (medians)")
    parser.add_argument("--no-sync-batch-norm", action="store_true", help="batch norm over each rank's own batch")
    parser.add_argument("--estimate", action="store_true", help="the cluster estimate instead")
    args = parser.parse_args()
    if args.estimate:
        result = {"estimate": estimate()}
    else:
        key = "runs_unsynchronized_batch_norm" if args.no_sync_batch_norm else "runs"
        result = {key: measure(args.models, args.ranks, args.steps, args.warmup, args.rounds,
                               not args.no_sync_batch_norm)}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    saved = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    with open(RESULTS, "w") as f:
        json.dump({**saved, **result}, f, indent=1)


if __name__ == "__main__":
    main()
