"""The hand-written PyTorch peer of bench/ (bench/peers/torch_resnet50.py) is the documented network.

torch is a bench-only dependency (`pip install -e .[bench]`); without it these tests skip.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bench.peers.torch_resnet50 import parameter_counts, resnet50_notebook  # noqa: E402


def test_counts_are_the_documented_networks():
    # shared/reference/REFERENCE.md §1: 23,600,006 total, 23,546,886 trainable, 53,120 non-trainable;
    # PyTorch's parameters are the trainable ones, BatchNorm's running statistics the rest.
    assert parameter_counts(resnet50_notebook(6)) == {
        "total": 23_600_006, "trainable": 23_546_886, "non_trainable": 53_120}


def test_shapes_follow_the_notebooks_summary():
    model = resnet50_notebook(10).eval()
    x = torch.zeros(2, 3, 64, 64).to(memory_format=torch.channels_last)
    features = model[:-3](x)  # everything before the head (avg_pool, flatten, fc)
    # The notebook's summary: res5c_branch2c (None, 2, 2, 2048), fc6 (None, 6) here with 10 classes.
    assert tuple(features.shape) == (2, 2048, 2, 2)
    assert tuple(model(x).shape) == (2, 10)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in batch_norms} == {(1e-3, 0.01)}  # Keras's 1e-3 and 0.99
