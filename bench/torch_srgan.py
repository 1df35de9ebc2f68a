"""SRGAN in PyTorch: the twin of ganforge/gan/models/srgan.py, layer for layer (so that the
state dicts share their keys), for the step benchmark (bench/in_turns.py srgan) and the
parity test (tests/test_torch_parity.py). Its step is ganforge's: D on real and upscaled
images, then G on content (MSE) + 1e-3 adversarial loss through a frozen D."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.PReLU(c),
                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class SRResNet(nn.Module):
    def __init__(self, channels=3, scale=4, width=64, blocks=16):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU(width))
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)],
                                  nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        upsample = []
        for _ in range(int(math.log2(scale))):
            upsample += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(width)]
        self.tail = nn.Sequential(*upsample, nn.Conv2d(width, channels, 9, padding=4), nn.Tanh())

    def forward(self, x):
        features = self.head(x)
        return self.tail(features + self.body(features))


def srgan_discriminator(channels, size, width=64):
    layers = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
    c = width
    for i in range(7):
        out, stride = width * 2 ** ((i + 1) // 2), 2 if i % 2 == 0 else 1
        layers += [nn.Conv2d(c, out, 3, stride=stride, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
        c = out
    for _ in range(4):
        size = (size + 1) // 2
    layers += [nn.Flatten(), nn.Linear(c * size * size, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1)]
    return nn.Sequential(*layers)


def step_fn(batch, size=96, scale=4, channels=3, blocks=16):
    """One SRGAN training step on a fixed batch of random high-resolution images and their
    downscales, as a function of nothing."""
    G, D = SRResNet(channels, scale, 64, blocks), srgan_discriminator(channels, size)
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.9, 0.999))
    hr = torch.rand(batch, channels, size, size) * 2 - 1
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True)
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def step():
        upscaled = G(lr)
        loss_d = (F.binary_cross_entropy_with_logits(D(hr), ones)
                  + F.binary_cross_entropy_with_logits(D(upscaled.detach()), zeros))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        loss_g = F.mse_loss(upscaled, hr) + 1e-3 * F.binary_cross_entropy_with_logits(D(upscaled), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
    return step
