"""The `ganforge` command: train, sample, evaluate, profile, list, info."""
import argparse
import os
import platform
import subprocess
import sys
import time


def _blas():
    import numpy as np
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def _optional_version(name):
    try:
        module = __import__(name)
        return getattr(module, "__version__", "installed")
    except Exception as exc:
        return f"not available ({type(exc).__name__})"


def info(out=None):
    import numpy as np

    import ganforge as gf
    from ganforge import backend, dispatch
    from ganforge.backends.cpu import native, runtime

    ok, reason = native.available()
    cupy_reason = backend.cupy_unavailable_reason()
    lines = [
        f"ganforge   {gf.__version__}",
        f"python     {platform.python_version()} ({platform.machine()}, {platform.system()})",
        f"numpy      {np.__version__}, BLAS: {_blas()}; {runtime.blas_kernel_note()}",
        "compiled   " + (f"ganforge._C loaded (im2col on {native.module().num_threads()} thread(s); GANFORGE_NUM_THREADS sets it)" if ok
                         else f"missing, using NumPy reference kernels: {reason}"),
        "gemm       " + _gemm_note(),
        "cupy       " + (f"{backend.cupy().__version__}, GPU available" if cupy_reason is None
                         else f"not available ({cupy_reason})"),
        f"triton     {_optional_version('triton')}",
        "mpi        " + _mpi_note(),
        "tf32       " + ("on: float32 convolutions on the GPU use TF32 tensor cores" if backend.tf32_enabled() else
                         "off: float32 convolutions on the GPU stay float32 (GANFORGE_TF32=1 turns TF32 on)"),
        "",
        "kernels (op, device -> chosen implementation; others available or why not):",
    ]
    rows = dispatch.table()
    width = max((len(op) for op, *_ in rows), default=10)
    for op, device, chosen, statuses in rows:
        others = ", ".join(f"{impl}: {'yes' if ok else 'no (' + why + ')'}" for impl, (ok, why) in statuses.items())
        lines.append(f"  {op:{width}s} {device:5s} -> {chosen:6s} [{others}]")
    print("\n".join(lines), file=out or sys.stdout)


def _mpi_note():
    import shutil
    try:
        import mpi4py  # the package alone: importing mpi4py.MPI would start MPI
    except ImportError:
        return "not available: scripts/setup.sh dist installs Open MPI and mpi4py"
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return f"mpi4py {mpi4py.__version__}, but no mpirun on PATH: scripts/setup.sh dist installs Open MPI"
    return f"mpi4py {mpi4py.__version__}, {mpirun} (data parallel: ganforge train --nproc N)"


def _gemm_note():
    from ganforge.backends.cpu import native
    if not native.available()[0]:
        return "NumPy's BLAS (ganforge._C is not built)"
    c = native.module()
    if not c.gemm_supported():
        return "NumPy's BLAS: ganforge's own float32 GEMM needs AVX-512, which this CPU lacks"
    return ("ganforge's own AVX-512 kernels for float32 convolutions (pixel by pixel with 8+ channels and a batch "
            f"that fills 32-sample tiles, otherwise a gathered GEMM), {c.gemm_threads()} thread(s) "
            "(GANFORGE_GEMM_THREADS sets it; idle ones poll for GANFORGE_SPIN_US microseconds, 2000 by default, "
            "then sleep), which also run the elementwise kernels (activations, Adam, large adds and multiplies) "
            "and every 2-D float32 matmul; NumPy's BLAS for float64 and batched products")


def train(args):
    from ganforge.gan import MODELS, get_model, resume_or_start
    # a model's own flag given to a model that does not take it: one line, not a TypeError
    flags = {name for model in MODELS.values() for name in model.options if hasattr(args, name)}
    unused = [name for name in sorted(flags - set(get_model(args.model).options))
              if getattr(args, name) not in (None, False)]
    if unused:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        raise ValueError(f"{flags} do{'es' if len(unused) == 1 else ''} not apply to {args.model} "
                         "(`ganforge list` shows what each model is)")
    world = None
    if args.distributed:  # one rank of `mpirun -np N ganforge train ... --distributed`
        from ganforge.distributed import World
        world = args.world = World.from_mpi()
    trainer = resume_or_start(args.model, args.out or os.path.join("runs", args.model), resume=args.resume,
                              world=world, sync_batch_norm=False if args.no_sync_batch_norm else None,
                              data=args.data, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                              device=args.device, rollback=args.rollback, sample_every=args.sample_every,
                              checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
                              eval_samples=args.eval_samples, data_path=args.data_path, data_b=args.data_b,
                              scale=args.scale,
                              resolution=args.resolution, progress=not args.no_progress, lr=args.lr,
                              betas=args.betas, n_critic=args.n_critic, penalty=args.penalty,
                              penalty_weight=args.penalty_weight, lr_decay=args.lr_decay or None,
                              unrolled_steps=args.unrolled_steps, unrolled_form=args.unrolled_form,
                              clip_grad_norm=args.clip_grad_norm,
                              minibatch_discrimination=args.minibatch_discrimination or None,
                              cycle_weight=args.cycle_weight, identity_weight=args.identity_weight,
                              pool_size=args.pool_size, width=args.width, blocks=args.blocks, init=args.init,
                              content_only=args.content_only or None, content=args.content,
                              adversarial_weight=args.adversarial_weight, init_from=args.init_from,
                              mapping_layers=args.mapping_layers, max_channels=args.max_channels,
                              r1_gamma=args.r1_gamma, pl_weight=args.pl_weight, style_mixing=args.style_mixing,
                              normal_class=args.normal_class, encoder_steps=args.encoder_steps, kappa=args.kappa,
                              held_out=args.held_out, transformations=args.transformations,
                              transformation_weight=args.transformation_weight, nearest=args.nearest,
                              labels_per_class=args.labels_per_class,
                              flush_denormal=args.flush_denormal or None)
    start = time.time()
    trainer.train()
    if world is not None and not world.is_root:
        return
    samples = os.path.join(trainer.out_dir, "samples", "latest.png")
    print(f"trained {trainer.model.name} to step {trainer.step} in {time.time() - start:.0f} s; "
          f"samples: {samples}; losses: {os.path.join(trainer.out_dir, 'losses.png')}; "
          f"checkpoint: {os.path.join(trainer.out_dir, 'latest')}")


