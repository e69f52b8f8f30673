"""Static inference for one primitive layer: output shape, parameters and MACs, without TensorFlow.

Shapes exclude the batch axis and are channels-last: (height, width, channels) for images,
(features,) after flatten or global pooling. Parameter counts follow Keras exactly (a test builds
every shipped spec and compares layer by layer). MACs count the multiply-accumulates of
convolutions and dense layers, as in REFERENCE.md §2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archbuilder.spec.layers import (
    ActivationLayer, AddLayer, AveragePoolLayer, BatchNormLayer, ConvLayer, DenseLayer, FlattenLayer,
    GlobalAveragePoolLayer, MaxPoolLayer, ZeroPaddingLayer, pair,
)

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A layer cannot take its input. `collapsed` marks a spatial size that fell below 1."""

    def __init__(self, message: str, collapsed: bool = False):
        super().__init__(message)
        self.collapsed = collapsed


@dataclass(frozen=True)
class LayerStats:
    out_shape: Shape
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


def describe(layer) -> str:
    """A short human description used in messages: `conv 7x7/2 'conv1'`."""
    text = layer.type
    if isinstance(layer, ConvLayer):
        kh, kw = pair(layer.kernel)
        sh, _ = pair(layer.stride)
        text = f"conv {kh}x{kw}" + (f"/{sh}" if sh != 1 else "")
    elif isinstance(layer, (MaxPoolLayer, AveragePoolLayer)):
        ph, pw = pair(layer.pool)
        text = f"{layer.type} {ph}x{pw}"
    return text + (f" '{layer.name}'" if layer.name else "")


def infer(layer, inputs: list[Shape], *, use_bias_default: bool, classes: int | None) -> LayerStats:
    """Dispatch on the layer's type."""
    try:
        rule = _RULES[type(layer)]
    except KeyError:  # pragma: no cover - every layer model has a rule; a test checks it
        raise ShapeError(f"no shape rule for layer type '{layer.type}'") from None
    return rule(layer, inputs, use_bias_default, classes)


def _image(layer, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ShapeError(f"{describe(layer)} needs an image-shaped input (height, width, channels); received shape {shape}")
    return shape


def _window(layer, size: int, window: int, stride: int, padding: str, axis: str, shape: Shape) -> int:
    if padding == "same":
        return -(-size // stride)  # ceil in integers: sizes may exceed a float's range
    out = (size - window) // stride + 1
    if out < 1:
        raise ShapeError(
            f"{describe(layer)} shrinks the {axis} from {size} to {max(out, 0)} "
            f"(window {window}, input shape {shape})",
            collapsed=True,
        )
    return out


def _spatial(layer, shape: Shape, window, stride, padding) -> tuple[int, int]:
    (h, w, _), (kh, kw), (sh, sw) = shape, pair(window), pair(stride)
    return (
        _window(layer, h, kh, sh, padding, "height", shape),
        _window(layer, w, kw, sw, padding, "width", shape),
    )


def _single(layer, inputs: list[Shape]) -> Shape:
    if len(inputs) != 1:
        raise ShapeError(f"{describe(layer)} takes one input, got {len(inputs)}")
    return inputs[0]


def _zero_padding(layer: ZeroPaddingLayer, inputs, _bias, _classes) -> LayerStats:
    h, w, c = _image(layer, _single(layer, inputs))
    ph, pw = pair(layer.padding)
    return LayerStats((h + 2 * ph, w + 2 * pw, c))


def _conv(layer: ConvLayer, inputs, use_bias_default, _classes) -> LayerStats:
    shape = _image(layer, _single(layer, inputs))
    oh, ow = _spatial(layer, shape, layer.kernel, layer.stride, layer.padding)
    kh, kw = pair(layer.kernel)
    cin, cout = shape[2], layer.filters
    use_bias = use_bias_default if layer.use_bias is None else layer.use_bias
    weights = kh * kw * cin * cout
    return LayerStats((oh, ow, cout), trainable=weights + (cout if use_bias else 0), macs=oh * ow * weights)


def _batch_norm(layer: BatchNormLayer, inputs, _bias, _classes) -> LayerStats:
    shape = _single(layer, inputs)
    channels = shape[-1]
    # gamma and beta train; the moving mean and variance do not.
    return LayerStats(shape, trainable=2 * channels, non_trainable=2 * channels)


def _passthrough(layer, inputs, _bias, _classes) -> LayerStats:
    return LayerStats(_single(layer, inputs))


def _pool(layer, inputs, _bias, _classes) -> LayerStats:
    shape = _image(layer, _single(layer, inputs))
    stride = layer.stride if layer.stride is not None else layer.pool
    oh, ow = _spatial(layer, shape, layer.pool, stride, layer.padding)
    return LayerStats((oh, ow, shape[2]))


def _global_average_pool(layer, inputs, _bias, _classes) -> LayerStats:
    return LayerStats((_image(layer, _single(layer, inputs))[2],))


def _flatten(layer, inputs, _bias, _classes) -> LayerStats:
    return LayerStats((math.prod(_single(layer, inputs)),))


def _dense(layer: DenseLayer, inputs, _bias, classes) -> LayerStats:
    shape = _single(layer, inputs)
    units = classes if layer.units == "classes" else layer.units
    if units is None:
        raise ShapeError("dense units: classes, but the spec sets no 'classes'")
    # Like Keras, a dense layer on a higher-rank input acts on the last axis.
    positions = math.prod(shape[:-1])
    weights = shape[-1] * units
    return LayerStats(
        shape[:-1] + (units,), trainable=weights + (units if layer.use_bias else 0), macs=positions * weights
    )


def _add(layer: AddLayer, inputs, _bias, _classes) -> LayerStats:
    if len(inputs) < 2:
        raise ShapeError(f"add takes two or more inputs, got {len(inputs)}")
    if any(shape != inputs[0] for shape in inputs[1:]):
        raise ShapeError("add needs inputs of one shape; received " + " and ".join(_fmt(s) for s in inputs))
    return LayerStats(inputs[0])


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


format_shape = _fmt

_RULES = {
    ZeroPaddingLayer: _zero_padding,
    ConvLayer: _conv,
    BatchNormLayer: _batch_norm,
    ActivationLayer: _passthrough,
    MaxPoolLayer: _pool,
    AveragePoolLayer: _pool,
    GlobalAveragePoolLayer: _global_average_pool,
    FlattenLayer: _flatten,
    DenseLayer: _dense,
    AddLayer: _add,
}
