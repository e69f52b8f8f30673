"""3x3 convolutions by Winograd's minimal filtering, F(2x2, 3x3): the same sums with 2.25x fewer
products, for the shapes where that measured faster on the running CPU (winograd_choice.py).

The basic-block ResNets' training step is 3x3 convolutions run by oneDNN at this CPU's float32
arithmetic rate (bench/conv_ceiling.py: 93-112% of a 4096x4096 matrix product on the AVX-512
Zen 5), so only less arithmetic makes them faster. Lavin and Gray ("Fast Algorithms for
Convolutional Neural Networks", 2016) compute each 2x2 block of outputs from a 4x4 tile of the
input as Y = A^T [(G g G^T) * (B^T d B)] A: 16 products per input channel where the direct sum
takes 36, the rest additions in the transforms (B^T d B of every tile, A^T m A of every product
tile), which move 4x the input through memory. Summed over the input channels, the 16 elementwise
products become 16 matrix products [tiles, C] x [C, F]. Where the channel counts are large (the
products dominate) this pays: on the Zen 5 at batch 32, forward and both gradients of 14x14x256
-> 256 run 1.39x, 28x28x256 1.31x and 14x14x512 1.49x as fast as TensorFlow's oneDNN
convolutions, and whole training steps of ResNet-34 1.07x and ResNet-101 1.06x (bench/winograd.py,
bench/RESULTS.md): ResNet-34 trains 1.14x as fast as timm where it was at 1.10x. At 56x56x64
(0.75x) the transforms cost more than they save.

The gradients are the exact adjoints of the same linear maps (not Winograd's other algorithms):
with dM = A dY A^T per tile, the input gradient is the transposed input transform of dM U^T and
the kernel gradient G^T (V^T dM) G, V = B^T d B recomputed rather than kept (4x the input per
layer). The transforms are small XLA-compiled loops (one pass each over their tensors); the
products are TensorFlow's batched matrix products.

Rounding differs from the direct sum's: each result is the same sum of products, each product
term carrying at most C + 10 roundings (input channels plus the transforms'), but the transforms'
cancelling terms add rounding in proportion to the neighbouring values too, so the bound
(tests/test_winograd_conv.py, against the exact float64 sums) is Winograd's own, |G||g||G^T| and
|B^T||d||B| in place of |g| and |d|. On random values at the zoo's shapes the two ways differ by
1-3e-6 of the largest result (bench/winograd.py). GPUs' cuDNN picks Winograd kernels for such layers itself; this runs only on CPU,
in float32 (in bfloat16 the transforms' rounding would be bfloat16's).

The switch is made on layer *instances*, by giving them their own `convolution_op` (the hook
Keras's convolution layers call), never by changing their class: model files are those of stock
layers, and a model loaded for --resume is switched again.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import float32_layer, known_map, plain_weights
from archbuilder.training.tape_gradient import record_gradient, untaped

BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))  # input tile transform B^T, 4x4
G = ((1, 0, 0), (.5, .5, .5), (.5, -.5, .5), (0, 0, 1))  # kernel transform, 4x3
AT = ((1, 1, 1, 0), (0, 1, -1, -1))  # output tile transform A^T, 2x4
# The smallest channel counts timed (winograd_choice.py): transforms cost ~1/F of the products, and
# below 256 channels the zoo's shapes lost (56x56x64: 0.75-0.85x) or gained too little to show in a
# step (28x28x128: 1.02-1.12x a layer; ResNet-34's step 1.066x with them, 1.069x without), so
# timing them would cost first-step seconds for nothing.
MIN_CHANNELS = 256
# The largest output map timed. Each switched layer costs its first training step extra seconds
# beyond the one XLA compilation of each transform per shape (~0.85 s in all): its traced ops and
# the first runs of its transforms over tensors 4x the layer's activations, ~0.2 s a layer at
# 14x14x256 and ~0.5 s at Wide ResNet-50's 28x28x256 and 16x16x512, batch 32 (bench/RESULTS.md,
# eighth session, on a VM where memory a process touches first costs ~3 s a GB: most of it was
# that memory, more of it then since the recomputed V was still held from the forward pass);
# a 28x28 shape also takes ~3 s to time. Issue 21 holds a network's first step within 10 s of a
# later one, so larger maps are left to oneDNN (the zoo's 28x28 layer, Wide ResNet-50's, gains 1.31x).
MAX_MAP = 16


def _combine(coefficients, terms):
    """sum(c * t) over the nonzero coefficients: the transforms' entries are 0, +-1 and +-1/2."""
    total = None
    for c, term in zip(coefficients, terms):
        if c == 0:
            continue
        scaled = term if c == 1 else -term if c == -1 else c * term
        total = scaled if total is None else total + scaled
    return total


