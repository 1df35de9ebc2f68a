"""Captions for Fashion-MNIST, written from what each image shows: its class, and two
attributes measured on its pixels, how bright the garment is and how wide it stands.
"a dark, wide ankle boot"; "a bright pullover"; "a narrow dress"; "a bag".

An attribute gets a word when the image lies in the lower or upper third of its class
(a dark sandal is dark for a sandal): terciles measured on the training set, so the same
word means the same thing in training and in evaluation. Words are whole tokens; the
vocabulary is fixed, so a model is built without seeing its data.
"""
import numpy as np

from .fashion_mnist import CLASSES

# the class names as a caption says them, one word or two
NOUNS = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
ATTRIBUTES = {"brightness": ("dark", "bright"), "width": ("narrow", "wide")}
PAD = "<pad>"
VOCABULARY = (PAD, "a", "an", *(w for pair in ATTRIBUTES.values() for w in pair),
              *dict.fromkeys(w for noun in NOUNS for w in noun.split()))
MAX_WORDS = 6  # "a dark, wide ankle boot" is the longest caption: 6 tokens
# (class, brightness level, width level) that text2image keeps out of training, so that
# evaluation can ask for combinations never seen: dark and wide for the even classes,
# bright and narrow for the odd ones
HELD_OUT = tuple((k, -1, 1) if k % 2 == 0 else (k, 1, -1) for k in range(10))

GARMENT = -0.8  # a pixel above this (in [-1, 1]) belongs to the garment, not the black background


def measure(images):
    """{"brightness", "width"} of each image (N, 1, H, W) in [-1, 1]: the garment's mean
    pixel value, and its mean width over the rows it occupies, as a fraction of the image's
    (the columns it spans would not do: most shoes span them all)."""
    images = np.asarray(images)[:, 0]
    garment = images > GARMENT
    pixels = np.maximum(garment.sum(axis=(1, 2)), 1)
    brightness = np.where(garment, images, 0).sum(axis=(1, 2)) / pixels
    width = pixels / np.maximum(garment.any(axis=2).sum(axis=1), 1) / images.shape[2]
    return {"brightness": brightness, "width": width}


def terciles(images, labels):
    """{attribute: (10, 2) array}: each class's lower and upper tercile of each attribute."""
    measured = measure(images)
    return {name: np.stack([np.quantile(values[labels == k], [1 / 3, 2 / 3]) for k in range(len(CLASSES))])
            for name, values in measured.items()}


def levels(images, labels, cuts):
    """{attribute: levels in -1, 0, +1}: below, between or above the class's terciles."""
    return {name: _level(values, cuts[name][labels]) for name, values in measure(images).items()}


def _level(values, cuts):
    return (values > cuts[:, 1]).astype(np.int64) - (values < cuts[:, 0]).astype(np.int64)


def captions_of(images, labels, cuts):
    """Each image's caption, from its label and its measured attribute levels."""
    measured = levels(images, labels, cuts)
    return [caption(k, b, w) for k, b, w in zip(labels, measured["brightness"], measured["width"])]


def caption(label, brightness=0, width=0):
    """The caption of a class with attribute levels (-1, 0, +1): "a dark, wide ankle boot"."""
    words = [ATTRIBUTES["brightness"][int(brightness > 0)]] if brightness else []
    words += [ATTRIBUTES["width"][int(width > 0)]] if width else []
    noun = NOUNS[label]
    article = "an" if (words[0] if words else noun)[0] in "aeiou" else "a"
    return f"{article} {', '.join(words)}{' ' if words else ''}{noun}"


def tokenize(text):
    """A caption as word indices, padded to MAX_WORDS; an unknown word is a one-line error
    that lists the vocabulary."""
    words = text.lower().replace(",", " ").split()
    unknown = [w for w in words if w not in VOCABULARY or w == PAD]
    if unknown:
        raise ValueError(f"unknown word{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
                         f"{text!r}: the vocabulary is {' '.join(VOCABULARY[1:])}")
    if not words:
        raise ValueError("the text is empty: describe a garment, for example 'a bright pullover'")
    if len(words) > MAX_WORDS:
        raise ValueError(f"{text!r} has {len(words)} words; captions have at most {MAX_WORDS}")
    return np.array([VOCABULARY.index(w) for w in words] + [0] * (MAX_WORDS - len(words)), dtype=np.int64)


def parse(text):
    """(class, brightness level, width level) a caption asks for, or a one-line error when
    it names no garment or two."""
    words = text.lower().replace(",", " ").split()
    tokenize(text)
    found = [k for k, noun in enumerate(NOUNS) if _contains(words, noun.split())]
    if len(found) != 1:
        raise ValueError(f"{text!r} must name one garment of: {', '.join(NOUNS)}")
    asked = {}
    for name, (low, high) in ATTRIBUTES.items():
        if low in words and high in words:
            raise ValueError(f"{text!r} asks for both {low} and {high}: choose one")
        asked[name] = 1 if high in words else -1 if low in words else 0
    return found[0], asked["brightness"], asked["width"]


def _contains(words, phrase):
    return any(words[i:i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1))
