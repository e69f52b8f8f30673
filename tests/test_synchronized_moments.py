"""Synchronized batch norm's statistics in two passes over the replicas (training/synchronized_moments.py).

The bounds, float32 (u = 2^-24), for a channel of mean mu and spread sigma over n values a replica:
each replica's mean m_i is a sum of n values and a division, off by delta <= gamma_{n+1} mean|x|
(Higham, "Accuracy and Stability of Numerical Algorithms", (4.4); gamma_k = k u / (1 - k u)), and
mean|x| <= |mu| + sigma for normal samples (E|x - mu| = 0.8 sigma): delta / sigma <= gamma_{n+1} r
with r = |mu| / sigma + 1. Its
sum of squared deviations from the rounded m_i is the exact one plus n delta^2 (the cross term
sums to zero), each deviation and square rounded (2u) and summed (gamma_n): relative error
gamma_{n+2} + (delta / sigma)^2. The pairwise term n_i (m_i - mean)^2 has |m_i - mean| of about
sigma / sqrt(n) and is off by 2 n_i |m_i - mean| delta + n_i delta^2: relative to N sigma^2 at most
(2 / sqrt(n)) (delta / sigma) + (delta / sigma)^2 per replica, the few combining roundings
gamma_4 more. Keras's E[x^2] - E[x]^2 loses u (1 + mu^2 / sigma^2) of the variance instead (the
cancellation), which for mu / sigma = 1e4 is the whole of it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from train_support import REPO, TINY_SPEC, cli, cli_env, image_folder

U32 = 2.0**-24


def gamma(k: int) -> float:
    return k * U32 / (1 - k * U32)


def variance_bound(n: int, r: float) -> float:
    """The relative error bound of the module's docstring for n values a replica (2 replicas)."""
    ratio = gamma(n + 1) * r  # delta / sigma
    return gamma(n + 2) + gamma(4) + 2 * ((2 / math.sqrt(n)) * ratio + 2 * ratio**2)


