"""Where the time before the first training step goes: documented ResNet-50, batch 32, on this CPU.

    .venv/bin/python bench/first_step.py [--repeats 2] [--configs default,no-grappler]

Each configuration runs in its own process (oneDNN on, as `cli.py train`), and times, in order:

  import     `import tensorflow` (+ Keras)
  build      YAML -> spec -> plan -> Keras model (`build_model`)
  compile    `model.compile` (optimizer, loss, metrics objects) and `train`'s kernel switches
  optimizer  creating the optimizer's variables (Adam's moments), as `fit` does before tracing
  trace      tracing the training step into a graph: Python runs the model's call, the gradient
             tape and the optimizer once, symbolically (`get_concrete_function`)
  first      the first call of the traced step: TensorFlow's graph optimizations (grappler, and
             with oneDNN its layout rewrite), kernel creation (oneDNN primitives, JIT code), one step
  step       median of the following steps: what the first call would cost without the one-off work

`first - step` is the one-off cost of the first call. With --grappler-log the child also logs
grappler's own per-pass times (TF_CPP_VMODULE=meta_optimizer=1) and sums them per pass.

Configurations:
  default        `cli.py train`'s settings (Adam fused: training/fused_adam.py)
  keras-adam     Keras's own Adam update (~16 ops per weight instead of one)
  no-grappler    `default` with grappler off (tf.config.optimizer: disable_meta_optimizer)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "architectures" / "resnet50.yaml"
BATCH = 32
STEPS = 6


def worker(config: str) -> dict:
    sys.path.insert(0, str(ROOT))
    times = {}
    start = time.perf_counter()
    from archbuilder.runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    import keras
    import numpy as np

    times["import"] = time.perf_counter() - start
    if config == "no-grappler":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    from archbuilder.keras.graph import build_model
    from archbuilder.spec.training import TrainingSpec
    from archbuilder.spec.validate import load_checked_spec
    from archbuilder.training.cpu_kernels import use_fast_kernel_gradients
    from archbuilder.training.fused_adam import use_fused_adam
    from archbuilder.training.optimizers import compile_model

    mark = time.perf_counter()
    model = build_model(load_checked_spec(SPEC, ["classes=10"]).spec)
    times["build"] = time.perf_counter() - mark
    mark = time.perf_counter()
    compile_model(model, TrainingSpec(), 15)
    use_fast_kernel_gradients(model)
    if config != "keras-adam":
        use_fused_adam(model.optimizer)
    times["compile"] = time.perf_counter() - mark
    mark = time.perf_counter()
    model.optimizer.build(model.trainable_variables)
    times["optimizer"] = time.perf_counter() - mark
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((BATCH, 64, 64, 3), dtype="float32"))
    y = tf.constant(keras.utils.to_categorical(rng.integers(0, 10, BATCH), 10))
    step_function = tf.function(model.train_step)
    mark = time.perf_counter()
    concrete = step_function.get_concrete_function((x, y))
    times["trace"] = time.perf_counter() - mark
    steps = []
    for _ in range(STEPS):
        mark = time.perf_counter()
        float(concrete((x, y))["loss"])
        steps.append(time.perf_counter() - mark)
    times["first"] = steps[0]
    times["step"] = statistics.median(steps[1:])
    times["one_off"] = times["first"] - times["step"]
    return {k: round(v, 2) for k, v in times.items()}


# "I0000 ... meta_optimizer.cc:973] remapper: Graph size after: 8 nodes (0), 8 edges (0), time = 8.22ms."
_PASS_TIME = re.compile(r"meta_optimizer\.cc:\d+\] (\S+?): Graph size after: .*?time = ([0-9.]+)ms")


def run(config: str, grappler_log: bool) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")}
    if grappler_log:
        env.update(TF_CPP_VMODULE="meta_optimizer=1", TF_CPP_MIN_LOG_LEVEL="0", ARCHBUILDER_TF_LOGS="1")
    process = subprocess.run([sys.executable, __file__, "--worker", config], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
    result = {"config": config, **json.loads(process.stdout.strip().splitlines()[-1])}
    if grappler_log:
        per_pass = defaultdict(float)
        for name, ms in _PASS_TIME.findall(process.stderr):
            per_pass[name.split("{")[0]] += float(ms) / 1000
        result["grappler_s"] = {k: round(v, 2) for k, v in sorted(per_pass.items(), key=lambda kv: -kv[1])}
        result["grappler_total_s"] = round(sum(per_pass.values()), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--configs", default="default,keras-adam,no-grappler")
    parser.add_argument("--grappler-log", action="store_true", help="also sum grappler's per-pass times")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)), flush=True)
        return
    configs = args.configs.split(",")
    results = defaultdict(list)
    for round_ in range(args.repeats):
        for config in configs[round_ % len(configs):] + configs[:round_ % len(configs)]:
            result = run(config, args.grappler_log)
            results[config].append(result)
            print(json.dumps({"round": round_ + 1, **result}), flush=True)
    summary = {c: {k: statistics.median(r[k] for r in rs) for k in ("optimizer", "trace", "first", "step", "one_off")}
               for c, rs in results.items()}
    print(json.dumps({"medians": summary}, indent=1))


if __name__ == "__main__":
    main()
