"""bench/zoo_speed.py's peers (bench/peers/timm_zoo.py): a timm name for every zoo file, and timm's
networks built here without torchvision, with the parameter counts the zoo's references publish.

timm and torch are bench-only (`pip install -e .[bench]`); without timm the last test skips."""

from __future__ import annotations

import importlib.util
import json
import mmap
import subprocess
import sys

import pytest

from test_zoo import GOLDEN, ZOO
from train_support import REPO

from bench.peers.timm_zoo import TIMM_NAMES


def test_every_zoo_file_has_its_timm_network():
    assert set(TIMM_NAMES) == {path.stem for path in ZOO.glob("*.yaml")}
    # a note says what differs wherever the timm model is not the same network
    assert all(isinstance(note, str) for _, note in TIMM_NAMES.values())


def test_an_unknown_network_is_refused():
    result = subprocess.run([sys.executable, "bench/zoo_speed.py", "--networks", "resnet50,lenet"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no zoo file or timm name for lenet" in result.stderr and "Traceback" not in result.stderr


_COUNT = """
import json, sys
sys.path.insert(0, ".")
from bench.peers.timm_zoo import create_timm_model
names = json.loads(sys.argv[1])
counts = {name: sum(p.numel() for p in create_timm_model(name, 1000).parameters()) for name in names}
tv = sys.modules.get("torchvision")
print(json.dumps({"counts": counts, "torchvision_file": getattr(tv, "__file__", None)}))
"""


def test_timm_builds_the_same_networks_without_torchvision():
    if importlib.util.find_spec("timm") is None:  # not `import timm`: that needs torchvision
        pytest.skip("timm is not installed (the bench extra)")
    # Zoo files whose timm model is the same network, with their published trainable counts
    # (each zoo file's reference: section, via tests/test_zoo.py's GOLDEN): PyTorch's parameters
    # are the trainable weights.
    same = {TIMM_NAMES[g.path.stem][0]: g.reference.trainable_params for g in GOLDEN
            if g.path.parent == ZOO and not g.overrides and not TIMM_NAMES[g.path.stem][1]}
    assert {"convnext_tiny", "resnext50_32x4d", "efficientnet_b0", "seresnet50", "legacy_xception"} <= set(same)
    result = subprocess.run([sys.executable, "-c", _COUNT, json.dumps(sorted(same))], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["counts"] == same
    assert report["torchvision_file"] is None  # the stand-in, never the installed package


# What a second 128 MiB block costs in page faults after the first was freed, in a process run
# with `env` added (malloc/memset/free through ctypes: Python's own allocators and numpy's huge-page
# advice stay out of it).
_REFAULTS = """
import ctypes, resource
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 128 * 2**20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(size); ctypes.memset(block, 1, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_the_peers_keep_setting_makes_glibc_keep_the_memory_it_frees(monkeypatch):
    """bench/peers/malloc.py's `keep`: a freed 128 MiB block is used again, not mapped afresh page by
    page (32,768 pages of 4 KiB), as glibc does by default. Both benches build the PyTorch peers'
    environment with this peer_environment."""
    from bench.peers import malloc

    def refaults(setting: str) -> int:
        result = subprocess.run([sys.executable, "-c", _REFAULTS], env=malloc.peer_environment(setting),
                                capture_output=True, text=True, timeout=60, check=True)
        return int(result.stdout)

    pages = 128 * 2**20 // 4096
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")  # the caller's own setting does not reach `default`
    assert refaults("default") >= pages // 2
    assert refaults("keep") < pages // 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_a_bench_timing_pytorch_in_its_own_process_restarts_itself_with_the_setting(tmp_path, monkeypatch):
    """bench/layer_norm.py and bench/grouped_conv_torch.py call restart_with after parsing their
    arguments: the process that goes on timing has the setting asked for, whatever it began with."""
    script = tmp_path / "bench_like.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom bench.peers import malloc\n"
                      f"malloc.restart_with(sys.argv[1])\n{_REFAULTS}")

    def refaults(setting: str) -> int:
        result = subprocess.run([sys.executable, str(script), setting], capture_output=True, text=True,
                                timeout=60, check=True)
        return int(result.stdout)

    pages = 128 * 2**20 // 4096
    assert refaults("keep") < pages // 20
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")  # begun with memory kept, asked for glibc as installed
    assert refaults("default") >= pages // 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and getrusage's minor faults")
def test_the_first_steps_page_faults_are_counted_for_both_sides():
    """The columns that show what fresh memory costs a first step: a child process that writes 64
    MiB of new memory, page by page, with huge pages refused for it (where the system gives them
    unasked, one fault maps 2 MiB), shows at least a fault per page, by /proc (ours, read from
    outside) and by getrusage (timm's worker, read from inside), the two in agreement."""
    from bench import zoo_speed

    child = subprocess.Popen([sys.executable, "-c", _TOUCH], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        before = zoo_speed.Usage(*map(float, child.stdout.readline().split()))
        outside_before = zoo_speed._usage(child.pid)
        child.stdin.write("touch\n")
        child.stdin.flush()
        after = zoo_speed.Usage(*map(float, child.stdout.readline().split()))
        outside_after = zoo_speed._usage(child.pid)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    pages = 64 * 2**20 // mmap.PAGESIZE
    inside = after.minor_faults - before.minor_faults
    outside = outside_after.minor_faults - outside_before.minor_faults
    assert inside >= pages
    assert abs(inside - outside) <= pages // 20  # the same counter, read a few calls apart
    assert outside_after.cpu_s >= outside_after.system_s >= 0
    assert zoo_speed._first_step_memory(before, after)["first_step_faults_m"] == round(inside / 1e6, 2)


_TOUCH = """
import sys
from bench import zoo_speed
print(*zoo_speed._self_usage(), flush=True)
sys.stdin.readline()
import mmap
block = mmap.mmap(-1, 64 * 2**20)  # anonymous: each page is faulted in when first written
block.madvise(mmap.MADV_NOHUGEPAGE)
for offset in range(0, len(block), mmap.PAGESIZE):
    block[offset] = 1
print(*zoo_speed._self_usage(), flush=True)
sys.stdin.readline()
"""
