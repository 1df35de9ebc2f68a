"""PyTorch twins of the application models' training steps, for bench/in_turns.py:
text2image (ganforge/gan/models/text2image.py: GAN-INT-CLS with bag-of-words text
encoders, a matching-aware projection discriminator, hinge loss) and the encoder phase of
anomaly (models/anomaly.py): its GAN phase, dcgan28's step with D's transformation task
(a head C on D's trunk names which of 72 mirrorings, turns and shifts a real image had),
and its encoder phase (izi_f: E trained to invert a frozen G in pixels and D's features).
The networks are ganforge's layer for layer, so that the state dicts share their keys."""
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCABULARY, MAX_WORDS, Z_DIM, TEXT_DIM = 18, 6, 100, 64


def update(optimizer, loss):
    """zero_grad, backward, step (ganforge's gan/steps.update)."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def generator(z_dim):
    """ganforge's dcgan_generator at 28 px (dcgan28's G)."""
    return nn.Sequential(
        nn.ConvTranspose2d(z_dim, 256, 7, 1, 0, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 1, 4, 2, 1), nn.Tanh())


def trunk(batchnorm=True, spectral=False):
    """ganforge's dcgan_features at 28 px: images -> (N, 128, 7, 7)."""
    wrap = nn.utils.spectral_norm if spectral else (lambda m: m)
    return nn.Sequential(wrap(nn.Conv2d(1, 64, 4, 2, 1)), nn.LeakyReLU(0.2), wrap(nn.Conv2d(64, 128, 4, 2, 1)),
                         *([nn.BatchNorm2d(128)] if batchnorm else []), nn.LeakyReLU(0.2))


class BagOfWords(nn.Module):
    def __init__(self, spectral=False):
        super().__init__()
        wrap = nn.utils.spectral_norm if spectral else (lambda m: m)
        self.embed = nn.EmbeddingBag(VOCABULARY, TEXT_DIM, mode="mean", padding_idx=0)
        self.mix = wrap(nn.Linear(TEXT_DIM, TEXT_DIM))

    def forward(self, tokens):
        return F.leaky_relu(self.mix(self.embed(tokens)), 0.2)


class TextGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.text = BagOfWords()
        self.net = generator(Z_DIM + TEXT_DIM)

    def forward(self, z, tokens):
        return self.net(torch.cat([z, self.text(tokens)[:, :, None, None]], 1))


class TextDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = trunk(batchnorm=False, spectral=True)
        self.head = nn.utils.spectral_norm(nn.Linear(128 * 7 * 7, 1))
        self.text = BagOfWords(spectral=True)
        self.project = nn.utils.spectral_norm(nn.Linear(TEXT_DIM, 128 * 7 * 7, bias=False))

    def forward(self, x, tokens):
        phi = self.features(x).flatten(1)
        return self.head(phi) + (self.project(self.text(tokens)) * phi).sum(1, keepdim=True)


def text2image_step_fn(batch):
    """One text2image step on a fixed batch: D's matching-aware hinge loss (real with its
    caption; generated, and real with the next image's caption, half weight each), then
    G's hinge loss through D with D's weights left out of the backward."""
    G, D = TextGenerator(), TextDiscriminator()
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 1, 28, 28) * 2 - 1
    tokens = torch.randint(1, VOCABULARY, (batch, MAX_WORDS))
    tokens[:, 4:] = 0  # padding, as short captions have
    wrong = tokens.roll(1, 0)

    def step():
        fake = G(torch.randn(batch, Z_DIM, 1, 1), tokens)
        score_real = D(real, tokens)
        loss_fake = F.relu(1 - score_real).mean() + F.relu(1 + D(fake.detach(), tokens)).mean()
        loss_wrong = F.relu(1 - score_real).mean() + F.relu(1 + D(real, wrong)).mean()
        loss_d = 0.5 * (loss_fake + loss_wrong)
        update(opt_d, loss_d)
        D.requires_grad_(False)
        loss_g = -D(fake, tokens).mean()
        update(opt_g, loss_g)
        D.requires_grad_(True)
        return loss_d.item(), loss_g.item()
    return step


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = trunk(batchnorm=False)
        self.head = nn.Conv2d(128, Z_DIM, 7)

    def forward(self, x):
        return self.head(self.trunk(x))


def anomaly_encoder_step_fn(batch, kappa=1.0):
    """One step of anomaly's encoder phase on a fixed batch: G and D frozen in eval mode,
    E trained on the pixel residual of G(E(x)) plus kappa times D's trunk-feature residual."""
    G, D, E = generator(Z_DIM).eval(), trunk().eval(), Encoder()
    G.requires_grad_(False)
    D.requires_grad_(False)
    opt_e = torch.optim.Adam(E.parameters(), 2e-4, betas=(0.5, 0.999))
    x = torch.rand(batch, 1, 28, 28) * 2 - 1

    def step():
        x_back = G(E(x))
        loss_pixels = ((x_back - x) ** 2).mean()
        loss_features = ((D(x_back).flatten(1) - D(x).flatten(1)) ** 2).mean()
        update(opt_e, loss_pixels + kappa * loss_features)
        return loss_pixels.item(), loss_features.item()
    return step


def transformed(images, choices, step=5):
    """Each image under its transformation (anomaly.py's geometric_transformations order:
    mirrored, quarter turns, then a shift of -step, 0 or step pixels along each axis,
    black coming in)."""
    shifts = [(dy, dx) for dy in (0, -step, step) for dx in (0, -step, step)]
    out = []
    for image, choice in zip(images, choices.tolist()):
        mirrored, turns, (dy, dx) = choice // 36, choice // 9 % 4, shifts[choice % 9]
        x = torch.rot90(image.flip(-1) if mirrored else image, turns, (1, 2))
        shifted = torch.full_like(x, -1.0)
        h, w = x.shape[1:]
        shifted[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        out.append(shifted)
    return torch.stack(out)


def anomaly_gan_step_fn(batch, count=72):
    """One step of anomaly's GAN phase on a fixed batch: dcgan28's D update with the
    transformation task's cross-entropy added (C's head on D's trunk, one Adam for both),
    then G's non-saturating update."""
    G, trunk_d = generator(Z_DIM), trunk()
    D, C = nn.Sequential(trunk_d, nn.Conv2d(128, 1, 7), nn.Flatten()), nn.Sequential(nn.Conv2d(128, count, 7),
                                                                                   nn.Flatten())
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*D.parameters(), *C.parameters()], 2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 1, 28, 28) * 2 - 1
    bce = nn.BCEWithLogitsLoss()

    def step():
        fake = G(torch.randn(batch, Z_DIM, 1, 1))
        score_real, score_fake = D(real), D(fake.detach())
        loss_d = bce(score_real, torch.ones_like(score_real)) + bce(score_fake, torch.zeros_like(score_fake))
        choices = torch.randint(0, count, (batch,))
        loss_t = F.cross_entropy(C(trunk_d(transformed(real, choices))), choices)
        update(opt_d, loss_d + loss_t)
        D.requires_grad_(False)
        score = D(fake)
        loss_g = bce(score, torch.ones_like(score))
        update(opt_g, loss_g)
        D.requires_grad_(True)
        return loss_d.item(), loss_g.item()
    return step
