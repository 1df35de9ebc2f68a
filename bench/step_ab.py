"""The trainer's training step, timed in two source trees in turns (each in its own
process, alternating), to check that a change to the trainer or a model file left the
step's speed alone:

    python bench/step_ab.py OLD_TREE NEW_TREE [--models dcgan wgan-gp gan] [--rounds 3]

A tree is a checkout with its compiled module in ganforge/ (copy ganforge/_C*.so in);
the editable install's import hook is bypassed so that each process imports its own tree.
Prints the median step time of each model per tree and their ratio (new / old).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
sys.meta_path[:] = [f for f in sys.meta_path if "_editable" not in type(f).__module__]
sys.path.insert(0, sys.argv[1])
import ganforge, numpy as np, tempfile
assert ganforge.__file__.startswith(sys.argv[1]), ganforge.__file__
try:
    from ganforge.backends.cpu.runtime import hold_freed_memory
except ImportError:  # a tree from before the backends/ layout
    from ganforge.cpu import hold_freed_memory
hold_freed_memory()
from ganforge.gan import Trainer
model, steps = sys.argv[2], int(sys.argv[3])
trainer = Trainer(model, tempfile.mkdtemp(), steps=10**6, progress=False, sample_every=10**9,
                  checkpoint_every=10**9, log_every=10**9)
for _ in range(3):
    trainer.train_step()
times = []
for _ in range(steps):
    start = time.perf_counter()
    trainer.train_step()
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""

STEPS = {"dcgan": 15, "wgan-gp": 40, "gan": 150, "sngan": 100}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--models", nargs="+", default=["dcgan", "wgan-gp", "gan"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tree in (args.old, args.new):  # without its own, a tree would time the `ref` kernels, unnoticed
        if not glob.glob(os.path.join(tree, "ganforge", "_C*.so")):
            sys.exit(f"{tree}/ganforge has no compiled module: copy ganforge/_C*.so in (the editable "
                     f"install keeps it in site-packages/ganforge/)")
    env = {**os.environ, "PYTHONPATH": ""}
    for model in args.models:
        times = {"old": [], "new": []}
        for _ in range(args.rounds):
            for label in ("old", "new"):
                done = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(getattr(args, label)), model,
                                       str(STEPS.get(model, 50))], capture_output=True, text=True, env=env,
                                      check=True)
                times[label] += json.loads(done.stdout.strip().splitlines()[-1])
        old, new = statistics.median(times["old"]), statistics.median(times["new"])
        print(f"{model:8s} old {old * 1e3:8.2f} ms  new {new * 1e3:8.2f} ms  new/old {new / old:.3f}", flush=True)


if __name__ == "__main__":
    main()