def _interleave_tiles(parts, axis: int):
    """Four [.., tiles, ..] tensors `parts[s]`, the entries s = 0..3 of overlapping tiles that start
    every 2 along `axis`, added into one axis of 2 * tiles + 2 positions (tile t, entry s at 2t + s)."""
    def woven(a, b):  # a at even positions, b at odd
        shape = tf.shape(a)
        stacked = tf.stack([a, b], axis=axis + 1)
        return tf.reshape(stacked, tf.concat([shape[:axis], [2 * shape[axis]], shape[axis + 1:]], 0))
    pad = [[0, 0]] * len(parts[0].shape)
    first = tf.pad(woven(parts[0], parts[1]), pad[:axis] + [[0, 2]] + pad[axis + 1:])
    second = tf.pad(woven(parts[2], parts[3]), pad[:axis] + [[2, 0]] + pad[axis + 1:])
    return first + second


@tf.function(jit_compile=True, autograph=False)
def input_tiles(x, pad: int):
    """[N, H, W, C] -> [16, N*h/2*w/2, C]: B^T d B of the 4x4 tiles, every 2 rows and columns, of x
    padded by `pad` (1: SAME, 0: VALID) on every side; h, w = H + 2 pad - 2, W + 2 pad - 2 (even)."""
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    height, width, channels = padded.shape[1] - 2, padded.shape[2] - 2, x.shape[3]
    rows = [padded[:, r:r + height:2] for r in range(4)]
    tiles = []
    for row in (_combine(k, rows) for k in BT):
        columns = [row[:, :, s:s + width:2] for s in range(4)]
        tiles += [_combine(k, columns) for k in BT]
    return tf.reshape(tf.stack(tiles), [16, -1, channels])


