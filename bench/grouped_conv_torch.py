"""The peer side of bench/grouped_conv.py's `--parts`: PyTorch's grouped 3x3 convolution, per part.

    .venv/bin/python bench/grouped_conv_torch.py [--batch 32] [--repeats 5] [--torch-malloc keep|default]

ResNeXt-50 32x4d's seven grouped-convolution shapes at 224x224 (timm's layout: the stride in the
3x3, padding 1 each side), channels-last float32 as bench/zoo_speed.py runs timm, on 2 threads:
milliseconds of the forward pass, the input gradient and the kernel gradient apart
(aten::convolution_backward with one output asked), the minimum of --repeats calls after one
warm-up, as `--parts` takes it.
Needs the `bench` extra (torch, CPU build). bench/RESULTS.md has the figures beside TensorFlow's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import malloc  # noqa: E402

# (input size, channels in = out, stride), ResNeXt-50 32x4d's conv2 of stages 1-4 (first block and the rest)
SHAPES = [(56, 128, 1), (56, 256, 2), (28, 256, 1), (28, 512, 2), (14, 512, 1), (14, 1024, 2), (7, 1024, 1)]
GROUPS = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-malloc", choices=sorted(malloc.SETTINGS), default=malloc.DEFAULT,
                        help="glibc malloc for this process: keep the memory it frees (default) or as "
                             "installed (bench/peers/malloc.py)")
    args = parser.parse_args()
    malloc.restart_with(args.torch_malloc)
    import torch

    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    channels_last = torch.channels_last
    print(f"torch {torch.__version__}, batch {args.batch}, minimum of {args.repeats} (ms), glibc malloc "
          f"{malloc.described(args.torch_malloc)}")
    for size, width, stride in SHAPES:
        x = torch.randn(args.batch, width, size, size, generator=generator).contiguous(memory_format=channels_last)
        w = (torch.randn(width, width // GROUPS, 3, 3, generator=generator) * 0.05).contiguous(memory_format=channels_last)
        y = torch.nn.functional.conv2d(x, w, None, stride, 1, 1, GROUPS)
        dy = torch.randn(y.shape, generator=generator).contiguous(memory_format=channels_last)

        def backward(mask):
            return torch.ops.aten.convolution_backward(dy, x, w, None, [stride, stride], [1, 1], [1, 1], False, [0, 0],
                                                       GROUPS, mask)

        parts = {"forward": lambda: torch.nn.functional.conv2d(x, w, None, stride, 1, 1, GROUPS),
                 "input_gradient": lambda: backward([True, False, False]),
                 "kernel_gradient": lambda: backward([False, True, False])}
        times = {name: [] for name in parts}
        with torch.no_grad():
            for call in parts.values():
                call()
            for _ in range(args.repeats):
                for name, call in parts.items():
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
        shown = " ".join(f"{name} {1000 * min(t):.1f}" for name, t in times.items())
        print(f"{size}x{size}x{width} stride {stride}: {shown}", flush=True)


if __name__ == "__main__":
    main()
