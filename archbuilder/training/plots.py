"""PNG plots of a run: loss and accuracy per epoch, and a confusion matrix. Written atomically."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from archbuilder.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation"), ("test_", "test")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None and v == v for v in values):
                axis.plot(epochs, [np.nan if v is None else v for v in values], marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def plot_confusion(confusion: np.ndarray, class_names: tuple[str, ...], path: Path, title: str) -> None:
    plt = _pyplot()
    size = max(4, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=90 if len(class_names) > 12 else 0)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    threshold = confusion.max() / 2 if confusion.size else 0
    for (i, j), value in np.ndenumerate(confusion):
        if value:
            axis.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black", fontsize=8)
    axis.set_title("\n".join(textwrap.fill(line, 60) for line in title.splitlines()), fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
