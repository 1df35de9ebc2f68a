"""The networks the models are built from: MLPs for 2-D data, the DCGAN family for
images (28, 32 and 64 pixels, any channel count), and their class-conditional forms."""

from .. import functional as F
from .. import nn

RESOLUTIONS = (28, 32, 64)


def mlp_generator(z_dim, out_dim, hidden=256, depth=3, output_tanh=False):
    layers, width = [], z_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    if output_tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def mlp_discriminator(in_dim, hidden=256, depth=3, spectral=False):
    wrap = nn.spectral_norm if spectral else (lambda m: m)
    layers, width = [], in_dim
    for _ in range(depth):
        layers += [wrap(nn.Linear(width, hidden)), nn.LeakyReLU(0.2)]
        width = hidden
    layers.append(wrap(nn.Linear(width, 1)))
    return nn.Sequential(*layers)


def _check_resolution(resolution):
    if resolution not in RESOLUTIONS:
        raise ValueError(f"DCGAN networks exist for resolutions {RESOLUTIONS}, not {resolution}: resize the "
                         "images (image folders are resized to --resolution)")


# --init: how (G, D) start. dcgan-d: the paper's in D, the layers' own in G
INITS = {"dcgan": ("dcgan", "dcgan"), "default": ("default", "default"), "dcgan-d": ("default", "dcgan")}


def per_network_init(init):
    """(G's, D's) initialization for an --init name."""
    if init not in INITS:
        raise ValueError(f"unknown initialization {init!r}: use one of {', '.join(INITS)}")
    return INITS[init]


def initialized(net, init):
    """`net` initialized the DCGAN paper's way (init="dcgan") or left as its layers made it
    (init="default")."""
    if init not in ("dcgan", "default"):
        raise ValueError(f"unknown initialization {init!r} for one network: use 'dcgan' or 'default'")
    return net.apply(dcgan_init) if init == "dcgan" else net


