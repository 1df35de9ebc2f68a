"""How well a CycleGAN translates on fashion-edges: each direction's translations of the
test set against the true pairs held back from training (L1 and PSNR), and for
edges -> garment whether the garment keeps its class (ganforge's Fashion-MNIST classifier).
The identity mapping (output = input) is the floor every row is read against."""
import numpy as np

from ..data import load_fashion_edges
from .fashion_classifier import classify, load_classifier
from .similarity import mean_absolute_error, psnr


def translation_scores(translate, n=10000, data_path=None):
    """{"edges -> garment": {...}, "garment -> edges": {...}} for `translate(images,
    direction)`; direction "ab" is edges -> garment (domain A is the edge maps)."""
    edges, garments, labels = load_fashion_edges(data_path, "test")
    edges, garments, labels = edges[:n], garments[:n], labels[:n]
    to_garments, to_edges = translate(edges, "ab"), translate(garments, "ba")
    classifier = load_classifier()
    return {"edges -> garment": {"l1": mean_absolute_error(to_garments, garments), "psnr": psnr(to_garments, garments),
                                 "class_accuracy": float((classify(classifier, to_garments) == labels).mean())},
            "garment -> edges": {"l1": mean_absolute_error(to_edges, edges), "psnr": psnr(to_edges, edges)}}


def identity_translation(images, direction):
    """The floor: every image left as it is."""
    return np.asarray(images)