def augment(args):
    """Labelled synthetic images from a class-conditional run, for another model's training set."""
    import numpy as np

    from ganforge import io
    from ganforge.gan import load_model
    model = load_model(args.run)
    if not model.conditional:
        raise ValueError(f"{args.run} holds a {model.name} run, which is not class-conditional: augment writes "
                         "labelled images, so train cgan")
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    classes = model.data.classes
    labels = np.arange(args.n) % len(classes)  # the classes in turn: balanced
    images = model.sample(args.n, labels=labels, seed=args.seed)
    if args.out.endswith(".npz"):
        np.savez_compressed(args.out, images=images, labels=labels, classes=np.array(classes))
        where = f"{args.out} (images {images.shape} in [-1, 1], labels, classes)"
    else:
        for name in classes:
            os.makedirs(os.path.join(args.out, _folder_name(name)), exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            io.save_image(os.path.join(args.out, _folder_name(classes[label]), f"{i:06d}.png"), image)
        where = f"{args.out}/ (a folder per class: {', '.join(_folder_name(c) for c in classes)})"
    print(f"wrote {args.n} images of {model.name} (step {model.step}), {args.n // len(classes)}+ per class, to {where}")


def _folder_name(class_name):
    return class_name.replace("/", "-").replace(" ", "_")


def mix(args):
    from ganforge import io
    from ganforge.gan import load_model, require_w_space
    model = load_model(args.run)
    require_w_space(model, args.run, "mix")
    images, columns = model.style_mixing_grid(args.rows, args.columns, args.seed, args.truncation)
    io.save_image_grid(args.out, images, rows=columns)
    print(f"wrote the style-mixing grid of {model.name} (step {model.step}) to {args.out}: the top row's images "
          f"lend their coarse, then middle, then fine styles ({', '.join(model.style_ranges())}) to each row's own")


def interpolate(args):
    from ganforge import io
    from ganforge.gan import load_model
    if not args.out.lower().endswith(".gif"):
        raise ValueError(f"interpolate writes an animated GIF: give --out a .gif name, not {args.out}")
    model = load_model(args.run)
    frames = model.latent_walk(args.n, args.frames, args.seed)
    io.save_gif(args.out, frames, seconds_per_frame=args.seconds_per_frame)
    print(f"wrote {args.frames} frames of {args.n} latent walks of {model.name} (step {model.step}) to {args.out}")


def project(args):
    import numpy as np

    from ganforge import io
    from ganforge.data.folder import read_image
    from ganforge.gan import load_model, require_w_space
    model = load_model(args.run)
    require_w_space(model, args.run, "project")
    channels, resolution = model.data.shape[0], model.data.shape[1]
    target = read_image(args.input, channels, resolution)
    ws, image, losses = model.project(target, steps=args.steps, seed=args.seed)
    io.save_image_grid(args.out, np.stack([target, image]), rows=2)
    np.save(os.path.splitext(args.out)[0] + ".npy", ws)
    print(f"projected {args.input} into W of {model.name} in {args.steps} steps (pixel MSE {losses[0]:.4f} -> "
          f"{losses[-1]:.4f}); {args.out}: the image beside its projection; "
          f"{os.path.splitext(args.out)[0]}.npy: its ws {ws.shape}")


def report(args):
    from ganforge.report import write_report
    print(f"wrote {write_report(args.run, args.out)}")


def sample(args):
    import numpy as np

    from ganforge import io
    from ganforge.data import mixture
    from ganforge.gan import generate
    samples, model = generate(args.run, args.n, labels=args.label, seed=args.seed, use_ema=not args.no_ema,
                              truncation=args.truncation, text=args.text)
    if args.out.endswith(".npy"):
        np.save(args.out, samples)
    elif samples.ndim == 2:
        means = mixture(model.data.name)[0] if model.data.name in ("ring8", "grid25") else None
        io.save_scatter(args.out, samples, means)
    else:
        io.save_image_grid(args.out, samples)
    print(f"wrote {args.n} samples of {model.name} (step {model.step}) to {args.out}")


def evaluate(args):
    import json

    import numpy as np

    from ganforge.gan import load_model
    from ganforge.metrics.fashion_classifier import fashion_mnist_report
    model = load_model(args.run, use_ema=not args.no_ema)
    if hasattr(model, "anomaly_scores"):
        return _evaluate_anomaly_detection(args, model)
    if model.data_kind == "captioned":
        return _evaluate_text_following(args, model)
    if model.data_kind == "unpaired":
        return _evaluate_translation(args, model)
    if model.data_kind == "paired":
        return _evaluate_upscaling(args, model)
    samples = model.sample(args.n, seed=args.seed)
    if samples.shape[1:] not in ((1, 28, 28), (1, 32, 32)):
        raise ValueError(f"evaluate measures 28x28 grey Fashion-MNIST generators (or 32x32, padded); {args.run} makes "
                         f"samples of shape {samples.shape[1:]} (for 2-D mixtures see ganforge.metrics.mode_coverage)")
    classes = model.data.num_classes if model.conditional else None
    requested = np.arange(args.n) % classes if classes else None  # what a conditional model's sample() drew
    report = fashion_mnist_report(samples, requested, n=args.n, data_path=args.data_path, seed=args.seed)
    names = list(next(iter(report.values())))
    print(f"{model.name} at step {model.step}, {args.n} samples against {args.n} Fashion-MNIST test images "
          "(features of ganforge's frozen classifier)")
    _print_table(report, names)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "step": model.step, "n": args.n, **report}, f, indent=1)


