"""Losses of short fixed-seed training runs (dcgan and sngan on Fashion-MNIST, wgan-gp on
ring8), as JSON on the last line: run it on two commits to check that an optimization
changes results only by float32 rounding. GAN training amplifies rounding, so compare with
the spread between two BLAS thread counts on one commit (OPENBLAS_NUM_THREADS=1 and 2).

    OPENBLAS_NUM_THREADS=1 python bench/fixed_seed_losses.py > after.json
"""
import json, sys, tempfile
from ganforge.gan import Trainer
out = {}
for variant, data in [("dcgan", "fashion-mnist"), ("wgan-gp", "ring8"), ("sngan", "fashion-mnist")]:
    t = Trainer(variant, tempfile.mkdtemp(), data=data, steps=15, batch_size=64, log_every=1, sample_every=10**9,
                checkpoint_every=10**9, progress=False)
    out[variant] = t.train()
print(json.dumps(out))
