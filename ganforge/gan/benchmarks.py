"""The fixed benchmark models of bench/BENCH_MODELS.md as ganforge training steps.

`bench/test_train_step.py` times these against PyTorch's twins (bench/torch_steps.py)
and `ganforge profile MODEL` shows where their time goes. Each step is exactly the peer's:
a discriminator update on a real batch and a detached fake batch, then a generator update
through a fresh discriminator pass over the same fake batch.
"""
import numpy as np

from .. import functional as F
from .. import nn, optim
from ..tensor import Generator, Tensor, manual_seed, ones_like, rand, randn, zeros_like
from .nets import dcgan_discriminator, dcgan_generator
from .penalties import gradient_penalty
from .steps import frozen, update

MODELS = {  # name: (loss, D with batch norm, D with spectral norm, channels, resolution, batch)
    "dcgan28": ("bce", True, False, 1, 28, 64),
    "wgangp28": ("wgan-gp", False, False, 1, 28, 64),
    "sngan28": ("hinge", False, True, 1, 28, 64),
    "dcgan64": ("bce", True, False, 3, 64, 128),
}
Z_DIM = 100


def _generator_64():
    """dcgan64's G has no bias in its last layer, unlike ganforge's DCGAN generator."""
    G = dcgan_generator(Z_DIM, 3, 64)
    last = G[len(G) - 2]
    last.bias = None
    return G


def _discriminator_64():
    """dcgan64's D: the DCGAN trunk without biases (BN follows every conv but the first)."""
    layers = []
    for i, (cin, cout) in enumerate([(3, 64), (64, 128), (128, 256), (256, 512)]):
        layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=False))
        if i:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2))
    layers += [nn.Conv2d(512, 1, 4, 1, 0, bias=False), nn.Flatten()]
    return nn.Sequential(*layers)


def build(name, seed=0, device="cpu"):
    """(G, D, step, batch): the model's networks and a function that runs one training step."""
    if name not in MODELS:
        raise ValueError(f"unknown benchmark model {name!r}: choose from {', '.join(MODELS)}")
    loss, batchnorm, spectral, channels, resolution, batch = MODELS[name]
    manual_seed(seed)
    if resolution == 64:
        G, D = _generator_64(), _discriminator_64()
    else:
        G = dcgan_generator(Z_DIM, channels, resolution)
        D = dcgan_discriminator(channels, resolution, batchnorm=batchnorm, spectral=spectral)
    G, D = G.to(device), D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    noise = Generator(seed + 1)
    real = rand(batch, channels, resolution, resolution, generator=noise).to(device) * 2 - 1

    def step():
        fake = G(randn(batch, Z_DIM, 1, 1, generator=noise).to(device))
        if loss == "bce":
            out_real, out_fake = D(real), D(fake.detach())
            loss_d = F.binary_cross_entropy_with_logits(out_real, ones_like(out_real)) + \
                F.binary_cross_entropy_with_logits(out_fake, zeros_like(out_fake))
        elif loss == "hinge":
            loss_d = F.mean(F.relu(1 - D(real))) + F.mean(F.relu(1 + D(fake.detach())))
        else:
            loss_d = F.mean(D(fake.detach())) - F.mean(D(real)) + gradient_penalty(D, real, fake, 10.0,
                                                                                    generator=noise)
        update(opt_d, loss_d)
        with frozen(D):  # the peer computes D's weight gradients here and throws them away
            out = D(fake)
            loss_g = F.binary_cross_entropy_with_logits(out, ones_like(out)) if loss == "bce" else -F.mean(out)
            update(opt_g, loss_g)
        return loss_d.item(), loss_g.item()

    return G, D, step, batch


def _ready(model_class, data, seed, device, **config):
    """A `model_class` model with its own settings (and `config`'s), its networks on
    `device` and its optimizers built, from seed `seed`."""
    manual_seed(seed)
    model = model_class({**model_class.defaults, **model_class.options, "seed": seed, "device": device, **config},
                        data)
    for net in model.nets.values():
        net.to(device)
    model.setup_optimizers()
    return model


def _steps_on(model, batch):
    """The model's train_step as a function of nothing, on the same batch every time."""
    def forever():
        while True:
            yield batch
    stream = forever()
    return lambda: model.train_step(stream)


def cyclegan(batch, resolution=64, channels=3, seed=0, device="cpu"):
    """(model, step): CycleGAN's own train_step (models/cyclegan.py, at the paper's widths:
    64, 6 residual blocks at 64 px) on random images loaded at 286/256 of `resolution`,
    as bench/torch_cyclegan.py's twin step does."""
    from ..data.augment import load_size
    from .model import DataInfo
    from .models.cyclegan import CycleGAN
    shape = (channels, resolution, resolution)
    model = _ready(CycleGAN, DataInfo("random", shape, shape), seed, device, steps=10**6)
    noise, size = Generator(seed + 3), load_size(resolution)
    images = {k: rand(batch, channels, size, size, generator=noise).to(device) * 2 - 1 for k in "ab"}
    return model, _steps_on(model, images)


