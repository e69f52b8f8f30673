"""The harness that proves a spec equal to a reference Keras 3 network, weights and all.

The reference (a keras.applications network built with `weights=None`) gets seeded random
weights, batch-norm moving statistics included, and is saved with `model.save` as a user would
save it. The spec's model loads that file with `--weights` (mapping by structure) and must then
predict what the reference predicts on real photos from ../shared.

Tolerance: both sides compute in float32 (unit roundoff u = 2**-24 = 6e-8). The same graph on
the same TensorFlow gives bit-identical outputs here, but another CPU (AVX-512, oneDNN on by
default) or a graph that spells a layer differently (ZeroPadding2D + valid against `same`) may sum
each convolution's K <= 3*3*2048 products in another order. Blocked and pairwise summation keeps
that difference to ~u*log2(K) (~1e-6) relative per layer; batch norm with statistics that fit the
data keeps activations at unit scale, so the ~50-100 layers add their errors in quadrature
(~1e-5 at worst) instead of amplifying them, and the softmax turns logit errors into relative
errors of the same size. The Keras 2 vs Keras 3 comparison of test_weights_h5.py measures ~3e-6
for such differences. So 1e-5 relative, elementwise, on probabilities kept away from 0 and 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train_support import IMAGES
from tests.helpers.notebook_resnet import randomize_weights

TOLERANCE = 1e-5  # relative, elementwise; see the module docstring


def sign_photos(size: int, count: int = 8) -> np.ndarray:
    """`count` photos spread over the ten digits, resized to `size`x`size`, as float32 x / 255."""
    from PIL import Image

    paths = sorted(IMAGES.glob("*/*.JPG"))
    assert len(paths) >= count, f"the shared dataset is missing: {IMAGES}"
    chosen = paths[:: len(paths) // count][:count]
    return np.stack([
        np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR), dtype="float32") / 255.0
        for p in chosen
    ])


def saved_reference(model, folder: Path, images: np.ndarray, residual_gamma, seed: int = 0) -> tuple[Path, np.ndarray]:
    """Randomize `model`'s weights (seeded), save it as FOLDER/<name>.keras, return the path and its predictions."""
    randomize_weights(model, images, seed=seed, residual_gamma=residual_gamma)
    expected = np.asarray(model(images, training=False))
    path = folder / f"{model.name}.keras"
    model.save(path)
    return path, expected


def assert_predicts_as_reference(got, expected) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    # Predictions that are all alike, or saturated, would make the comparison prove little.
    assert expected.max() < 0.95 and expected.min() > 0.0
    assert (expected.std(axis=0) / expected.mean(axis=0)).mean() > 0.05  # they differ image to image
    assert len({int(i) for i in expected.argmax(axis=1)}) >= 3
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=0)
