"""The fixed benchmark models of bench/BENCH_MODELS.md as ganforge training steps.

`bench/test_train_step.py` times these against PyTorch's twins (bench/torch_steps.py)
and `ganforge profile MODEL` shows where their time goes. Each step is exactly the peer's:
a discriminator update on a real batch and a detached fake batch, then a generator update
through a fresh discriminator pass over the same fake batch.
"""
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


def cyclegan(batch, resolution=64, channels=3, seed=0, device="cpu"):
    """(model, step): CycleGAN's own train_step (models/cyclegan.py, at the paper's widths:
    64, 6 residual blocks at 64 px) on random images loaded at 286/256 of `resolution`,
    as bench/torch_cyclegan.py's twin step does."""
    from ..data.augment import load_size
    from .model import DataInfo
    from .models.cyclegan import CycleGAN
    manual_seed(seed)
    config = {**CycleGAN.defaults, **CycleGAN.options, "seed": seed, "device": device, "steps": 10**6}
    shape = (channels, resolution, resolution)
    model = CycleGAN(config, DataInfo("random", shape, shape))
    for net in model.nets.values():
        net.to(device)
    model.setup_optimizers()
    noise = Generator(seed + 3)
    size = load_size(resolution)
    images = {k: rand(batch, channels, size, size, generator=noise).to(device) * 2 - 1 for k in "ab"}

    def batches():
        while True:
            yield images

    stream = batches()
    return model, lambda: model.train_step(stream)


def srgan(batch, size=96, scale=4, channels=3, seed=0, device="cpu"):
    """(model, step): SRGAN's own train_step (models/srgan.py: SRResNet of 16 blocks and the
    paper's discriminator, MSE content loss) on a fixed batch of random high-resolution
    images and their bicubic downscales, as bench/torch_srgan.py's twin step does."""
    from ..data import resize_bicubic
    from .model import DataInfo
    from .models.srgan import SRGAN
    manual_seed(seed)
    config = {**SRGAN.defaults, **SRGAN.options, "scale": scale, "seed": seed, "device": device}
    shape = (channels, size, size)
    model = SRGAN(config, DataInfo("random", shape, shape))
    for net in model.nets.values():
        net.to(device)
    model.setup_optimizers()
    hr = rand(batch, channels, size, size, generator=Generator(seed + 3)) * 2 - 1
    pair = {"hr": hr.to(device), "lr": Tensor(resize_bicubic(hr.numpy(), size // scale, size // scale)).to(device)}

    def batches():
        while True:
            yield pair

    stream = batches()
    return model, lambda: model.train_step(stream)


def mlp_gan(batch, seed=0, device="cpu"):
    """(model, step): the `gan` variant's own train_step (MLPs of three 256-wide hidden
    layers, z of 2, Adam on both, the non-saturating loss) on a fixed batch of random 2-D
    points, as bench/torch_steps.py's mlp_gan twin does."""
    from .model import DataInfo
    from .models.gan import GAN
    manual_seed(seed)
    config = {**GAN.defaults, **GAN.options, "seed": seed, "device": device, "batch_size": batch}
    model = GAN(config, DataInfo("random", (2,)))
    for net in model.nets.values():
        net.to(device)
    model.setup_optimizers()
    real = {"x": randn(batch, 2, generator=Generator(seed + 3)).to(device)}

    def batches():
        while True:
            yield real

    stream = batches()
    return model, lambda: model.train_step(stream)