def _evaluate_anomaly_detection(args, model):
    """The one-class protocol: AUROC over the whole Fashion-MNIST test set, the normal
    class's images against the other nine, and the flags at the run's threshold."""
    import json

    from ganforge.data import load_fashion_mnist
    from ganforge.metrics.anomaly import detection_report
    normal_class = model.config["normal_class"]
    if model.data.name != "fashion-mnist" or normal_class is None:
        raise ValueError(f"evaluate measures AUROC on the Fashion-MNIST test set for a run with --normal-class; "
                         f"{args.run} was trained on {model.data.name}: score your own test images with "
                         "`ganforge score RUN --input FOLDER`")
    images, labels = load_fashion_mnist(args.data_path, "test")
    images, labels = images[:args.n], labels[:args.n]  # the protocol is the whole set, 10000 (the default)
    held_out, training = _normal_images(model, args.data_path)
    report = detection_report(model, images, labels != normal_class, held_out, args.fpr, training)
    print(f"{model.name} at step {model.step}, normal class {normal_class} ({model.data.classes[normal_class]}): "
          f"{len(images)} Fashion-MNIST test images, {int((labels == normal_class).sum())} normal; flags at the "
          f"threshold for a false-positive rate of {args.fpr:g} on {report['held_out']} held-out normal images")
    _print_table(report["scores"], ["auroc", "tpr", "fpr"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "step": model.step, "normal_class": normal_class, **report}, f, indent=1)


def _evaluate_text_following(args, model):
    import json

    from ganforge.metrics.text2image import text_following_report
    per_caption = max(1, args.n // 90)
    report = text_following_report(model, per_caption, args.seed, args.data_path)
    print(f"{model.name} at step {model.step}, {per_caption} samples per caption: the classifier's class against the "
          "caption's, and the measured brightness and width against the asked ones (correlation within class; "
          "share in the asked tercile); unseen: combinations kept out of training")
    _print_table(report, ["captions", "class_accuracy", "brightness_corr", "width_corr", "attribute_accuracy"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "step": model.step, "per_caption": per_caption, **report}, f, indent=1)


def _normal_images(model, data_path):
    """(the normal images an anomaly run kept out of training, those it trained on), from
    --data-path if given: the score's threshold and its memory."""
    from ganforge.gan.trainer import normal_images_of_run
    config = {**model.config, "data_path": data_path or model.config.get("data_path")}
    if not model.neighbours:  # a score without the nearest part needs no memory
        return normal_images_of_run(config, "held-out")[0], None
    return tuple(normal_images_of_run(config, "held-out", "train"))


def score(args):
    """Anomaly scores of a file, a folder or an array, with a flag at the run's threshold."""
    import csv

    from ganforge.gan import load_model
    model = load_model(args.run)
    if not hasattr(model, "anomaly_scores"):
        raise ValueError(f"{args.run} holds a {model.name} run, which does not score anomalies; train anomaly "
                         "(ganforge train anomaly --normal-class K)")
    names, images = _images_to_score(args.input, model.data.shape)
    held_out, training = _normal_images(model, args.data_path)
    threshold = model.threshold(held_out, args.fpr, training)
    scores = model.anomaly_scores(images)
    flagged = scores["score"] > threshold
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *scores, "anomalous"])
        for i, name in enumerate(names):
            writer.writerow([name, *(f"{values[i]:.6g}" for values in scores.values()), int(flagged[i])])
    print(f"scored {len(names)} image{'s' if len(names) != 1 else ''} with {model.name} (step {model.step}); "
          f"{int(flagged.sum())} above the threshold {threshold:.4g} (false-positive rate {args.fpr:g} on held-out "
          f"normal images); wrote {args.out}")


