"""Scores of an anomaly detector: AUROC, and the detection rates at a threshold."""
import numpy as np


def auroc(scores, anomalous):
    """Area under the ROC curve: the probability that a random anomaly scores above a
    random normal example (ties count one half), by the Mann-Whitney rank sum."""
    scores, anomalous = np.asarray(scores, dtype=np.float64), np.asarray(anomalous, dtype=bool)
    if scores.shape != anomalous.shape or scores.ndim != 1:
        raise ValueError(f"auroc takes one score and one label per example, got shapes {scores.shape} and "
                         f"{anomalous.shape}")
    positives, negatives = int(anomalous.sum()), int((~anomalous).sum())
    if not positives or not negatives:
        raise ValueError("AUROC needs both anomalous and normal examples")
    _, which, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # tied scores share their ranks' mean (1-based)
    rank_sum = mean_rank[which][anomalous].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def detection_report(model, images, anomalous, held_out_images, false_positive_rate=0.05, training_images=None):
    """AUROC of the model's score and of its parts on `images`, and the true- and
    false-positive rates of its flags at the threshold set on `held_out_images`
    (`training_images`: the normal images the run trained on, where its score needs them)."""
    threshold = model.threshold(held_out_images, false_positive_rate, training_images)  # first: it calibrates
    return report_of(model.anomaly_scores(images), anomalous, threshold, len(held_out_images))


def report_of(scores, anomalous, threshold, held_out):
    """detection_report from the scores ({name: one value per image}) already computed."""
    anomalous = np.asarray(anomalous, dtype=bool)
    flagged = scores["score"] > threshold
    rows = {name: {"auroc": auroc(values, anomalous)} for name, values in scores.items()}
    rows["score"].update(tpr=float(flagged[anomalous].mean()), fpr=float(flagged[~anomalous].mean()))
    return {"scores": rows, "threshold": threshold, "held_out": held_out}
