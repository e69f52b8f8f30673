"""Across workers (issue 19, item 5): under multi-worker each worker decodes only its share of the
streamed files in each epoch, every image is read exactly once per epoch across the workers, and a
resumed run's shares are the uninterrupted run's. Counted with real worker processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from test_distribute import PROCESS_BOUND, _tf_config
from train_support import REPO, cli_env, free_ports

IMAGES = 42  # with batches of 8: five full global batches and one of 2, cut 1 + 1 over two workers
BATCH, EPOCHS, RESUME_AT = 8, 3, 1


def _numbered_images(root):
    """IMAGES flat-colour PNGs in two classes, image n's red channel n: its pixels name its file."""
    for number in range(IMAGES):
        folder = root / ("even" if number % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), (number, 255 - number, 7), np.uint8)).save(folder / f"{number:03}.png")
    return root


@pytest.mark.slow  # two worker processes, ~14 s; by default test_distribute.py's two-worker run
def test_each_worker_reads_its_share_and_every_image_is_read_once_per_epoch(tmp_path):
    folder = _numbered_images(tmp_path / "images")
    ports = free_ports(2)
    # PYTHONPATH: the helper runs as a script, so it imports archbuilder from this checkout.
    processes = [subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "helpers" / "worker_share.py"), str(folder), str(EPOCHS), str(BATCH),
         str(RESUME_AT)],
        cwd=REPO, env={**cli_env(), "TF_CONFIG": _tf_config(ports, index), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) for index in (0, 1)]
    try:
        outputs = [process.communicate(timeout=PROCESS_BOUND) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [p.returncode for p in processes] == [0, 0], [err[-3000:] for _, err in outputs]
    shares = sorted((json.loads(out.strip().splitlines()[-1]) for out, _ in outputs), key=lambda s: s["worker"])
    assert [s["worker"] for s in shares] == [0, 1] and all(s["replicas"] == 2 for s in shares)

    everything = Counter(range(IMAGES))
    for epoch in range(EPOCHS):
        mine, theirs = (s["epochs"][epoch] for s in shares)
        assert Counter(mine) + Counter(theirs) == everything, epoch  # each image once, by one worker
        assert len(mine) == len(theirs) == IMAGES // 2  # an even share: half of each global batch
    orders = [shares[0]["epochs"][e] for e in range(EPOCHS)]
    assert orders[0] != orders[1] and set(orders[0]) != set(orders[1])  # a new order and a new share each epoch
    # A resumed run (from epoch RESUME_AT) gives each worker the share it had in the uninterrupted run.
    for share in shares:
        assert share["resumed"] == share["epochs"][RESUME_AT:]