def _images_to_score(source, shape):
    """(names, images (N, C, H, W) in [-1, 1]) from an image file, a folder or a .npy/.npz array."""
    import numpy as np

    from ganforge.data.folder import list_images, read_image
    channels, resolution = shape[0], shape[1]
    if source.endswith((".npy", ".npz")) and os.path.isfile(source):
        loaded = np.load(source)
        array = loaded if source.endswith(".npy") else loaded[loaded.files[0] if "images" not in loaded.files
                                                               else "images"]
        if array.ndim == 3:
            array = array[:, None]
        if array.ndim != 4 or tuple(array.shape[1:]) != tuple(shape):
            raise ValueError(f"{source} holds an array of shape {array.shape}; the run scores (N, {channels}, "
                             f"{resolution}, {resolution}) images in [-1, 1]")
        base = os.path.basename(source)
        return [f"{base}[{i}]" for i in range(len(array))], array.astype(np.float32)
    if os.path.isdir(source):
        paths = list_images(source)  # an empty folder is its one-line error
    elif os.path.isfile(source):
        paths = [source]
    else:
        raise FileNotFoundError(f"--input {source} is neither an image, a folder nor a .npy/.npz array")
    return paths, np.stack([read_image(p, channels, resolution) for p in paths])


def _evaluate_translation(args, model):
    """A CycleGAN trained on fashion-edges against the test set's true pairs."""
    import json

    from ganforge.metrics.translation import identity_translation, translation_scores
    if model.data.name != "fashion-edges":
        raise ValueError(f"evaluate measures translations against the fashion-edges test pairs; {args.run} was "
                         f"trained on {model.data.name}, which has no true pairs (look at its samples instead)")
    rows = {}
    for name, translate in (("identity", identity_translation), (model.name, model.translate)):
        for direction, scores in translation_scores(translate, args.n, args.data_path).items():
            rows[f"{name}: {direction}"] = scores
    print(f"{model.name} at step {model.step}, {args.n} fashion-edges test pairs (L1 and PSNR on [0, 1] pixels; "
          "class accuracy of ganforge's Fashion-MNIST classifier on the translated garments)")
    _print_table(rows, ["l1", "psnr", "class_accuracy"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "step": model.step, "n": args.n, **rows}, f, indent=1)


def _evaluate_upscaling(args, model):
    """A super-resolution run against bicubic interpolation on held-out images: the
    Fashion-MNIST test set, or the photographs of --data."""
    import json

    from ganforge.data import load_fashion_mnist
    from ganforge.data.folder import list_images, read_image
    from ganforge.metrics import upscaling_report
    if model.data.name == "fashion-mnist" and not args.data:
        images, labels = load_fashion_mnist(args.data_path, "test")
        originals, labels, what = images[:args.n], labels[:args.n], f"{min(args.n, len(images))} Fashion-MNIST test images"
    elif args.data:
        paths = list_images(args.data)
        originals, labels, what = [read_image(p, model.channels) for p in paths], None, f"{len(paths)} images of {args.data}"
    else:
        raise ValueError(f"{args.run} was trained on {model.data.name}: name held-out images with --data FOLDER")
    report = upscaling_report(model.upscale, originals, model.scale, labels)
    name = "srresnet" if model.config["content_only"] else model.name
    rows = {name if key == "model" else key: value for key, value in report.items()}
    print(f"{model.name} x{model.scale} at step {model.step}, {what}: PSNR (dB) and SSIM on the luma with "
          f"{model.scale} border pixels cropped, detail (its fine structure over the originals')"
          + (", and the Fashion-MNIST classifier's accuracy" if labels is not None else ""))
    _print_table(rows, ["psnr", "ssim", "detail"] + (["class_accuracy"] if labels is not None else []))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "step": model.step, "scale": model.scale, "images": what, **rows}, f, indent=1)


def _print_table(rows, names):
    width = max(14, *(len(row) + 2 for row in rows))
    columns = [max(15, len(name) + 2) for name in names]
    print(f"{'':{width}s}" + "".join(f"{name:>{c}s}" for name, c in zip(names, columns)))
    for row, values in rows.items():
        print(f"{row:{width}s}" + "".join(f"{values[name]:{c}.4f}" if name in values else f"{'-':>{c}s}"
                                            for name, c in zip(names, columns)))


def translate(args):
    from ganforge import io
    from ganforge.data.folder import read_image
    from ganforge.gan import load_model
    model = load_model(args.run)
    if model.data_kind != "unpaired":
        raise ValueError(f"{args.run} holds a {model.name} run, which does not translate images; train cyclegan")
    channels = model.data.shape[0]
    inputs, outputs = _image_files(args.input, args.out)
    for source, target in zip(inputs, outputs):
        image = read_image(source, channels)  # each at its own size, so one at a time
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        io.save_image(target, model.translate(image[None], args.direction)[0])
    names = {"ab": "A -> B", "ba": "B -> A"}
    print(f"translated {len(inputs)} image{'s' if len(inputs) != 1 else ''} {names[args.direction]} with "
          f"{model.name} (step {model.step}) into {args.out}")