def srgan(batch, size=96, scale=4, channels=3, seed=0, device="cpu"):
    """(model, step): SRGAN's own train_step (models/srgan.py: SRResNet of 16 blocks and the
    paper's discriminator, MSE content loss) on a fixed batch of random high-resolution
    images and their bicubic downscales, as bench/torch_srgan.py's twin step does."""
    from ..data import resize_bicubic
    from .model import DataInfo
    from .models.srgan import SRGAN
    shape = (channels, size, size)
    model = _ready(SRGAN, DataInfo("random", shape, shape), seed, device, scale=scale)
    hr = rand(batch, channels, size, size, generator=Generator(seed + 3)) * 2 - 1
    pair = {"hr": hr.to(device), "lr": Tensor(resize_bicubic(hr.numpy(), size // scale, size // scale)).to(device)}
    return model, _steps_on(model, pair)


def stylegan2(batch, resolution=32, channels=1, seed=0, device="cpu"):
    """(model, period): StyleGAN2's own train_step (models/stylegan2.py, its default
    networks) on a fixed batch of random images, 16 steps in a row: one period of the lazy
    regularizers (R1 on the first, the path-length penalty on every fourth), so that the
    time of a call over 16 is a step with the regularizers amortized, as bench/torch_stylegan2.py's."""
    from .model import DataInfo
    from .models.stylegan2 import StyleGAN2
    shape = (channels, resolution, resolution)
    model = _ready(StyleGAN2, DataInfo("random", shape, shape), seed, device, batch_size=batch)
    step = _steps_on(model, {"x": (rand(batch, *shape, generator=Generator(seed + 3)) * 2 - 1).to(device)})

    def period():
        for _ in range(16):
            step()
    return model, period


def mlp_gan(batch, seed=0, device="cpu"):
    """(model, step): the `gan` variant's own train_step (MLPs of three 256-wide hidden
    layers, z of 2, Adam on both, the non-saturating loss) on a fixed batch of random 2-D
    points, as bench/torch_steps.py's mlp_gan twin does."""
    from .model import DataInfo
    from .models.gan import GAN
    model = _ready(GAN, DataInfo("random", (2,)), seed, device, batch_size=batch)
    return model, _steps_on(model, {"x": randn(batch, 2, generator=Generator(seed + 3)).to(device)})


def text2image(batch, seed=0, device="cpu"):
    """(model, step): text2image's own train_step on a fixed batch of random images and
    random 4-word captions, as bench/torch_applications.py's twin does."""
    from ..data.captions import MAX_WORDS, VOCABULARY
    from .model import DataInfo
    from .models.text2image import Text2Image
    shape = (1, 28, 28)
    model = _ready(Text2Image, DataInfo("fashion-mnist", shape, shape), seed, device, batch_size=batch)
    noise = Generator(seed + 3)
    tokens = np.zeros((batch, MAX_WORDS), dtype=np.int64)
    tokens[:, :4] = np.random.default_rng(seed).integers(1, len(VOCABULARY), (batch, 4))
    images = {"x": (rand(batch, *shape, generator=noise) * 2 - 1).to(device), "tokens": Tensor(tokens).to(device)}
    return model, _steps_on(model, images)


def anomaly_gan(batch, seed=0, device="cpu"):
    """(model, step): anomaly's train_step in its GAN phase (dcgan28's step, D also naming
    which of 72 transformations each real image had) on a fixed batch of random images,
    as bench/torch_applications.py's twin."""
    from .model import DataInfo
    from .models.anomaly import AnomalyGAN
    shape = (1, 28, 28)
    model = _ready(AnomalyGAN, DataInfo("fashion-mnist", shape, shape), seed, device, batch_size=batch)
    return model, _steps_on(model, {"x": (rand(batch, *shape, generator=Generator(seed + 3)) * 2 - 1).to(device)})


def anomaly_encoder(batch, seed=0, device="cpu"):
    """(model, step): anomaly's train_step in its encoder phase (G and D frozen, E fitted
    to invert G) on a fixed batch of random images, as bench/torch_applications.py's twin."""
    from .model import DataInfo
    from .models.anomaly import AnomalyGAN
    shape = (1, 28, 28)
    model = _ready(AnomalyGAN, DataInfo("fashion-mnist", shape, shape), seed, device, batch_size=batch)
    model.optimizers["G"].step_count = model.gan_steps  # the GAN's steps are done
    return model, _steps_on(model, {"x": (rand(batch, *shape, generator=Generator(seed + 3)) * 2 - 1).to(device)})
