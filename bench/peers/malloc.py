"""glibc malloc settings for the PyTorch peers' processes (bench/zoo_speed.py --timm-malloc,
bench/train_speed.py --torch-malloc).

PyTorch allocates each step's tensors on the CPU with glibc's malloc, which maps every block over
its mmap threshold (at most 32 MB) afresh and unmaps it when freed, so each step touches new
pages. On a virtual machine whose guest hands free memory back to its host at once (virtio
free-page reporting: on the Zen 5 of the sixth to ninth sessions
/sys/module/page_reporting/parameters/min_free_ms is 0), every such page then costs a fault in
the host too: ~3 s a GB there, against ~0.07 s for memory the host still backs (bench/RESULTS.md,
ninth session). timm's ResNet-50 at batch 32 ran 7-8 images/s as installed and 13.5-16 with `keep`.
TensorFlow keeps what it allocated (its BFC pool), so `cli.py train` never paid this.

`keep` tells glibc to keep the memory: no block mapped on its own (MALLOC_MMAP_MAX_=0) and nothing
handed back from the heap's top (MALLOC_TRIM_THRESHOLD_ huge), as jemalloc or tcmalloc would,
which PyTorch's CPU performance guide recommends. The peer then no longer pays for the VM, and
a ratio against it is the ratio of the two frameworks' kernels, not of the VM's memory handling.
`default` runs the peer as installed. Benches that time PyTorch in their own process
(bench/layer_norm.py, bench/grouped_conv_torch.py) start themselves again with the setting
(`restart_with`): glibc reads the variables only when a process starts.
"""

from __future__ import annotations

import os
import sys

SETTINGS = {"keep": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62)}, "default": {}}
DEFAULT = "keep"


def peer_environment(name: str, base: dict | None = None) -> dict:
    """The environment of a PyTorch peer's process: `base` (default: this process's environment)
    with setting `name` applied, and no MALLOC_ variable of the caller's left to blur it."""
    base = dict(os.environ if base is None else base)
    return {**{k: v for k, v in base.items() if not k.startswith("MALLOC_")}, **SETTINGS[name]}


def restart_with(name: str) -> None:
    """Run this script again, same arguments, in a process with setting `name`, unless this one
    already has exactly it (then return)."""
    if {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")} == SETTINGS[name]:
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], peer_environment(name))


def described(name: str) -> dict | str:
    """What a log's header says about setting `name`."""
    return SETTINGS[name] or "as installed"
