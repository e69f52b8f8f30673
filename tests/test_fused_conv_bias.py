"""A Conv2D layer's bias as one BiasAdd in training (archbuilder/training/fused_conv_bias.py):
Keras's outputs and input and kernel gradients bit for bit, the bias gradients a sum within
float32's bound, a smaller traced graph, model files unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402

from archbuilder.training.fused_conv_bias import fusable, use_fused_conv_bias  # noqa: E402
from archbuilder.training.grouped_conv import switch_grouped_convolutions  # noqa: E402
from archbuilder.training.precision import precision_policy  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    gamma, named_outputs_and_gradients, switched_and_reloaded, switches_nothing_under, training_graph, training_graph_ops,
    twin,
)

SWITCHED = ["biased", "grouped", "strided_relu"]


def _model():
    inputs = keras.Input((9, 9, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", name="biased")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="strided_relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=4, name="grouped")(x)  # ConvNeXt's, ResNeXt's
    x = keras.layers.Conv2D(6, 1, use_bias=False, name="no_bias")(x)
    x = keras.layers.Conv2D(1, 1, name="one_filter")(x)  # Keras adds a one-value bias with tf.add
    return keras.Model(inputs, keras.layers.Flatten()(x))


def _pair():
    keras.utils.set_random_seed(0)
    stock = _model()
    for layer in stock.layers:  # biases far from their zero start, so that a dropped bias shows
        if getattr(layer, "use_bias", False):
            layer.bias.assign(np.linspace(-2, 2, layer.filters).astype("float32"))
    return stock, twin(stock)


def _bias_gradient_terms(model, x, upstream) -> dict:
    """Each switched layer's bias-gradient terms: the upstream gradient at its BiasAdd, one value a
    channel per example and position (Keras's model: the same values reach the switched model's
    BiasAdds, whose input and kernel gradients the test finds equal bit for bit)."""
    taps = keras.Model(model.inputs, [model.get_layer(name).output for name in SWITCHED] + [model.output])

    @tf.function
    def run(inputs):
        with tf.GradientTape() as tape:
            *maps, outputs = taps(inputs, training=True)
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * upstream)
        return maps, tape.gradient(loss, maps)

    maps, gradients = run(tf.constant(x))
    terms = {}
    for name, layer_outputs, gradient in zip(SWITCHED, maps, gradients):
        gradient = tf.cast(gradient, tf.float64).numpy()
        if name == "strided_relu":  # the gradient after ReLU's: zero where ReLU's output is
            gradient = np.where(tf.cast(layer_outputs, tf.float64).numpy() > 0, gradient, 0.0)
        terms[name] = gradient.reshape(-1, gradient.shape[-1])
    return terms


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_fused_conv_bias_computes_kerass_outputs_and_its_bias_gradients_as_sums(precision):
    """The same BiasAdd on the same values as Keras's own path: outputs, input gradient and kernel
    gradients the same bits (under `mixed_bfloat16`, Keras's bias cast as ours, and every gradient
    too: BiasAddGrad stays there). In float32 each bias gradient is a sum of its n upstream terms t
    in another order than Keras's BiasAddGrad (which oneDNN's layout pass fuses into the kernel
    gradient), so it is checked against the exact sum: any order of float32 additions is within
    gamma(n - 1) sum|t| of it, gamma(k) = k u / (1 - k u), u = 2**-24 (Higham, Accuracy and
    Stability of Numerical Algorithms, 4.2)."""
    with precision_policy(precision):
        stock, fused = _pair()
        assert sorted(use_fused_conv_bias(fused)) == SWITCHED
        rng = np.random.default_rng(1)
        x = rng.normal(size=(5, 9, 9, 4)).astype("float32")
        upstream = rng.normal(size=(5, 16)).astype("float32")
        terms = _bias_gradient_terms(stock, x, upstream) if precision == "float32" else {}
        summed = []
        for name, want, have in named_outputs_and_gradients(stock, fused, x, upstream):
            layer, _, weight = name.partition("/")
            if weight != "bias" or layer not in SWITCHED or precision != "float32":
                np.testing.assert_array_equal(have, want, err_msg=name)
                continue
            t = terms[layer]
            exact, bound = t.sum(axis=0), gamma(len(t) - 1) * np.abs(t).sum(axis=0)
            assert np.all(np.abs(have - exact) <= bound), (name, have - exact, bound)
            summed.append(layer)
        assert sorted(summed) == (SWITCHED if precision == "float32" else [])


def _fusable_bias_gradients(model) -> int:
    """The BiasAddGrad ops of `model`'s traced float32 step that read the tensor a
    Conv2DBackpropFilter reads as its upstream gradient: the pair oneDNN's layout pass fuses."""
    operations = training_graph(model, (9, 9, 4)).get_operations()
    upstreams = {op.inputs[2].ref() for op in operations if op.type == "Conv2DBackpropFilter"}
    return sum(op.inputs[0].ref() in upstreams for op in operations if op.type == "BiasAddGrad")


def test_the_bias_gradient_is_not_fused_into_the_kernel_gradient():
    """In Keras's step the biased layers' BiasAddGrad reads the upstream gradient its
    Conv2DBackpropFilter reads, which oneDNN's layout pass fuses into a slower kernel (see
    fused_conv_bias.py); the switched step's BiasAddGrad reads a view of it."""
    stock, fused = _pair()
    use_fused_conv_bias(fused)
    assert _fusable_bias_gradients(stock) == 2  # "biased" and "strided_relu"; "grouped" is no Conv2DBackpropFilter
    assert _fusable_bias_gradients(fused) == 0


def test_the_instances_convolution_op_still_runs():
    """train switches grouped convolutions' kernels after this switch (grouped_conv.py): the
    switched call must use the instance's own convolution_op, whenever it was set."""
    stock, fused = _pair()
    use_fused_conv_bias(fused)
    assert switch_grouped_convolutions(fused, {"grouped": "split"}) == ["grouped"]
    plain = twin(stock)
    switch_grouped_convolutions(plain, {"grouped": "split"})
    x = np.random.default_rng(2).normal(size=(3, 9, 9, 4)).astype("float32")
    np.testing.assert_array_equal(fused(x, training=True).numpy(), plain(x, training=True).numpy())
    assert fused.get_layer("grouped").convolution_op.kernel == "split"


def test_the_traced_training_step_is_smaller():
    stock, fused = _pair()
    use_fused_conv_bias(fused)

    stock_ops, fused_ops = (training_graph_ops(model, (9, 9, 4)) for model in (stock, fused))
    # Keras's reshape (and its shape constant) and squeeze forward, and the two reshapes of the
    # bias gradient (with their shape constants) backward, for each of the three switched layers.
    assert stock_ops - fused_ops >= 3 * 5, (stock_ops, fused_ops)


def test_only_stock_channels_last_biased_conv2d_layers_are_switched_and_files_stay_stock(tmp_path):
    stock, _ = _pair()
    assert not fusable(stock.get_layer("no_bias")) and not fusable(stock.get_layer("one_filter"))
    assert not fusable(keras.layers.Conv2D(4, 3, data_format="channels_first"))
    assert not fusable(keras.layers.DepthwiseConv2D(3))  # another call of Keras's
    lora = _model()
    lora.get_layer("biased").enable_lora(2)
    assert "biased" not in use_fused_conv_bias(lora)
    assert switches_nothing_under("mixed_float16", use_fused_conv_bias, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_conv_bias, tmp_path / "model.keras")
    assert all("call" not in vars(loaded.get_layer(name)) for name in SWITCHED)
    x = np.random.default_rng(3).normal(size=(3, 9, 9, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stock.predict(x, verbose=0))
