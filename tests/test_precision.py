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
    from archbuilder.cpu_info import cpuinfo
    from archbuilder.training.precision import NATIVE_BFLOAT16_FLAGS
    from archbuilder.training.precision import precision_policy

    result = invoke("train", TINY_SPEC, "--data", photos, "--epochs", "1", "--out", tmp_path / "run",
                    "--set", f"training.precision={precision}")
    assert result.exit_code == 0, result.output
    assert f"precision: {precision}" in result.output
    # The CPU switches for bfloat16 (batch norm, convolution biases, residual adds); none for float16.
    fused = next((line for line in result.output.splitlines() if line.startswith("fused kernels")), "")
    on_cpu_in_bfloat16 = compute == "bfloat16" and not gpu_present()
    assert ("batch norm" in fused and "conv bias" in fused and "add" in fused) == on_cpu_in_bfloat16, fused
    native = any(flag in cpuinfo()[1] for flag in NATIVE_BFLOAT16_FLAGS)
    assert ("no native bfloat16" in result.output) == (on_cpu_in_bfloat16 and not native), result.output
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


def test_training_in_bfloat16_on_a_cpu_without_it_says_so():
    """TensorFlow emulates bfloat16 on CPUs without AVX512_BF16 or AMX, where mixed_bfloat16
    trains slower than float32 (bench/RESULTS.md); the note says so there and nowhere else."""
    from archbuilder.cpu_info import cpuinfo
    from archbuilder.training.precision import emulated_bfloat16_note

    zen3 = ["avx", "avx2", "fma", "sse4_2"]  # an AVX2-only CPU's flags, as /proc/cpuinfo lists them
    assert "no native bfloat16" in emulated_bfloat16_note("mixed_bfloat16", zen3, gpu=False)
    for flags in (zen3 + ["avx512f", "avx512_bf16"], zen3 + ["amx_bf16", "amx_tile"]):  # Zen 4/5, Xeon with AMX
        assert emulated_bfloat16_note("mixed_bfloat16", flags, gpu=False) is None
    assert emulated_bfloat16_note("mixed_float16", zen3, gpu=False) is None
    assert emulated_bfloat16_note("mixed_bfloat16", zen3, gpu=True) is None  # the GPU computes it
    assert emulated_bfloat16_note("mixed_bfloat16", [], gpu=False) is None  # flags unknown: no guess
    flags = cpuinfo()[1]  # this machine's own, read from /proc/cpuinfo
    if flags:
        native = "avx512_bf16" in flags or "amx_bf16" in flags
        assert (emulated_bfloat16_note("mixed_bfloat16", flags, gpu=False) is None) == native