def _image_files(source, out):
    """(inputs, outputs): the images of a file or a folder, and where each one's result goes."""
    from ganforge.data.folder import list_images
    if os.path.isdir(source):
        inputs = list_images(source)
        return inputs, [os.path.join(out, os.path.splitext(os.path.relpath(p, source))[0] + ".png") for p in inputs]
    if os.path.isfile(source):
        if os.path.isdir(out):
            raise ValueError(f"--input is one image, so --out must be a file name, not the folder {out}")
        return [source], [out]
    raise FileNotFoundError(f"--input {source} is neither an image nor a folder")


def _super_resolution_model(run, scale=None):
    from ganforge.gan import load_model
    model = load_model(run)
    if model.data_kind != "paired":
        raise ValueError(f"{run} holds a {model.name} run, which does not upscale images; train srgan for that")
    if scale is not None and scale != model.scale:
        raise ValueError(f"{run} upscales by {model.scale}, not by --scale {scale}: train a x{scale} run "
                         f"(ganforge train srgan --scale {scale})")
    return model


def upscale(args):
    from ganforge import io
    from ganforge.data.folder import read_image
    model = _super_resolution_model(args.run, args.scale)
    if args.tile < 1:
        raise ValueError(f"--tile {args.tile}: give a positive number of pixels")
    inputs, outputs = _image_files(args.input, args.out)
    for source, target in zip(inputs, outputs):
        image = read_image(source, model.channels)  # each at its own size, so one at a time
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        io.save_image(target, model.upscale(image[None], tile=args.tile)[0])
    print(f"upscaled {len(inputs)} image{'s' if len(inputs) != 1 else ''} x{model.scale} with {model.name} "
          f"(step {model.step}) into {args.out}")


def profile(args):
    import tempfile

    from ganforge.gan import benchmarks
    from ganforge.profiler import Profile
    if args.model in benchmarks.MODELS:
        if args.batch_size is not None:
            raise SystemExit(f"ganforge profile: {args.model} is a benchmark model with a fixed batch "
                             f"(bench/BENCH_MODELS.md); --batch-size is for the models of `ganforge list`")
        G, D, step, _ = benchmarks.build(args.model)
        nets = {"G": G, "D": D}
        what = f"benchmark model {args.model} (bench/BENCH_MODELS.md)"
    else:
        from ganforge.gan import Trainer
        trainer = Trainer(args.model, tempfile.mkdtemp(prefix="ganforge-profile-"), data=args.data,
                          data_path=args.data_path, batch_size=args.batch_size, progress=False)
        nets, step = trainer.model.nets, trainer.train_step
        what = f"model {args.model} on {trainer.config['data']} (batch {trainer.config['batch_size']})"
    for _ in range(args.warmup):
        step()
    with Profile().name_layers(**nets) as prof:
        for _ in range(args.steps):
            step()
    print(f"profile of {what}, {args.steps} steps after {args.warmup} warm-up")
    print(prof.report(steps=args.steps, top=args.top))


def recipe_flags(options):
    """The `ganforge train` flags that set these Trainer options."""
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, tuple):
            flags.append(f"{flag} {' '.join(map(str, value))}")
        else:
            flags.append(f"{flag} {value}")
    return " ".join(flags)


def list_models(args):
    from ganforge.gan import MODELS
    from ganforge.gan.recipes import RECIPES
    width = max(map(len, MODELS))
    for name, model in MODELS.items():
        print(f"{name:{width}s} {model.summary}  [default data: {model.defaults.get('data')}]")
    print("\nrecipes for the 2-D mixtures (ganforge/gan/recipes.py; docs/mode_coverage.md measures them):")
    width = max(map(len, RECIPES))
    for name, (model, options, summary) in RECIPES.items():
        print(f"  {name:{width}s} {summary}\n  {'':{width}s} ganforge train {model} {recipe_flags(options)}".rstrip())