@pytest.fixture(scope="module")
def two_replicas() -> dict:
    """tests/helpers/replica_moments.py: 2 logical CPUs (a process of its own), 128 values a channel
    a replica, channels of mean / spread 0 to 1e4."""
    result = subprocess.run([sys.executable, str(REPO / "tests" / "helpers" / "replica_moments.py")],
                            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_replicas_compute_the_whole_batch_s_statistics(two_replicas):
    figures = two_replicas
    assert figures["replicas_agree"]  # every replica normalizes by the same statistics
    ratios = [math.sqrt(c) + 1 for c in figures["conditioning"]]  # r: |mean| / spread + 1, 1 to ~1e4
    assert max(ratios) > 5e3
    bounds = [variance_bound(128, ratio) for ratio in ratios]  # 1.1e-5 where the mean is 0; 0.05 at 1e4
    assert all(error < bound for error, bound in zip(figures["variance_error"], bounds)), (bounds, figures)
    # A layer as `train` switches it takes them too: left to Keras's call with the two-pass
    # statistics (not counted as fused); the fused op on each replica's half was off by 6.5e-2.
    assert figures["layer_switched"] == [[], ["bn"]]
    assert all(error < bound for error, bound in zip(figures["layer_variance_error"], bounds)), (bounds, figures)
    # Channels first and a 2-D input (the statistics broadcast against the input on any axis)
    assert [(layout["shape"], layout["axis"]) for layout in figures["layouts"]] == [([16, 3, 4, 4], 1), ([16, 5], -1)]
    for layout in figures["layouts"]:
        assert layout["variance_error"] < variance_bound(layout["per_replica"], layout["mean_over_spread"] + 1), layout
    # The test has teeth: Keras's one-pass form on the same tensors is off by far more than the
    # bound (measured: the whole variance, 1.0, where E[x^2] - E[x]^2 rounds to 0 or below).
    assert figures["keras_variance_error"][-1] > 10 * bounds[-1], (bounds, figures)
    assert figures["mean_error"] < gamma(128 + 4), figures
    # d var / d x = 2 (x - mean) / N: the gradient through the all-reduce and every replica's mean,
    # off by 2 delta / N (and a few roundings of its own), against its largest value, over 2.5 sigma
    # for 256 normal values: delta / (2 sigma) + gamma_4 (the gradient's own roundings) bounds it. A gradient that missed the
    # replicas' means (2 (x - m_i) / N) would be off by ~sigma / sqrt(128) in every channel.
    gradient_bounds = [gamma(129) * ratio / 2 + gamma(4) for ratio in ratios]
    assert all(error < bound for error, bound in zip(figures["gradient_error"], gradient_bounds)), (gradient_bounds, figures)


def _ill_conditioned_batch(seed: int = 3) -> np.ndarray:
    # 8 images of 4x4, 3 channels of mean 1000, 40 and 0 and spread 0.1, 0.05 and 1
    rng = np.random.default_rng(seed)
    return (np.array([1000.0, 40.0, 0.0]) + np.array([0.1, 0.05, 1.0]) * rng.standard_normal((8, 4, 4, 3))).astype(np.float32)


def _batch_variance(layer, x: np.ndarray) -> np.ndarray:
    """The variance a training call of `layer` takes: with momentum 0 its moving variance becomes it."""
    layer(x, training=True)
    return np.asarray(layer.moving_variance)


def test_one_device_takes_two_pass_statistics_where_keras_takes_one_pass():
    import keras

    from archbuilder.training.synchronized_moments import use_exact_synchronized_moments

    x = _ill_conditioned_batch()
    exact = x.astype(np.float64).var(axis=(0, 1, 2))
    layers = []
    for switched in (True, False):
        inputs = keras.Input((4, 4, 3))
        model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.0, synchronized=True, name="bn")(inputs))
        if switched:
            assert use_exact_synchronized_moments(model) == ["bn"]
        layers.append(model.get_layer("bn"))
    ours, keras_form = (_batch_variance(layer, x) for layer in layers)
    # one device: tf.nn.moments, two passes over 128 values a channel (the bound above, one replica)
    ratios = np.abs(x.astype(np.float64).mean(axis=(0, 1, 2))) / np.sqrt(exact) + 1
    assert np.all(np.abs(ours - exact) / exact < [variance_bound(128, r) for r in ratios]), (ours, exact)
    # Keras takes E[x^2] - E[x]^2 under TensorFlow's default replica context too: at mean / spread
    # 1e4 the first channel's variance is lost (measured: 0 or several times the true 0.01)
    assert abs(keras_form[0] - exact[0]) / exact[0] > 0.1, (keras_form, exact)


def test_only_stock_synchronized_layers_are_switched_and_the_model_file_is_unchanged():
    import keras

    from archbuilder.training.synchronized_moments import use_exact_synchronized_moments

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.BatchNormalization(synchronized=True, name="synced")(inputs)
    x = keras.layers.BatchNormalization(name="local")(x)
    model = keras.Model(inputs, x)
    config = model.get_config()
    assert use_exact_synchronized_moments(model) == ["synced"]
    assert use_exact_synchronized_moments(model) == []  # once
    assert model.get_config() == config
    assert "_moments" not in vars(model.get_layer("local"))


def test_train_switches_them_under_a_strategy_and_says_so(tmp_path):
    """The `train` path itself (loop.py): tiny_train's four batch norms, 2 replicas (~20 s)."""
    run = tmp_path / "run"
    photos = image_folder(tmp_path / "images", per_class=4)
    result = cli("train", TINY_SPEC, "--data", photos, "--out", run, "--epochs", "1", "--distribute", "mirrored",
                 "--devices", "2", "--set", "defaults.batch_norm.synchronized=true", "--set", "training.batch_size=4")
    assert result.returncode == 0, result.stderr
    assert "synchronized batch norm: 4 layer(s), statistics over the 2 replicas combined exactly" in result.stderr, result.stderr