@tf.function(jit_compile=True, autograph=False)
def input_tiles_transposed(v, height: int, width: int, pad: int):
    """The adjoint of input_tiles: [16, P, C] -> [N, H, W, C] for outputs of `height` x `width`,
    overlapping tiles added."""
    channels = v.shape[-1]
    v = tf.reshape(v, [4, 4, -1, height // 2, width // 2, channels])
    rows = []
    for k in range(4):
        columns = [_combine([BT[l][s] for l in range(4)], [v[k, l] for l in range(4)]) for s in range(4)]
        rows.append(_interleave_tiles(columns, axis=2))
    full = _interleave_tiles([_combine([BT[k][r] for k in range(4)], rows) for r in range(4)], axis=1)
    return full[:, pad:height + 2 - pad, pad:width + 2 - pad]


@tf.function(jit_compile=True, autograph=False)
def output_tiles(m, height: int, width: int):
    """[16, P, F] -> [N, H, W, F]: A^T m A, each tile to its 2x2 block of outputs."""
    filters = m.shape[-1]
    m = tf.reshape(m, [4, 4, -1, height // 2, width // 2, filters])
    rows = [_combine(a, [m[k] for k in range(4)]) for a in AT]
    blocks = [[_combine(b, [row[l] for l in range(4)]) for b in AT] for row in rows]
    y = tf.stack([tf.stack(block, axis=3) for block in blocks], axis=2)  # [N, H/2, 2, W/2, 2, F]
    return tf.reshape(y, [-1, height, width, filters])


@tf.function(jit_compile=True, autograph=False)
def output_tiles_transposed(dy):
    """The adjoint of output_tiles: [N, H, W, F] -> [16, P, F], A dY A^T per tile."""
    height, width, filters = dy.shape[1:]
    blocks = tf.reshape(dy, [-1, height // 2, 2, width // 2, 2, filters])
    rows = [[blocks[:, :, a, :, b] for b in range(2)] for a in range(2)]
    tiles = []
    for k in range(4):
        row = [_combine([AT[a][k] for a in range(2)], [rows[a][b] for a in range(2)]) for b in range(2)]
        tiles += [_combine([AT[b][l] for b in range(2)], row) for l in range(4)]
    return tf.reshape(tf.stack(tiles), [16, -1, filters])


@tf.function(jit_compile=True, autograph=False)
def kernel_tiles(kernel):
    """[3, 3, C, F] -> [16, C, F]: G g G^T."""
    g = tf.constant(G, kernel.dtype)
    return tf.reshape(tf.einsum("ki,ijcf,lj->klcf", g, kernel, g), [16, *kernel.shape[2:]])


@tf.function(jit_compile=True, autograph=False)
def kernel_tiles_transposed(u):
    """The adjoint of kernel_tiles: [16, C, F] -> [3, 3, C, F], G^T u G."""
    g = tf.constant(G, u.dtype)
    return tf.einsum("ki,klcf,lj->ijcf", g, tf.reshape(u, [4, 4, *u.shape[1:]]), g)


def winograd_convolution(x, kernel, padding: str = "SAME"):
    """tf.nn.conv2d(x, kernel, 1, padding) for x [N, H, W, C] and a [3, 3, C, F] kernel, by F(2x2,
    3x3), with the adjoint gradients (see the module's docstring); the outputs' height and width
    must be even."""
    x, kernel = tf.convert_to_tensor(x), tf.convert_to_tensor(kernel)
    pad = {"SAME": 1, "VALID": 0}[padding]
    height, width = (size + 2 * pad - 2 for size in x.shape[1:3])
    if height % 2 or width % 2 or height < 2 or width < 2:
        raise ValueError(f"Winograd F(2x2, 3x3) here computes even heights and widths, not {height}x{width}")

    with untaped():
        u = kernel_tiles(kernel)
        y = output_tiles(tf.linalg.matmul(input_tiles(x, pad), u), height, width)

    def gradient(dy):
        dm = output_tiles_transposed(dy)
        dx = input_tiles_transposed(tf.linalg.matmul(dm, u, adjoint_b=True), height, width, pad)
        # V is recomputed, not kept from the forward pass: 4x the input, per layer. x being its only
        # operand, the executor would compute it as soon as x exists, in the forward pass, and hold
        # it until here (ResNet-152's 12 layers: 0.3 GiB more at the peak): it waits for dM.
        with tf.control_dependencies([dm]):
            v = input_tiles(x, pad)
        du = tf.linalg.matmul(v, dm, adjoint_a=True)
        return [dx, kernel_tiles_transposed(du)]

    record_gradient("Conv2D", [y], [x, kernel], gradient)
    return y


def candidate(layer) -> bool:
    """A stock channels-last Conv2D, 3x3, stride 1, SAME or VALID (PyTorch-style files pad with a
    ZeroPadding2D layer first), no dilation or groups, float32, with its own float kernel, at
    least MIN_CHANNELS channels in and out, whose known output map has an even height and width
    from 4 (smaller maps are cpu_kernels.py's) to MAX_MAP. Odd maps would need a padded row and
    column of tiles: (8/7)^2 = 1.31x the tile work at 7x7, where 7x7x512 -> 512 lost at every
    batch timed (0.89x at 8, 0.78-0.81x at 16, 0.95x at 32 on the Zen 5), so timing them would
    cost first-step seconds for nothing."""
    if type(layer) is not keras.layers.Conv2D or "convolution_op" in vars(layer) or not plain_weights(layer):
        return False
    if (layer.data_format != "channels_last" or tuple(layer.kernel_size) != (3, 3) or tuple(layer.strides) != (1, 1)
            or layer.padding not in ("same", "valid") or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1):
        return False
    shape = known_map(layer)
    if not float32_layer(layer) or layer.filters < MIN_CHANNELS or shape is None or shape[2] < MIN_CHANNELS:
        return False
    height, width = shape[:2]
    if layer.padding == "valid":
        height, width = height - 2, width - 2
    return height % 2 == width % 2 == 0 and 4 <= height <= MAX_MAP and 4 <= width <= MAX_MAP


def winograd_convolution_op(layer):
    """A `convolution_op` for candidate `layer` computing by F(2x2, 3x3) (see the module's docstring)."""
    padding = layer.padding.upper()  # Keras's 'same' / 'valid' are TensorFlow's SAME / VALID

    def convolution_op(inputs, kernel):
        return winograd_convolution(inputs, kernel, padding)

    convolution_op.kernel = "winograd"  # which one, for messages and tests
    return convolution_op

