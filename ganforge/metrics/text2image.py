"""How well a text-to-image model follows its captions: the class the classifier sees
against the class the caption names, and the measured attributes against the asked ones,
for combinations seen in training and for the held-out ones."""
import numpy as np

from ..data import captions, load_fashion_mnist
from .fashion_classifier import classify, load_classifier


def text_following_report(model, per_caption=50, seed=0, data_path=None):
    """{"seen": {...}, "unseen": {...}}, each with class_accuracy (the shipped classifier's
    agreement with the caption's class), brightness_corr and width_corr (the correlation
    between the asked level, -1/0/+1, and the measured attribute standardized within its
    class on real images) and attribute_accuracy (of the asked words, the share whose
    measured tercile is the one asked)."""
    images, labels = load_fashion_mnist(data_path, "train")
    cuts = captions.terciles(images, labels)
    real = captions.measure(images)
    centre = {name: np.array([values[labels == k].mean() for k in range(10)]) for name, values in real.items()}
    spread = {name: np.array([values[labels == k].std() for k in range(10)]) for name, values in real.items()}
    every = [(k, b, w) for k in range(10) for b in (-1, 0, 1) for w in (-1, 0, 1)]
    groups = {"seen": [c for c in every if c not in captions.HELD_OUT], "unseen": list(captions.HELD_OUT)}
    classifier = load_classifier()
    report = {}
    for group, combinations in groups.items():
        asked = np.repeat(np.array(combinations), per_caption, axis=0)
        texts = [captions.caption(*c) for c in asked]
        samples = model.sample(len(texts), text=texts, seed=seed)
        k = asked[:, 0]
        row = {"class_accuracy": float((classify(classifier, samples) == k).mean()), "captions": len(combinations)}
        measured = captions.measure(samples)
        got = captions.levels(samples, k, cuts)
        hits = []
        for i, name in ((1, "brightness"), (2, "width")):
            standardized = (measured[name] - centre[name][k]) / spread[name][k]
            row[f"{name}_corr"] = float(np.corrcoef(asked[:, i], standardized)[0, 1])
            hits.append(got[name][asked[:, i] != 0] == asked[:, i][asked[:, i] != 0])
        row["attribute_accuracy"] = float(np.concatenate(hits).mean())
        report[group] = row
    return report
