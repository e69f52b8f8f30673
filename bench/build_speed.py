"""Building a spec costs at most 1.1x the notebook's hand-written Keras code for the same network.

Both sides run in one process, alternating, after one warm-up each; the figures are the ratios of
medians, of wall time and of this process's CPU time (the latter is less disturbed by other
processes on a shared machine). Two pairings, each with identical initializers on both sides:
  keras-init: Keras 3's GlorotUniform(seed=0) (resnet50.yaml with the initializer overridden)
  tf1-init:   the TF1-exact GlorotUniformTF1(seed=0) that resnet50.yaml uses

    .venv/bin/python bench/build_speed.py [--repeats 9]
    .venv/bin/python bench/build_speed.py --zoo [--repeats 5]

`--zoo` (issue 18's floor, "building any zoo network stays <= 1.1x a hand-written Keras build"):
every zoo file whose `reference:` names a keras.applications function, built from the file (with
the reference's `overrides`) against that function with `weights=None` (and its
`keras_arguments`), the hand-written Keras build of the same network. Initializers are each
side's own (the counts are equal; tests/test_zoo.py checks them).
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


def timed(function, params: int | None = 23_600_006) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one build.

    The previous model's garbage is collected first, on both sides alike: otherwise Python's
    cycle collector frees it at some point inside the next timed build.
    """
    keras.backend.clear_session()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model = function()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert params is None or model.count_params() == params
    return wall, cpu


def alternated(ours, theirs, repeats: int, params: int | None = 23_600_006) -> tuple[list, list]:
    """(wall, CPU) pairs of `repeats` builds of each side, after one warm-up each, alternating which
    side goes first."""
    timed(ours, params), timed(theirs, params)  # warm-up
    mine, others = [], []
    for repeat in range(repeats):
        if repeat % 2:
            others.append(timed(theirs, params))
            mine.append(timed(ours, params))
        else:
            mine.append(timed(ours, params))
            others.append(timed(theirs, params))
    return mine, others


def zoo(repeats: int) -> None:
    """Each zoo file with a keras.applications reference against that function."""
    rows = []
    for path in sorted((SPEC.parent / "imagenet").glob("*.yaml")):
        checked = load_checked_spec(path, [])
        reference = next((r for r in checked.spec.reference or () if r.keras_application), None)
        if reference is None:
            continue
        function = getattr(keras.applications, reference.keras_application)
        arguments = dict(reference.keras_arguments)

        def from_spec(path=path, overrides=list(reference.overrides)):
            checked = load_checked_spec(path, overrides)
            return build_model(checked.spec, checked.plan)

        def by_hand(function=function, arguments=arguments):
            return function(weights=None, **arguments)

        ours, theirs = alternated(from_spec, by_hand, repeats, reference.total_params)
        wall = statistics.median(t[0] for t in ours) / statistics.median(t[0] for t in theirs)
        cpu = statistics.median(t[1] for t in ours) / statistics.median(t[1] for t in theirs)
        rows.append((path.name, reference.keras_application, statistics.median(t[1] for t in ours),
                     statistics.median(t[1] for t in theirs), wall, cpu))
        print(f"{path.name} vs keras.applications.{reference.keras_application}: CPU {rows[-1][2]:.3f}s vs "
              f"{rows[-1][3]:.3f}s, ratio wall {wall:.3f}, CPU {cpu:.3f} (medians of {repeats})", flush=True)
    print("\n| file | keras.applications | ours, CPU s | Keras, CPU s | ratio (wall) | ratio (CPU) |")
    print("|---|---|---|---|---|---|")
    for name, function, mine, others, wall, cpu in rows:
        print(f"| {name} | {function} | {mine:.3f} | {others:.3f} | {wall:.3f} | {cpu:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--zoo", action="store_true", help="every zoo file against its keras.applications function")
    args = parser.parse_args()
    if args.zoo:
        zoo(args.repeats)
        return
    for name, (overrides, init) in PAIRINGS.items():
        def from_spec():
            checked = load_checked_spec(SPEC, overrides)  # the whole path: YAML, validation, plan, Keras
            return build_model(checked.spec, checked.plan)

        def by_hand():
            return notebook_resnet50(keras, glorot_uniform=init)

        ours, theirs = alternated(from_spec, by_hand, args.repeats)
        for index, clock in enumerate(("wall", "cpu")):
            spec_median = statistics.median(t[index] for t in ours)
            hand_median = statistics.median(t[index] for t in theirs)
            print(f"{name} {clock}: spec {spec_median:.3f}s, hand-written {hand_median:.3f}s, "
                  f"ratio {spec_median / hand_median:.3f} (medians of {args.repeats})")


if __name__ == "__main__":
    main()
