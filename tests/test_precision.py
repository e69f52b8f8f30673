"""training.precision: mixed precision trains, keeps the softmax and weights in float32, scales
float16's loss, and leaves the process's dtype policy as it was."""

from __future__ import annotations

import pytest

from train_support import TINY_SPEC, image_folder, invoke


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=8)


@pytest.mark.parametrize("precision, compute", [
    ("mixed_float16", "float16"),
    pytest.param("mixed_bfloat16", "bfloat16", marks=pytest.mark.slow),  # the same path, without loss scaling
])
def test_mixed_precision_trains_with_a_float32_softmax(tmp_path, photos, precision, compute):
    import keras
    import numpy as np

    from archbuilder.keras.model_files import open_model_file
    from archbuilder.training.instance_switch import gpu_present
    from archbuilder.training.precision import precision_policy

    result = invoke("train", TINY_SPEC, "--data", photos, "--epochs", "1", "--out", tmp_path / "run",
                    "--set", f"training.precision={precision}")
    assert result.exit_code == 0, result.output
    assert f"precision: {precision}" in result.output
    # The CPU switches for bfloat16 (batch norm, convolution biases, residual adds); none for float16.
    fused = next((line for line in result.output.splitlines() if line.startswith("fused kernels")), "")
    on_cpu_in_bfloat16 = compute == "bfloat16" and not gpu_present()
    assert ("batch norm" in fused and "conv bias" in fused and "add" in fused) == on_cpu_in_bfloat16, fused
    assert keras.mixed_precision.global_policy().name == "float32"  # put back after the run
    with precision_policy(precision):  # as `train --resume` loads the checkpoint
        model = open_model_file(tmp_path / "run" / "best.keras")
    conv = model.get_layer("conv1")
    assert conv.compute_dtype == compute and conv.variable_dtype == "float32"
    assert model.get_layer("fc").compute_dtype == "float32"  # the softmax
    probabilities = model.predict_on_batch(np.zeros((2, 32, 32, 3), "float32"))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)  # float32's rounding, not 16 bits'
    is_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (precision == "mixed_float16")  # float16 alone needs loss scaling
