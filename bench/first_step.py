"""Where the time before the first training step goes: documented ResNet-50, batch 32, on this CPU.

    .venv/bin/python bench/first_step.py [--repeats 2] [--configs default,lazy-build,...] [--grappler-log]

Each configuration runs in its own process (oneDNN on, as `cli.py train`), and times, in order,
wall seconds and the process's CPU seconds (all threads: less sensitive to other programs):

  import     `import tensorflow` (+ Keras)
  build      YAML -> spec -> plan -> Keras model (`build_model`)
  compile    `model.compile` and `train`'s switches (fused Adam, fused batch norm, kernel gradients)
  variables  creating the optimizer's slots and the compiled metrics' variables before the trace,
             as `train` does (training/first_step.py `build_before_tracing`)
  trace      tracing the training step into a graph: Python runs the model's call, the gradient
             tape and the optimizer symbolically (`get_concrete_function`; `ops`: its op count)
  first      the first call of the traced step: TensorFlow's graph optimizations (grappler, and
             with oneDNN its layout rewrite), kernel creation (oneDNN primitives, JIT code), one step
  step       median of the following steps: what the first call would cost without the one-off work

`first - step` is the one-off cost of the first call; `extra` = variables + trace + first - step is
what the first epoch pays on top of a steady one for the training step (the data pipeline and
the end-of-epoch test predictions are measured by `cli.py train` itself: bench/RESULTS.md).
With --grappler-log the child also logs grappler's own per-pass times
(TF_CPP_VMODULE=meta_optimizer=1) and sums them per pass.

Configurations (`train`'s settings unless named):
  default        what `cli.py train` does now
  lazy-build     optimizer slots and metrics created inside the first trace, as `fit` alone does:
                 TensorFlow then traces the step twice
  keras-adam     Keras's own Adam update (~16 ops per weight instead of one fused op)
  keras-bn       Keras's own batch norm (~76 ops per layer instead of the fused op)
  before         all three: `train` before issue 12's first-step work
  no-grappler    grappler off (tf.config.optimizer: disable_meta_optimizer)
  off:P1+P2      the grappler passes P1, P2 off (tf.config.optimizer.set_experimental_options names)
  xla            the training step compiled by XLA (jit_compile=True)
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


LEVERS = {"lazy-build": {"lazy-build"}, "keras-adam": {"keras-adam"}, "keras-bn": {"keras-bn"},
          "before": {"lazy-build", "keras-adam", "keras-bn"}}


def worker(config: str) -> dict:
    sys.path.insert(0, str(ROOT))
    levers = LEVERS.get(config, set())
    times = {}
    marks = [time.perf_counter(), time.process_time()]

    def phase(name):
        now = [time.perf_counter(), time.process_time()]
        times[name], times[name + "_cpu"] = now[0] - marks[0], now[1] - marks[1]
        marks[:] = now

    from archbuilder.runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    import keras
    import numpy as np

    phase("import")
    if config == "no-grappler":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    elif config.startswith("off:"):
        tf.config.optimizer.set_experimental_options({name: False for name in config[4:].split("+")})
    from archbuilder.keras.graph import build_model
    from archbuilder.spec.training import TrainingSpec
    from archbuilder.spec.validate import load_checked_spec
    from archbuilder.training.cpu_kernels import use_fast_kernel_gradients
    from archbuilder.training.first_step import build_before_tracing
    from archbuilder.training.fused_adam import use_fused_adam
    from archbuilder.training.fused_batch_norm import use_fused_batch_norm
    from archbuilder.training.optimizers import compile_model

    model = build_model(load_checked_spec(SPEC, ["classes=10"]).spec)
    phase("build")
    compile_model(model, TrainingSpec(), 15)
    use_fast_kernel_gradients(model)
    if "keras-adam" not in levers:
        use_fused_adam(model.optimizer)
    if "keras-bn" not in levers:
        use_fused_batch_norm(model)
    phase("compile")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((BATCH, 64, 64, 3), dtype="float32"))
    y = tf.constant(keras.utils.to_categorical(rng.integers(0, 10, BATCH), 10))
    if "lazy-build" not in levers:
        build_before_tracing(model, (tf.TensorSpec((None, 64, 64, 3)), tf.TensorSpec((None, 10))))
    phase("variables")
    step_function = tf.function(model.train_step, jit_compile=config == "xla")
    concrete = step_function.get_concrete_function((x, y))
    phase("trace")
    times["ops"] = len(concrete.graph.get_operations())
    # Called through the tf.function, as fit does: a step traced twice shows up here.
    steps = []
    for _ in range(STEPS):
        float(step_function((x, y))["loss"])
        phase("call")
        steps.append((times["call"], times["call_cpu"]))
    del times["call"], times["call_cpu"]
    times["first"], times["first_cpu"] = steps[0]
    times["step"] = statistics.median(s[0] for s in steps[1:])
    times["step_cpu"] = statistics.median(s[1] for s in steps[1:])
    times["traces"] = len(step_function._list_all_concrete_functions()) if hasattr(
        step_function, "_list_all_concrete_functions") else None
    for suffix in ("", "_cpu"):
        times["one_off" + suffix] = times["first" + suffix] - times["step" + suffix]
        times["extra" + suffix] = (times["variables" + suffix] + times["trace" + suffix]
                                   + times["one_off" + suffix])
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in times.items()}


# "I0000 ... meta_optimizer.cc:973] remapper: Graph size after: 8 nodes (0), 8 edges (0), time = 8.22ms."
_PASS_TIME = re.compile(r"meta_optimizer\.cc:\d+\] (\S+?): Graph size after: .*?time = ([0-9.]+)ms")


def run(config: str, grappler_log: bool) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")}
    if grappler_log:
        env.update(TF_CPP_VMODULE="meta_optimizer=1", TF_CPP_MIN_LOG_LEVEL="0", ARCHBUILDER_TF_LOGS="1")
    load = os.getloadavg()[0]
    process = subprocess.run([sys.executable, __file__, "--worker", config], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
    # The 1-minute load average before and after: the machine is shared.
    result = {"config": config, "load": [round(load, 1), round(os.getloadavg()[0], 1)],
              **json.loads(process.stdout.strip().splitlines()[-1])}
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
    parser.add_argument("--configs", default="default,before,lazy-build,keras-adam,keras-bn")
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
    keys = [k + suffix for k in ("variables", "trace", "first", "step", "one_off", "extra") for suffix in ("", "_cpu")]
    summary = {c: {k: statistics.median(r[k] for r in rs) for k in keys} for c, rs in results.items()}
    print(json.dumps({"medians": summary}, indent=1))


if __name__ == "__main__":
    main()
