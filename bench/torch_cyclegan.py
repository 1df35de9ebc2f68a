"""CycleGAN in PyTorch: the twin of ganforge/gan/models/cyclegan.py, layer for layer (so
that the state dicts share their keys), for the step benchmark (bench/cyclegan_step.py)
and the parity test (tests/test_torch_parity.py). Its step is ganforge's: generators
through frozen discriminators, then both discriminators on pooled fakes."""
import random

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


def resnet_generator(channels, width, blocks):
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width), nn.ReLU()]
    for c in (width, 2 * width):
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU()]
    layers += [ResidualBlock(4 * width) for _ in range(blocks)]
    for c in (4 * width, 2 * width):
        layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.InstanceNorm2d(c // 2), nn.ReLU()]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patch_discriminator(channels, width, strided_layers):
    layers = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    c = width
    for i in range(1, strided_layers + 1):
        out = width * min(2 ** i, 8)
        layers += [nn.Conv2d(c, out, 4, stride=2 if i < strided_layers else 1, padding=1), nn.InstanceNorm2d(out),
                   nn.LeakyReLU(0.2)]
        c = out
    layers += [nn.Conv2d(c, 1, 4, stride=1, padding=1)]
    return nn.Sequential(*layers)


class ImagePool:
    def __init__(self, size=50):
        self.size, self.images = size, []

    def query(self, images):
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif random.random() < 0.5:
                i = random.randrange(self.size)
                out.append(self.images[i])
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


def random_crop_flip(x, size):
    crops = []
    for image in x:
        top, left = random.randint(0, x.shape[2] - size), random.randint(0, x.shape[3] - size)
        crop = image[:, top:top + size, left:left + size]
        crops.append(crop.flip(-1) if random.random() < 0.5 else crop)
    return torch.stack(crops)


def step_fn(batch, resolution=64, channels=3, width=64, blocks=6, strided=3):
    """One CycleGAN training step on random images, as a function of nothing."""
    G_ab, G_ba = resnet_generator(channels, width, blocks), resnet_generator(channels, width, blocks)
    D_a, D_b = patch_discriminator(channels, width, strided), patch_discriminator(channels, width, strided)
    opt_g = torch.optim.Adam([*G_ab.parameters(), *G_ba.parameters()], 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*D_a.parameters(), *D_b.parameters()], 2e-4, betas=(0.5, 0.999))
    pool_a, pool_b = ImagePool(), ImagePool()
    load = resolution * 286 // 256 // 4 * 4
    images_a = torch.rand(batch, channels, load, load) * 2 - 1
    images_b = torch.rand(batch, channels, load, load) * 2 - 1

    def step():
        real_a, real_b = random_crop_flip(images_a, resolution), random_crop_flip(images_b, resolution)
        for net in (D_a, D_b):
            net.requires_grad_(False)
        fake_b, fake_a = G_ab(real_a), G_ba(real_b)
        loss_gan = ((D_b(fake_b) - 1) ** 2).mean() + ((D_a(fake_a) - 1) ** 2).mean()
        loss_cycle = F.l1_loss(G_ba(fake_b), real_a) + F.l1_loss(G_ab(fake_a), real_b)
        loss_identity = F.l1_loss(G_ab(real_b), real_b) + F.l1_loss(G_ba(real_a), real_a)
        loss_g = loss_gan + 10 * loss_cycle + 5 * loss_identity
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for net in (D_a, D_b):
            net.requires_grad_(True)
        pooled_a, pooled_b = pool_a.query(fake_a.detach()), pool_b.query(fake_b.detach())
        loss_d_a = 0.5 * ((D_a(real_a) - 1) ** 2).mean() + 0.5 * (D_a(pooled_a) ** 2).mean()
        loss_d_b = 0.5 * ((D_b(real_b) - 1) ** 2).mean() + 0.5 * (D_b(pooled_b) ** 2).mean()
        opt_d.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        opt_d.step()
    return step
