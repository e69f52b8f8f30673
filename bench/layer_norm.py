"""Layer norm over the last axis, forward and both gradients: the fused layer norm `train` uses
(archbuilder/training/fused_layer_norm.py) against Keras's ops, and PyTorch's if installed.

    .venv/bin/python bench/layer_norm.py [--shape 32,197,768] [--repeats 9] [--torch-malloc keep|default]

Each kernel runs `sum(layer_norm(x) * upstream)` and its gradients for x, gamma and beta inside a
tf.function (PyTorch: nn.LayerNorm, backward), interleaved, median of the repeats after one
warm-up. Shapes: 32,197,768 is ViT-B/16's at batch 32, 32,56,56,96 ConvNeXt-T's first stage.
Prints milliseconds per call and each kernel's largest difference from Keras's (relative to the
largest value). bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.runtime import configure_tensorflow_environment  # noqa: E402

configure_tensorflow_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_layer_norm import fused_layer_norm  # noqa: E402
from bench.peers import malloc  # noqa: E402

EPSILON = 1e-6


def keras_ops(x, gamma, beta):
    """Keras 3's layer norm (keras/src/ops/nn.py `_layer_normalization`) in TensorFlow ops."""
    mean, variance = tf.nn.moments(x, [-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + EPSILON) * gamma + beta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,197,768")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--torch-malloc", choices=sorted(malloc.SETTINGS), default=malloc.DEFAULT,
                        help="glibc malloc for this process: keep the memory it frees (default) or as "
                             "installed (bench/peers/malloc.py)")
    args = parser.parse_args()
    malloc.restart_with(args.torch_malloc)
    shape = [int(size) for size in args.shape.split(",")]
    rng = np.random.default_rng(0)
    x_np = (3 + 2 * rng.normal(size=shape)).astype("float32")
    upstream_np = rng.normal(size=shape).astype("float32")
    gamma_np, beta_np = rng.uniform(0.5, 2, shape[-1]).astype("float32"), rng.uniform(-1, 1, shape[-1]).astype("float32")
    x, upstream, gamma, beta = map(tf.constant, (x_np, upstream_np, gamma_np, beta_np))

    def step_of(norm):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch([x, gamma, beta])
                loss = tf.reduce_sum(norm(x, gamma, beta) * upstream)
            return tape.gradient(loss, [x, gamma, beta])
        return lambda: [t.numpy() for t in step()]

    kernels = {"keras ops": step_of(keras_ops),
               "fused (train)": step_of(lambda x, gamma, beta: fused_layer_norm(x, gamma, beta, EPSILON))}
    try:
        import torch

        torch.set_num_threads(tf.config.threading.get_intra_op_parallelism_threads() or 2)
        norm = torch.nn.LayerNorm(shape[-1], eps=EPSILON)
        with torch.no_grad():
            norm.weight.copy_(torch.from_numpy(gamma_np))
            norm.bias.copy_(torch.from_numpy(beta_np))
        tx, tup = torch.from_numpy(x_np).requires_grad_(), torch.from_numpy(upstream_np)

        def torch_step():
            tx.grad = norm.weight.grad = norm.bias.grad = None
            (norm(tx) * tup).sum().backward()
            return [tx.grad.numpy(), norm.weight.grad.numpy(), norm.bias.grad.numpy()]
        kernels[f"PyTorch {torch.__version__}"] = torch_step
    except ImportError:
        pass
    reference = kernels["keras ops"]()
    for name, kernel in kernels.items():
        differences = [float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(reference, kernel())]
        print(f"{name}: largest difference from Keras's (dx, dgamma, dbeta): {['%.1e' % d for d in differences]}")
    times = {name: [] for name in kernels}
    for _ in range(args.repeats):
        for name, kernel in kernels.items():
            start = time.perf_counter()
            kernel()
            times[name].append(time.perf_counter() - start)
    for name in kernels:
        print(f"{name}: {statistics.median(times[name]) * 1e3:.1f} ms (forward and gradients, {args.shape}; "
              f"glibc malloc {malloc.described(args.torch_malloc)})")


if __name__ == "__main__":
    main()