def main(argv=None):
    from ganforge.gan.nets import INITS
    from ganforge.gan.steps import PENALTIES
    parser = argparse.ArgumentParser(prog="ganforge", description="ganforge: a from-scratch GAN engine")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full traceback (also GANFORGE_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, BLAS, compiled module, GPU support and kernel choices")
    commands.add_parser("list", help="the GAN models and what each is for")
    t = commands.add_parser("train", help="train a GAN model and write samples, curves and checkpoints")
    t.add_argument("model", help="see `ganforge list`")
    t.add_argument("--data", help="ring8, grid25, fashion-mnist, fashion-edges (cyclegan), or a folder of images "
                                   "(default: the model's)")
    t.add_argument("--data-path", help="the Fashion-MNIST folder (default: GANFORGE_DATA, then "
                                       "/usr/share/datasets/fashion-mnist)")
    t.add_argument("--data-b", help="the second image folder, for unpaired translation (--data is the first)")
    t.add_argument("--scale", type=int, help="downscaling factor of the low-resolution images, for paired "
                                             "super-resolution data (default 4)")
    t.add_argument("--steps", type=int, help="training steps (default: the model's)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--resolution", type=int, help="image size for image folders (28, 32 or 64; "
                                                     "cyclegan: any multiple of 4, default 64)")
    t.add_argument("--out", help="run folder (default: runs/VARIANT)")
    t.add_argument("--device", choices=["cpu", "cuda"])
    t.add_argument("--seed", type=int)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--rollback", action="store_true", help="on NaN/Inf, go back to the last checkpoint instead of stopping")
    t.add_argument("--sample-every", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--eval-every", type=int, metavar="N", help="score the run every N steps (FD and the like, "
                   "as `ganforge evaluate`, on --eval-samples images) into metrics.jsonl and metrics.png")
    t.add_argument("--eval-samples", type=int, metavar="N", help="images per --eval-every score (default 2000)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    parallel = t.add_argument_group("data parallel (MPI; docs/distributed.md)")
    parallel.add_argument("--nproc", type=int, metavar="N",
                          help="train on N processes of this machine: starts mpirun for you (--batch-size is per process)")
    parallel.add_argument("--distributed", action="store_true",
                          help="this process is one rank of `mpirun -np N ganforge train ...`")
    parallel.add_argument("--no-sync-batch-norm", action="store_true",
                          help="batch norm over each rank's own batch, not over all of theirs")
    recipe = t.add_argument_group("recipe", "replace the model's own settings (see `ganforge list`)")
    recipe.add_argument("--lr", type=float, help="learning rate of both networks")
    recipe.add_argument("--betas", type=float, nargs=2, metavar=("BETA1", "BETA2"), help="Adam's betas")
    recipe.add_argument("--n-critic", type=int, help="discriminator updates per generator update")
    recipe.add_argument("--penalty", choices=PENALTIES, help="discriminator penalty: gradient penalty (two- or "
                                                             "one-sided), R1 on real data, or none")
    recipe.add_argument("--penalty-weight", type=float, help="lambda of the gradient penalty, gamma of R1")
    recipe.add_argument("--lr-decay", action="store_true", help="decay both learning rates linearly to 0")
    recipe.add_argument("--init", choices=list(INITS),
                        help="dcgan and cgan weights: the DCGAN paper's N(0, 0.02) (cgan's default), the layers' own, "
                             "as PyTorch's are (dcgan's default), or the paper's in D and the layers' own in G")
    remedies = t.add_argument_group("mode-collapse remedies")
    remedies.add_argument("--unrolled-steps", type=int, metavar="K",
                          help="unrolled GAN: score the generator against D after K look-ahead updates")
    remedies.add_argument("--unrolled-form", choices=("first-order", "true"),
                          help="first-order (default): no gradient through the look-ahead updates; true: the "
                               "generator's gradient flows through them (Metz et al. 2017; slower)")
    remedies.add_argument("--minibatch-discrimination", action="store_true",
                          help="give D minibatch-discrimination features ahead of its score")
    remedies.add_argument("--clip-grad-norm", type=float, metavar="MAX",
                          help="clip each network's gradient norm to MAX before its update")
    translation = t.add_argument_group("translation (cyclegan)")
    translation.add_argument("--cycle-weight", type=float, help="lambda of the cycle-consistency L1 (default 10)")
    translation.add_argument("--identity-weight", type=float,
                             help="the identity L1's weight as a fraction of --cycle-weight (default 0.5)")
    translation.add_argument("--pool-size", type=int, help="generated images kept for the discriminators (default 50)")
    translation.add_argument("--width", type=int, help="channels of the first layer (cyclegan: 64, 32 below 64 px; "
                                                        "srgan: 64; stylegan2: 32 at 32 px, doubling per halving)")
    translation.add_argument("--blocks", type=int,
                             help="residual blocks of the generators (cyclegan: 9 at 128 px and up, 6 at 64, 4 below; "
                                  "srgan: 16)")
    sr = t.add_argument_group("super-resolution (srgan; docs/srgan.md)")
    sr.add_argument("--content-only", action="store_true",
                    help="train the generator alone on the pixels' MSE: the paper's SRResNet, SRGAN's first phase")
    sr.add_argument("--content", choices=["mse", "features"],
                    help="SRGAN's content loss: the pixels' MSE (default) or the MSE of the Fashion-MNIST "
                         "classifier's feature maps (28x28 grey only)")
    sr.add_argument("--adversarial-weight", type=float, help="weight of the adversarial loss (default 1e-3)")
    style = t.add_argument_group("stylegan2 (docs/stylegan2.md)")
    style.add_argument("--mapping-layers", type=int, help="layers of the mapping network (default 2; the paper's 8)")
    style.add_argument("--max-channels", type=int, help="channels at the coarsest layers (default 128)")
    style.add_argument("--r1-gamma", type=float, help="R1's gamma, applied every 16 steps (default 0.01)")
    style.add_argument("--pl-weight", type=float, help="the path-length penalty's weight, every 4 steps (default 2; "
                       "0 turns it off)")
    style.add_argument("--style-mixing", type=float, metavar="P", help="probability of style mixing (default 0.9)")
    anomaly = t.add_argument_group("anomaly detection (anomaly; docs/anomaly.md)")
    anomaly.add_argument("--normal-class", type=int, metavar="K",
                         help="train on this class of fashion-mnist alone (a --data folder is all normal images)")
    anomaly.add_argument("--encoder-steps", type=int, help="of --steps, the last ones that train the encoder "
                                                           "(default 1000)")
    anomaly.add_argument("--kappa", type=float, help="weight of D's feature residual in the score (default 1)")
    anomaly.add_argument("--held-out", type=float, metavar="FRACTION",
                         help="normal images kept out of training to set the score threshold (default 0.1)")
    anomaly.add_argument("--transformations", type=int, choices=(0, 8, 72),
                         help="D's second task, telling which of these turns, mirrorings and shifts a real image "
                              "had; part of the score (default 72; 0: the residual alone, f-AnoGAN)")
    anomaly.add_argument("--transformation-weight", type=float,
                         help="weight of that task in D's loss (default 1)")
    anomaly.add_argument("--nearest", type=int, metavar="K",
                         help="the score's third part: distance in D's features to the K nearest normal training "
                              "images (default 1; 0 leaves it out)")
    t.add_argument("--flush-denormal", action="store_true",
                   help="denormal floats to zero: much faster where second-order graphs make them (the true "
                        "unrolled GAN); results change below 1.2e-38 only")
    t.add_argument("--labels-per-class", type=int, metavar="N",
                   help="train on N images of each class alone, drawn by --seed (the few-labels setting; cgan)")
    t.add_argument("--init-from", metavar="RUN",
                   help="start the networks this run shares with RUN from RUN's weights (srgan from an SRResNet run)")
    s = commands.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="a run folder (or a checkpoint folder)")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", default="samples.png", help="a .png grid, or .npy for the raw samples")
    s.add_argument("--label", type=int, help="class to draw, for class-conditional models")
    s.add_argument("--text", help="text2image: what to draw, e.g. 'a dark, wide ankle boot'")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-ema", action="store_true", help="use the raw generator weights, not their EMA")
    s.add_argument("--truncation", type=float, metavar="PSI",
                   help="stylegan2: pull w toward its mean, 1 none to 0 the mean image (0.7: fewer odd samples)")
    a = commands.add_parser("augment", help="labelled synthetic images from a cgan run: a folder per class, or .npz")
    a.add_argument("run", help="a class-conditional (cgan) run folder")
    a.add_argument("--n", type=int, default=1000, help="images in all, the classes in turn")
    a.add_argument("--out", required=True, help="a folder (one subfolder per class) or a .npz file")
    a.add_argument("--seed", type=int, default=0)
    m = commands.add_parser("mix", help="stylegan2: a style-mixing grid (coarse, middle and fine styles of the "
                            "top row's images given to each row's own)")
    m.add_argument("run", help="a stylegan2 run folder")
    m.add_argument("--out", default="mix.png")
    m.add_argument("--rows", type=int, default=3)
    m.add_argument("--columns", type=int, default=5)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--truncation", type=float, default=1.0, metavar="PSI")
    w = commands.add_parser("interpolate", help="an animated GIF of latent walks (stylegan2, dcgan, cgan, ...)")
    w.add_argument("run", help="a run folder of a model that draws from noise")
    w.add_argument("--out", default="walk.gif", help="a .gif file")
    w.add_argument("--n", type=int, default=16, help="walks, side by side")
    w.add_argument("--frames", type=int, default=48)
    w.add_argument("--seconds-per-frame", type=float, default=0.08)
    w.add_argument("--seed", type=int, default=0)
    pr = commands.add_parser("project", help="stylegan2: find the w whose image is closest to a real image")
    pr.add_argument("run", help="a stylegan2 run folder")
    pr.add_argument("--input", required=True, help="an image (resized and center-cropped to the run's size)")
    pr.add_argument("--out", default="projected.png", help="the image beside its projection; the ws go to .npy")
    pr.add_argument("--steps", type=int, default=300)
    pr.add_argument("--seed", type=int, default=0)
    e = commands.add_parser("evaluate", help="image quality of a Fashion-MNIST run: FD, KID, precision/recall, "
                                             "density/coverage and class accuracy, beside real data's; "
                                             "translation and super-resolution runs against their true images")
    e.add_argument("run", help="a run folder (or a checkpoint folder)")
    e.add_argument("--n", type=int, default=10000, help="generated and real images compared (default 10000)")
    e.add_argument("--data-path", help="the Fashion-MNIST folder")
    e.add_argument("--data", help="super-resolution runs: a folder of held-out images (default: the Fashion-MNIST "
                                  "test set for a Fashion-MNIST run)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-ema", action="store_true", help="use the raw generator weights, not their EMA")
    e.add_argument("--fpr", type=float, default=0.05, help="anomaly runs: the false-positive rate on held-out normal "
                                                           "images that sets the flag's threshold")
    e.add_argument("--json", help="also write the numbers to this JSON file")
    sc = commands.add_parser("score", help="anomaly scores of images from an anomaly run, as CSV")
    sc.add_argument("run", help="an anomaly run folder")
    sc.add_argument("--input", required=True, help="an image, a folder of images, or a .npy/.npz array (N, C, H, W) "
                                                   "in [-1, 1]")
    sc.add_argument("--out", default="scores.csv",
                    help="the CSV: file, score and its parts (residual, pixels, features, transformations, nearest), "
                         "anomalous")
    sc.add_argument("--fpr", type=float, default=0.05,
                    help="false-positive rate on held-out normal images that sets the flag's threshold (default 0.05)")
    sc.add_argument("--data-path", help="the Fashion-MNIST folder (for the held-out normal images)")
    tr = commands.add_parser("translate", help="translate images with a trained CycleGAN run")
    tr.add_argument("run", help="a run folder (or a checkpoint folder)")
    tr.add_argument("--input", required=True, help="an image, or a folder of images (any size)")
    tr.add_argument("--out", required=True, help="the translated image's file, or a folder for a folder's")
    tr.add_argument("--direction", choices=["ab", "ba"], default="ab",
                    help="ab: from --data's domain to --data-b's (fashion-edges: edges -> garment); ba: back")
    u = commands.add_parser("upscale", help="upscale images with a trained super-resolution (srgan) run")
    u.add_argument("run", help="a run folder (or a checkpoint folder)")
    u.add_argument("--input", required=True, help="an image, or a folder of images (any size)")
    u.add_argument("--out", required=True, help="the upscaled image's file, or a folder for a folder's")
    u.add_argument("--scale", type=int, help="refuse to run unless the model upscales by this factor")
    u.add_argument("--tile", type=int, default=128,
                   help="low-resolution pixels per tile for large images (memory; the output is the same)")
    r = commands.add_parser("report", help="one self-contained HTML page of a run: samples over the steps, "
                            "loss and metric curves, options, the command that resumes it")
    r.add_argument("run", help="a run folder")
    r.add_argument("--out", help="the page's file (default: RUN/report.html)")
    p = commands.add_parser("profile", help="where a training step's time goes, per op and per layer")
    p.add_argument("model", help="a benchmark model (dcgan28, wgangp28, sngan28, dcgan64) or a model of `ganforge list`")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=15, help="rows per table")
    p.add_argument("--data", help="for a model: its data set (default: the model's)")
    p.add_argument("--data-path", help="the Fashion-MNIST folder")
    p.add_argument("--batch-size", type=int, help="for a model: its batch size (default: the model's)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    from ganforge.backends.cpu import runtime
    runtime.hold_freed_memory()  # the command line owns its process (see backends/cpu/runtime.py)
    handlers = {"profile": profile, "info": lambda a: info(), "list": list_models, "train": train, "sample": sample,
                "evaluate": evaluate, "translate": translate, "upscale": upscale, "report": report, "augment": augment,
                "mix": mix, "interpolate": interpolate, "project": project, "score": score}
    if args.command == "train" and args.nproc is not None:  # this process only starts mpirun, whose ranks train
        handlers["train"] = lambda a: launch(a, argv)
    from ganforge.backend import env_flag
    debug = args.debug or env_flag("GANFORGE_DEBUG")
    try:
        code = handlers[args.command](args)
    except KeyboardInterrupt as exc:
        print(f"ganforge: interrupted{f' ({exc})' if str(exc) else ''}; resume with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, RuntimeError) as exc:
        if debug:
            raise
        # Expected failures (bad input, missing data, a diverged run) get one line, not a traceback.
        # A RuntimeError may also be a bug in a kernel, so say how to see where it came from.
        hint = " (rerun with --debug for the traceback)" if isinstance(exc, RuntimeError) else ""
        print(f"ganforge: error{_rank_of(args)}: {exc}{hint}", file=sys.stderr)
        return _stop_ranks(args, 1)
    except Exception:
        if getattr(args, "world", None) is None:
            raise
        import traceback
        traceback.print_exc()
        return _stop_ranks(args, 1)
    return code or 0


def _rank_of(args):
    world = getattr(args, "world", None)
    return f" on rank {world.rank}" if world is not None and world.size > 1 else ""


def _stop_ranks(args, code):
    """A failed rank ends the whole run: the others would wait for it in their next Allreduce."""
    world = getattr(args, "world", None)
    if world is not None:
        sys.stderr.flush()
        world.abort(code)
    return code


def launch(args, argv):
    """`ganforge train ... --nproc N`: the same command on N ranks, under mpirun."""
    from ganforge.distributed import mpirun_command
    from ganforge.gan import get_model
    get_model(args.model)  # an unknown model: one line here, not one per rank
    nproc, out_dir = args.nproc, args.out or os.path.join("runs", args.model)
    argv = [a for i, a in enumerate(argv)
            if not (a == "--nproc" or a.startswith("--nproc=") or (i and argv[i - 1] == "--nproc"))]
    command = mpirun_command(nproc) + [sys.executable, "-m", "ganforge.cli", *argv, "--distributed"]
    print("ganforge: " + " ".join(command), flush=True)
    code = subprocess.call(command)
    if code:
        latest, resume = os.path.join(out_dir, "latest"), ""
        if os.path.exists(latest):
            resume = f"; its last checkpoint is {latest}: continue with the same command"
            resume += "" if "--resume" in argv else " and --resume"
        print(f"ganforge: the run on {nproc} processes stopped (mpirun exit status {code}){resume}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
