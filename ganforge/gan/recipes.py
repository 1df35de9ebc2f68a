"""Named training recipes: a model plus the options that tune it for a kind of data.

A model's own defaults are its paper's settings, chosen for images. On the 2-D
mixtures (a few sharp modes, std 0.01 or 0.05) those settings leave samples jittering
between modes, which the 3-std quality test of bench/BENCH_MODELS.md punishes. The recipes here
are what docs/mode_coverage.md measures; each is one `ganforge train` command:

    ganforge train gan --data grid25 --steps 8000 --penalty r1 --penalty-weight 0.1 \\
        --betas 0 0.99 --lr-decay
"""

RECIPES = {
    # name: (model, options for Trainer / `ganforge train`, what it is)
    "gan": ("gan", {}, "vanilla GAN, the model's defaults (non-saturating loss, Adam 1e-3, 5000 steps)"),
    "gan-r1": ("gan", {"penalty": "r1", "penalty_weight": 0.1, "betas": (0.0, 0.99), "lr_decay": True,
                       "steps": 8000},
               "non-saturating GAN with R1 (gamma 0.1), Adam betas (0, 0.99), lr 1e-3 decayed to 0, 8000 steps"),
    "gan-unrolled": ("gan", {"unrolled_steps": 5},
                     "unrolled GAN, first-order: G scored by D 5 updates ahead, no gradient through them "
                     "(the variant's defaults otherwise)"),
    "gan-unrolled-true": ("gan", {"unrolled_steps": 5, "unrolled_form": "true", "flush_denormal": True},
                          "unrolled GAN as Metz et al. wrote it: G's gradient through 5 Adam updates of D "
                          "(the variant's defaults otherwise; denormals flushed, which its second-order "
                          "graph makes and which slowed a run 2-3x)"),
    "gan-unrolled-lr1e-4": ("gan", {"unrolled_steps": 5, "lr": 1e-4},
                            "gan-unrolled (first-order) at Metz et al.'s learning rate, 1e-4, beside "
                            "gan-unrolled-true-lr1e-4"),
    "gan-unrolled-true-lr1e-4": ("gan", {"unrolled_steps": 5, "unrolled_form": "true", "flush_denormal": True,
                                         "lr": 1e-4},
                                 "gan-unrolled-true at Metz et al.'s learning rate, 1e-4 (their batch of 512 and "
                                 "20 000 steps not taken: 5000 steps of 256)"),
    "wgan-gp": ("wgan-gp", {}, "WGAN-GP, the model's defaults (lambda 10, lr 1e-4, 5 critic steps, 3000 steps)"),
    "wgan-gp-2d": ("wgan-gp", {"penalty_weight": 0.1, "lr": 1e-3, "lr_decay": True, "steps": 4000},
                   "WGAN-GP with lambda 0.1, lr 1e-3 decayed to 0, 4000 steps"),
    "sngan": ("sngan", {}, "SNGAN, the model's defaults (spectral norm, hinge, lr 2e-4, 5000 steps)"),
}


def recipe(name):
    """(model name, options) of a named recipe."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose from {', '.join(RECIPES)}")
    model, options, _ = RECIPES[name]
    return model, dict(options)


def mode_coverage_run(name, data, seed, out_dir, steps=None):
    """Train recipe `name` on a 2-D mixture and measure the EMA generator's mode coverage."""
    from ..metrics import mode_coverage
    from .trainer import Trainer
    model, options = recipe(name)
    options.update(data=data, seed=seed, progress=False, sample_every=10**9, checkpoint_every=10**9,
                   log_every=10**9)
    if steps:
        options["steps"] = steps
    trainer = Trainer(model, out_dir, **options)
    trainer.train()
    return mode_coverage(trainer.preview()[0], data)


if __name__ == "__main__":  # one run in its own process: python -m ganforge.gan.recipes NAME DATA SEED [STEPS]
    import json
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        steps = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "default" else None
        print(json.dumps(mode_coverage_run(sys.argv[1], sys.argv[2], int(sys.argv[3]), folder, steps)))