def dcgan_init(module):
    """The DCGAN paper's initialization: conv weights ~ N(0, 0.02), batch-norm scales ~
    N(1, 0.02), biases 0. With PyTorch's default initialization instead, the
    discriminator wins outright for the first hundreds of steps (seen in both frameworks)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        # (under spectral norm the trained tensor is weight_orig; weight is recomputed from it)
        nn.init.normal_(getattr(module, "weight_orig", module.weight), 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def dcgan_generator(z_dim, channels, resolution, base=64, init="dcgan"):
    """z (N, z_dim, 1, 1) -> images (N, channels, resolution, resolution) in [-1, 1]."""
    _check_resolution(resolution)
    if resolution == 28:  # dcgan28 of bench/BENCH_MODELS.md: 7x7, 14x14, 28x28
        widths, first_kernel = [4 * base, 2 * base], 7
    else:  # 4x4, then doubling to 32 or 64
        widths = [8 * base, 4 * base, 2 * base] + ([base] if resolution == 64 else [])
        first_kernel = 4
    layers = [nn.ConvTranspose2d(z_dim, widths[0], first_kernel, 1, 0, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
    return initialized(nn.Sequential(*layers), init)


def dcgan_features(channels, resolution, base=64, batchnorm=True, spectral=False, init="dcgan"):
    """The convolutional trunk of the DCGAN discriminator: images -> feature maps."""
    _check_resolution(resolution)
    wrap = nn.spectral_norm if spectral else (lambda m: m)
    widths = [base, 2 * base] + ([4 * base] if resolution >= 32 else []) + ([8 * base] if resolution == 64 else [])
    layers, cin = [], channels
    for i, cout in enumerate(widths):
        layers.append(wrap(nn.Conv2d(cin, cout, 4, 2, 1)))
        if batchnorm and i > 0:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2))
        cin = cout
    final = 7 if resolution == 28 else 4
    return initialized(nn.Sequential(*layers), init), cin, final


def dcgan_discriminator(channels, resolution, base=64, batchnorm=True, spectral=False, init="dcgan"):
    """images -> one logit per image, shape (N, 1)."""
    features, width, final = dcgan_features(channels, resolution, base, batchnorm, spectral, init)
    head = initialized(nn.Conv2d(width, 1, final), init)
    return nn.Sequential(features, nn.spectral_norm(head) if spectral else head, nn.Flatten())


class ConditionalGenerator(nn.Module):
    """A DCGAN generator fed with z and a learned embedding of the class label."""

    def __init__(self, z_dim, channels, resolution, num_classes, embed_dim=32, base=64, init="dcgan"):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = dcgan_generator(z_dim + embed_dim, channels, resolution, base, init)

    def forward(self, z, labels):
        e = F.reshape(self.embed(labels), (z.shape[0], -1, 1, 1))
        return self.net(F.concat([z, e], axis=1))


class ProjectionDiscriminator(nn.Module):
    """Miyato & Koyama 2018: logit = psi(phi(x)) + <embed(y), phi(x)>, the label entering as
    an inner product rather than an input channel. phi is the DCGAN trunk's last feature
    map, flattened: the paper pools a deep ResNet's features, but pooling a two-layer
    trunk's map throws away where things are, and its generator then collapses (seen at
    28 pixels: every sample of a class alike)."""

    def __init__(self, channels, resolution, num_classes, base=64, spectral=True, init="dcgan"):
        super().__init__()
        self.features, width, final = dcgan_features(channels, resolution, base, batchnorm=False, spectral=spectral,
                                                     init=init)
        wrap = nn.spectral_norm if spectral else (lambda m: m)
        self.head = wrap(nn.Linear(width * final * final, 1))
        self.embed = wrap(nn.Embedding(num_classes, width * final * final))

    def forward(self, x, labels):
        phi = F.flatten(self.features(x), 1)
        return self.head(phi) + F.sum(self.embed(labels) * phi, axis=1, keepdims=True)


def networks_for(data_shape, z_dim, *, spectral=False, batchnorm=True, num_classes=None, hidden=256, init="dcgan"):
    """(G, D) for data of `data_shape`: MLPs for vectors, DCGAN nets for (C, H, W) images,
    initialized as the DCGAN paper does (init="dcgan"), by the layers themselves, as
    PyTorch's are (init="default"), or the paper's way in D alone (init="dcgan-d")."""
    if len(data_shape) == 1:
        if num_classes:
            raise ValueError("conditional models are built for images; use an image data set")
        return (mlp_generator(z_dim, data_shape[0], hidden),
                mlp_discriminator(data_shape[0], hidden, spectral=spectral))
    channels, height, width = data_shape
    if height != width:
        raise ValueError(f"DCGAN networks need square images, got {height}x{width}")
    g_init, d_init = per_network_init(init)
    if num_classes:
        return (ConditionalGenerator(z_dim, channels, height, num_classes, init=g_init),
                ProjectionDiscriminator(channels, height, num_classes, spectral=spectral, init=d_init))
    return (dcgan_generator(z_dim, channels, height, init=g_init),
            dcgan_discriminator(channels, height, batchnorm=batchnorm, spectral=spectral, init=d_init))



def with_minibatch_discrimination(D, out_features=32):
    """D with minibatch-discrimination features (Salimans et al. 2016) ahead of its final
    linear score: how close each sample lies to the others in its batch, which makes a
    collapsed generator easy to spot. For the MLP and DCGAN discriminators built here."""
    if not isinstance(D, nn.Sequential):
        raise ValueError(f"minibatch discrimination is built for the MLP and DCGAN discriminators, not "
                         f"{type(D).__name__} (use nn.MinibatchDiscrimination in your own network)")
    layers = list(D)
    if isinstance(layers[-1], nn.Linear):  # MLP: ... -> Linear(hidden, 1)
        head = layers.pop()
        width = head.in_features
        trunk = layers
    elif len(layers) == 3 and isinstance(layers[1], nn.Conv2d) and isinstance(layers[2], nn.Flatten):
        features, head, _ = layers  # DCGAN: trunk -> Conv(width, 1, final) -> Flatten
        width = head.in_channels * head.kernel_size[0] * head.kernel_size[1]
        trunk = [features, nn.Flatten()]
    else:
        raise ValueError("minibatch discrimination needs a discriminator ending in Linear(., 1) or in "
                         "Conv2d(., 1, final) and Flatten")
    return nn.Sequential(*trunk, nn.MinibatchDiscrimination(width, out_features),
                         nn.Linear(width + out_features, 1))
