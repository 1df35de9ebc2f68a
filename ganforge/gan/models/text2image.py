"""Text-to-image at Fashion-MNIST's scale: GAN-INT-CLS (Reed et al. 2016) with a text
encoder learned along with the GAN.

Each training image carries a caption written from its class and two attributes measured
on its pixels ("a dark, wide ankle boot"; ganforge/data/captions.py). A caption enters
a network through a bag-of-words encoder (word embeddings, averaged, then a linear
layer): G and D each learn their own, as cgan's G and D each learn a label embedding.
G draws from [z, text]; D scores an image and a text together (a projection
discriminator). D is matching-aware: besides real images with their captions (real) and
generated images (fake), it sees real images with another image's caption, and must call
that pair fake too, so G cannot pass with a good garment that ignores the text.

Some class-and-attribute combinations are left out of training (`held_out_combinations`),
so that evaluation can ask for captions never seen: the words are known, their
combination is new.
"""
import numpy as np

from ... import functional as F
from ... import nn
from ...data.captions import VOCABULARY, caption, parse, tokenize
from ...tensor import Generator, Tensor
from ..losses import discriminator_loss
from ..nets import dcgan_features, dcgan_generator
from ..steps import discriminator_penalty
from .gan import GAN

PREVIEW_LEVELS = [(b, w) for b in (-1, 0, 1) for w in (-1, 0, 1)]  # a column per combination


class BagOfWords(nn.Module):
    """Word indices (N, L), 0 for padding -> (N, dim): the mean of the words' embeddings,
    then a linear layer and leaky ReLU. Word order is lost, which captions of an adjective
    or two and a noun can spare."""

    def __init__(self, vocabulary_size, dim, spectral=False):
        super().__init__()
        wrap = nn.spectral_norm if spectral else (lambda m: m)
        self.embed = nn.Embedding(vocabulary_size, dim)
        self.mix = wrap(nn.Linear(dim, dim))

    def forward(self, tokens):
        words = Tensor((tokens._data != 0).astype(np.float32))
        vectors = self.embed(tokens) * F.reshape(words, words.shape + (1,))
        mean = F.sum(vectors, axis=1) / F.reshape(F.sum(words, axis=1), (-1, 1))
        return F.leaky_relu(self.mix(mean), 0.2)


class TextGenerator(nn.Module):
    """[z, text] -> image: the DCGAN generator fed with z and the caption's encoding."""

    def __init__(self, z_dim, channels, resolution, vocabulary_size, text_dim=64, init="dcgan"):
        super().__init__()
        self.text = BagOfWords(vocabulary_size, text_dim)
        self.net = dcgan_generator(z_dim + text_dim, channels, resolution, init=init)

    def forward(self, z, tokens):
        t = F.reshape(self.text(tokens), (z.shape[0], -1, 1, 1))
        return self.net(F.concat([z, t], axis=1))


class TextDiscriminator(nn.Module):
    """(image, text) -> logit: psi(phi(x)) + <W text(t), phi(x)>, a projection discriminator
    with the caption's encoding where cgan's has the label's embedding."""

    def __init__(self, channels, resolution, vocabulary_size, text_dim=64, init="dcgan"):
        super().__init__()
        self.features, width, final = dcgan_features(channels, resolution, batchnorm=False, spectral=True, init=init)
        size = width * final * final
        self.head = nn.spectral_norm(nn.Linear(size, 1))
        self.text = BagOfWords(vocabulary_size, text_dim, spectral=True)
        self.project = nn.spectral_norm(nn.Linear(text_dim, size, bias=False))

    def forward(self, x, tokens):
        phi = F.flatten(self.features(x), 1)
        return self.head(phi) + F.sum(self.project(self.text(tokens)) * phi, axis=1, keepdims=True)


class Text2Image(GAN):
    name = "text2image"
    summary = "text-to-image: captions of class and attributes, GAN-INT-CLS's matching-aware D (sample --text)"
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    options = {**GAN.options, "z_dim": 100, "lr": 2e-4, "init": "dcgan", "text_dim": 64,
               "held_out_combinations": True}
    loss = "hinge"
    data_kind = "captioned"

    def generator_and_discriminator(self):
        if self.data.shape != (1, 28, 28):
            raise ValueError("text2image is built for Fashion-MNIST's captions (--data fashion-mnist)")
        dim, init = self.config["text_dim"], self.config["init"]
        return (TextGenerator(self.config["z_dim"], 1, 28, len(VOCABULARY), dim, init),
                TextDiscriminator(1, 28, len(VOCABULARY), dim, init))

    def condition(self, batch):
        return (batch["tokens"],)

    def discriminator_losses(self, batch, detach_fake=True):
        """GAN-INT-CLS's D loss: a real image with its caption is real; a generated image,
        and a real image with another image's caption, are fake (half weight each)."""
        G, D = self.nets["G"], self.nets["D"]
        real, tokens = batch["x"], batch["tokens"]
        wrong = Tensor(np.roll(tokens.numpy(), 1, axis=0), device=self.device)  # the next image's caption
        fake = G(self.z(len(real)), tokens)
        score_real = D(real, tokens)
        loss_fake = discriminator_loss(self.loss, score_real, D(fake.detach() if detach_fake else fake, tokens))
        loss_wrong = discriminator_loss(self.loss, score_real, D(real, wrong))
        loss_d = 0.5 * (loss_fake + loss_wrong)
        penalty = discriminator_penalty(self.config["penalty"], lambda x: D(x, tokens), real, fake,
                                        self.config["penalty_weight"], self.noise)
        return loss_d, penalty, fake, (tokens,)

    # --- drawing from text --------------------------------------------------------------------

    def tokens_of(self, texts):
        return Tensor(np.stack([tokenize(t) for t in texts]), device=self.device)

    def preview_size(self):
        return len(PREVIEW_LEVELS)

    def preview(self):
        """A row per class, a column per (brightness, width) request, one z per column."""
        texts = [caption(k, b, w) for k in range(10) for b, w in PREVIEW_LEVELS]
        z = Tensor(np.tile(self.fixed_z.numpy(), (10, 1, 1, 1)), device=self.device)
        return self.generate(z, self.tokens_of(texts)), len(PREVIEW_LEVELS)

    def sample(self, n, labels=None, seed=0, batch_size=500, text=None):
        """n images of `text` (one caption, or n); without text, the classes in turn with no
        attribute asked."""
        if labels is not None:
            raise ValueError("text2image draws from text: use --text 'a bright pullover', not --label")
        texts = [caption(k % 10) for k in range(n)] if text is None else [str(t) for t in np.broadcast_to(text, (n,))]
        for distinct in set(texts):
            parse(distinct)  # one garment, no contradiction, known words: or a one-line error
        z = self.z(n, Generator(seed, self.device))
        return self.generate(z, self.tokens_of(texts), batch_size=batch_size)

    def walk_condition(self, n):
        return (self.tokens_of([caption(k % 10) for k in range(n)]),)
