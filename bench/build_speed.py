"""Building a spec costs at most 1.1x the notebook's hand-written Keras code for the same network.

Both sides run in one process, alternating, after one warm-up each; the figures are the ratios of
medians, of wall time and of this process's CPU time (the latter is less disturbed by other
processes on a shared machine). Two pairings, each with identical initializers on both sides:
  keras-init: Keras 3's GlorotUniform(seed=0) (resnet50.yaml with the initializer overridden)
  tf1-init:   the TF1-exact GlorotUniformTF1(seed=0) that resnet50.yaml uses

    .venv/bin/python bench/build_speed.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archbuilder.runtime import configure_tensorflow_environment  # noqa: E402

configure_tensorflow_environment()

import keras  # noqa: E402

from archbuilder.keras.initializers import GlorotUniformTF1  # noqa: E402
from archbuilder.keras.graph import build_model  # noqa: E402
from archbuilder.plan.validate import load_checked_spec  # noqa: E402
from tests.helpers.notebook_resnet import notebook_resnet50  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "architectures" / "resnet50.yaml"
PAIRINGS = {
    "keras-init": (["defaults.kernel_initializer={type: glorot_uniform, seed: 0}"], keras.initializers.GlorotUniform),
    "tf1-init": ([], GlorotUniformTF1),
}


def timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one build.

    The previous model's garbage is collected first, on both sides alike: otherwise Python's
    cycle collector frees it at some point inside the next timed build.
    """
    keras.backend.clear_session()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model = function()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert model.count_params() == 23_600_006
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    for name, (overrides, init) in PAIRINGS.items():
        def from_spec():
            checked = load_checked_spec(SPEC, overrides)  # the whole path: YAML, validation, plan, Keras
            return build_model(checked.spec, checked.plan)

        def by_hand():
            return notebook_resnet50(keras, glorot_uniform=init)

        timed(from_spec), timed(by_hand)  # warm-up
        ours, theirs = [], []
        for repeat in range(args.repeats):
            if repeat % 2:  # alternate which side goes first
                theirs.append(timed(by_hand))
                ours.append(timed(from_spec))
            else:
                ours.append(timed(from_spec))
                theirs.append(timed(by_hand))
        for index, clock in enumerate(("wall", "cpu")):
            spec_median = statistics.median(t[index] for t in ours)
            hand_median = statistics.median(t[index] for t in theirs)
            print(f"{name} {clock}: spec {spec_median:.3f}s, hand-written {hand_median:.3f}s, "
                  f"ratio {spec_median / hand_median:.3f} (medians of {args.repeats})")


if __name__ == "__main__":
    main()
