"""training.batch_norm_recompute_batches: BatchNorm's moving statistics recomputed at each epoch's
end from a seeded sample of training images (training/callbacks/batch_norm_recompute.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train_support import TINY_SPEC, cli, image_folder, invoke


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=30)


def _first_batch_norm_input_statistics(model, x: np.ndarray, batches: int, batch_size: int, seed: int):
    """The definition, computed independently: bn_conv1's input is conv1's output, which no other
    BatchNorm precedes, so it is the same in training and inference mode. Per batch of the seeded
    sample: the mean and (biased, as Keras's moments) variance per channel; then their averages."""
    import keras

    conv = keras.Model(model.inputs, model.get_layer("bn_conv1").input)
    order = np.random.default_rng(seed).permutation(len(x))[: batches * batch_size]
    means, variances = [], []
    for start in range(0, len(order), batch_size):
        out = np.asarray(conv.predict_on_batch(x[order[start:start + batch_size]].astype("float32") / 255.0), "float64")
        means.append(out.mean(axis=(0, 1, 2)))
        variances.append(out.var(axis=(0, 1, 2)))
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def test_moving_statistics_become_the_sample_batches_averages_and_momentum_is_kept(tmp_path, photos):
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.training.prepare import RunData

    run = tmp_path / "run"
    result = invoke("train", TINY_SPEC, "--data", photos, "--epochs", "1", "--out", run,
                    "--set", "training.batch_norm_recompute_batches=2")
    assert result.exit_code == 0, result.output
    model = open_model_file(run / "best.keras")
    layer = model.get_layer("bn_conv1")
    assert layer.momentum == 0.99  # the model's own momentum, restored after the recomputation
    data = RunData(json.loads((run / "run.json").read_text()), (32, 32, 3))
    mean, variance = _first_batch_norm_input_statistics(model, data.train.x, batches=2, batch_size=16, seed=0)
    # float32 channel sums over 16 x 16 x 16 = 4096 values: relative error at most 4096 * 2**-24
    # ≈ 2.4e-4 (worst case); the kernels of predict and of the training-mode call may sum differently.
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=3e-4, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=3e-4, atol=1e-6)
    # Without the option, one epoch (6 steps at momentum 0.99) leaves ~94% of the starting values
    # (0 and 1) in the moving averages, far outside these tolerances.


def test_a_bad_value_is_refused_where_it_is():
    from archbuilder.errors import SpecError
    from archbuilder.plan.validate import load_checked_spec

    with pytest.raises(SpecError) as caught:
        load_checked_spec(TINY_SPEC, ["training.batch_norm_recompute_batches=-1"])
    assert "training.batch_norm_recompute_batches" in str(caught.value)
    assert "greater than or equal to 0" in str(caught.value)
    assert load_checked_spec(TINY_SPEC, ["training.batch_norm_recompute_batches=4"]).spec.training.batch_norm_recompute_batches == 4


@pytest.mark.slow  # a real process importing TensorFlow with two logical CPUs: ~15 s
def test_distributed_training_with_it_is_refused_before_anything_is_written(tmp_path, photos):
    run = tmp_path / "run"
    result = cli("train", TINY_SPEC, "--data", photos, "--out", run, "--distribute", "mirrored", "--devices", "2",
                 "--set", "training.batch_norm_recompute_batches=2")
    assert result.returncode == 2, result.stderr
    assert "training.batch_norm_recompute_batches: 2 applies to single-device training" in result.stderr
    assert "Traceback" not in result.stderr
    assert not run.exists()
