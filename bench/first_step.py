"""Where the time before the first training step goes: documented ResNet-50, batch 32, on this CPU.

    .venv/bin/python bench/first_step.py [--repeats 2] [--configs default,lazy-build,...] [--grappler-log]
    .venv/bin/python bench/first_step.py --spec architectures/imagenet/X.yaml --size 224 --trace-only

Each configuration runs in its own process (oneDNN on, as `cli.py train`), and times, in order,
wall seconds and the process's CPU seconds (all threads: less sensitive to other programs):

  import     `import tensorflow` (+ Keras)
  build      YAML -> spec -> plan -> Keras model (`build_model`), `model.compile` and `train`'s
             switches (fused Adam, fused batch norm, kernel gradients)
  variables  creating the optimizer's slots and the compiled metrics' variables before the trace,
             as `train` does (training/first_step.py `build_before_tracing`)
  trace      tracing the training step into a graph: Python runs the model's call, the gradient
             tape and the optimizer symbolically (`get_concrete_function`; `ops`: its op count)
  first      the first call of the traced step: TensorFlow's graph optimizations (grappler, and
             with oneDNN its layout rewrite), kernel creation (oneDNN primitives, JIT code), one step
  step       median of the following steps: what the first call would cost without the one-off work

  pipeline   the input pipeline's first batch, less a later batch (1,489 random 64x64 images)
  predict    the first test-set prediction (273 images, as `train --holdout-photographers 0.15`
             runs at each epoch's end), less a later one: its function is traced on first use
             (`train` now traces it once before fit: `predict_trace`, counted here too)

With --trace-only a worker stops after the trace: `variables`, `trace` and `ops` only, seconds a
network (the training graph's size, which every CPU kind shares, is what the tracing and grappler
scale with).

`first - step` (`one_off`) is the one-off cost of the first call; `extra` = variables + trace +
one_off + pipeline + predict is what the first epoch of `cli.py train` pays on top of a later one.
With --grappler-log the child also logs grappler's own per-pass times
(TF_CPP_VMODULE=meta_optimizer=1) and sums them per pass.

Configurations (`train`'s settings unless named):
  default        what `cli.py train` does now
  lazy-build     optimizer slots and metrics created inside the first trace, as `fit` alone does:
                 TensorFlow then traces the step twice
  keras-adam     Keras's own Adam update (~16 ops per weight instead of one fused op)
  keras-bn       Keras's own batch norm (~76 ops per layer instead of the fused op)
  keras-grouped  Keras's own grouped convolutions (XLA-compiled functions; training/grouped_conv.py)
  keras-dense    Keras's own Dense on inputs of rank > 2 (tf.tensordot; training/fused_dense.py)
  keras-conv-bias  Keras's own convolution bias (reshape, squeeze, BiasAdd; training/fused_conv_bias.py)
  keras-swish    TensorFlow's own swish gradient (beta's gradient, the sigmoid recomputed;
                 training/fused_swish.py)
  keras-add      Keras's own residual adds (a broadcast reduction per input in the gradient;
                 training/fused_add.py)
  keras-global-pool  Keras's own global average pooling (the count from the runtime shape in
                 the gradient; training/fused_global_pool.py)
  keras-updates  Keras's own path from gradients to updates (an all-reduce's identity per weight
                 without a strategy; training/direct_updates.py)
  keras-names    the optimizer's slots created with TensorFlow names, as Keras names them (each a new
                 eager kernel; training/first_step.py)
  keras-grappler TensorFlow's default grappler: every pass twice, then tfg (`train` runs them once,
                 no tfg: training/grappler_rounds.py)
  before         every keras-* lever but keras-grouped and keras-dense, and lazy-build: `train`
                 before issue 12's first-step work
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
# Another network and size (--spec, --size, --batch; passed to the workers in the environment):
# e.g. a zoo file at a smaller input than its own (issue 21, item 4).
SPEC = Path(os.environ.get("FIRST_STEP_SPEC") or ROOT / "architectures" / "resnet50.yaml")
SIZE = int(os.environ.get("FIRST_STEP_SIZE") or 64)
TEST_IMAGES = int(os.environ.get("FIRST_STEP_TEST_IMAGES") or 273)
TRACE_ONLY = bool(os.environ.get("FIRST_STEP_TRACE_ONLY"))
PHOTOS = ROOT.parent / "shared" / "datasets" / "sign-language-digits" / "images"
BATCH = int(os.environ.get("FIRST_STEP_BATCH") or 32)
STEPS = 6


LEVERS = {"lazy-build": {"lazy-build"}, "keras-adam": {"keras-adam"}, "keras-bn": {"keras-bn"},
          "keras-grouped": {"keras-grouped"}, "keras-dense": {"keras-dense"},
          "keras-conv-bias": {"keras-conv-bias"}, "keras-swish": {"keras-swish"},
          "keras-updates": {"keras-updates"}, "keras-add": {"keras-add"},
          "keras-global-pool": {"keras-global-pool"}, "keras-grappler": {"keras-grappler"},
          "keras-names": {"keras-names"},
          "before": {"lazy-build", "keras-adam", "keras-bn", "keras-conv-bias", "keras-swish", "keras-updates",
                     "keras-add", "keras-global-pool", "keras-grappler", "keras-names"}}


def _grappler_options(tf, config: str, reset: bool = False) -> None:
    """Grappler as `config` names it (`no-grappler`, `off:P1+P2`; the passes named are on by
    default), or back to the default with `reset`."""
    if config == "no-grappler":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not reset})
    elif config.startswith("off:"):
        tf.config.optimizer.set_experimental_options({name: reset for name in config[4:].split("+")})


def _batch(tf, keras, np):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((BATCH, SIZE, SIZE, 3), dtype="float32"))
    return x, tf.constant(keras.utils.to_categorical(rng.integers(0, 10, BATCH), 10))


def _switched_model(config: str):
    """The documented ResNet-50, compiled as `train` does, with `config`'s levers."""
    from archbuilder.keras.graph import build_model
    from archbuilder.spec.training import TrainingSpec
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.training.cpu_kernels import use_fast_kernel_gradients
    from archbuilder.training.fused_adam import use_fused_adam
    from archbuilder.training.fused_batch_norm import use_fused_batch_norm
    from archbuilder.training.optimizers import compile_model

    levers = LEVERS.get(config, set())
    model = build_model(load_checked_spec(SPEC, ["classes=10", f"input.shape=[{SIZE}, {SIZE}, 3]"]).spec)
    compile_model(model, TrainingSpec(), 15)
    use_fast_kernel_gradients(model)
    if "keras-grouped" not in levers:
        from archbuilder.training.grouped_choice import choose_grouped_kernels
        from archbuilder.training.grouped_conv import switch_grouped_convolutions

        switch_grouped_convolutions(model, choose_grouped_kernels(model, BATCH).kernels)
    if "keras-adam" not in levers:
        use_fused_adam(model.optimizer)
    if "keras-updates" not in levers:
        from archbuilder.training.direct_updates import use_direct_updates

        use_direct_updates(model.optimizer)
    if "keras-bn" not in levers:
        use_fused_batch_norm(model)
    from archbuilder.training.fused_layers import use_fused_layers

    # GELU, layer norm, attention, dense and conv bias: as `train` (batch norm is above, with its own lever)
    kept = {"keras-dense": "dense", "keras-conv-bias": "conv_bias", "keras-swish": "swish", "keras-add": "add",
            "keras-global-pool": "global_pool"}
    use_fused_layers(model, leave_out=("batch_norm", *(switch for lever, switch in kept.items() if lever in levers)))
    return model


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
    _grappler_options(tf, config)
    if "keras-grappler" in levers:
        return _measure(tf, keras, np, config, levers, times, phase)
    from archbuilder.training.grappler_rounds import one_grappler_round

    with one_grappler_round():  # as `train`: the trace and every call below
        return _measure(tf, keras, np, config, levers, times, phase)


def _measure(tf, keras, np, config: str, levers: set, times: dict, phase) -> dict:
    from archbuilder.training import first_step

    # keras-names: the slots named in TensorFlow too, as Keras's own build names them
    build_before_tracing = first_step._build if "keras-names" in levers else first_step.build_before_tracing
    model = _switched_model(config)
    phase("build")
    x, y = _batch(tf, keras, np)
    if "lazy-build" not in levers:
        build_before_tracing(model, (tf.TensorSpec((None, SIZE, SIZE, 3)), tf.TensorSpec((None, 10))))
    phase("variables")
    step_function = tf.function(model.train_step, jit_compile=config == "xla")
    # Traced for any batch size, as fit traces it on train's dataset (whose last batch is smaller).
    concrete = step_function.get_concrete_function(
        (tf.TensorSpec((None, *x.shape[1:]), x.dtype), tf.TensorSpec((None, *y.shape[1:]), y.dtype)))
    phase("trace")
    times["ops"] = len(concrete.graph.get_operations())
    if TRACE_ONLY:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in times.items()}
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
    # What else the first epoch runs once: the input pipeline's first batches (tf.data builds its
    # graph, the first gathers), and the end of the epoch's test predictions, whose function is
    # traced on its first call (and once more for the last, smaller batch).
    from archbuilder.data import pipeline
    from archbuilder.training.metrics import predict_probabilities

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (1489, SIZE, SIZE, 3), dtype=np.uint8)
    phase("scratch")
    del times["scratch"], times["scratch_cpu"]
    batches = iter(pipeline.training_dataset(images, rng.integers(0, 10, 1489), 10, BATCH, 0, 0, 1))
    next(batches)
    phase("pipeline_first")
    for _ in range(STEPS):
        next(batches)
    phase("pipeline_later")
    test = images[:TEST_IMAGES]  # the test set of `cli.py train --holdout-photographers 0.15`
    if "lazy-build" not in levers:  # `train` traces the predict function before fit, once
        from archbuilder.training.first_step import trace_prediction_once

        trace_prediction_once(model, tf.TensorSpec((None, SIZE, SIZE, 3)))
    phase("predict_trace")
    predict_probabilities(model, test)
    phase("predict_first")
    predict_probabilities(model, test)
    phase("predict_later")
    for suffix in ("", "_cpu"):
        times["pipeline" + suffix] = times["pipeline_first" + suffix] - times["pipeline_later" + suffix] / STEPS
        times["predict" + suffix] = (times["predict_trace" + suffix] + times["predict_first" + suffix]
                                     - times["predict_later" + suffix])
        times["one_off" + suffix] = times["first" + suffix] - times["step" + suffix]
        times["extra" + suffix] = (times["variables" + suffix] + times["trace" + suffix] + times["one_off" + suffix]
                                   + times["pipeline" + suffix] + times["predict" + suffix])
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


def steady(configs: list[str], rounds: int) -> dict:
    """Steady-state training steps of several configurations in ONE process, interleaved step by
    step (a burst of load elsewhere hits all alike): median wall and CPU seconds per step."""
    sys.path.insert(0, str(ROOT))
    from archbuilder.runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    import keras
    import numpy as np

    from archbuilder.training.first_step import build_before_tracing

    x, y = _batch(tf, keras, np)
    steps = {}
    for config in configs:
        model = _switched_model(config)
        build_before_tracing(model, (tf.TensorSpec((None, SIZE, SIZE, 3)), tf.TensorSpec((None, 10))))
        steps[config] = tf.function(model.train_step)
        # Grappler's options are read when a function is first run (instantiated): each
        # configuration's step is optimized with its own options, then they are reset.
        _grappler_options(tf, config)
        for _ in range(2):  # traced, optimized, warm
            float(steps[config]((x, y))["loss"])
        _grappler_options(tf, config, reset=True)
    times = {c: ([], []) for c in configs}
    load = os.getloadavg()[0]
    for _ in range(rounds):
        for config in configs:
            wall, cpu = time.perf_counter(), time.process_time()
            float(steps[config]((x, y))["loss"])
            times[config][0].append(time.perf_counter() - wall)
            times[config][1].append(time.process_time() - cpu)
    result = {"load": [round(load, 1), round(os.getloadavg()[0], 1)], "rounds": rounds}
    for config, (wall, cpu) in times.items():
        result[config] = {"step": round(statistics.median(wall), 3), "step_cpu": round(statistics.median(cpu), 3),
                          "images_per_second": round(BATCH / statistics.median(wall), 2)}
    first = configs[0]
    for config in configs[1:]:
        result[f"{first}/{config} wall"] = round(result[config]["step"] / result[first]["step"], 3)
        result[f"{first}/{config} cpu"] = round(result[config]["step_cpu"] / result[first]["step_cpu"], 3)
    return result


def run_cli(tree: Path, epochs: int) -> dict:
    """`cli.py train` of `tree` (a checkout: this one, or an older commit's `git archive`) on the
    photos, whole photographers held out (test predictions at every epoch's end, as users run it):
    every output line with the seconds since start, the history's epoch times, the CPU seconds."""
    import csv
    import resource
    import tempfile

    with tempfile.TemporaryDirectory(prefix="first-step-") as folder:
        command = [sys.executable, "-u", str(tree / "cli.py"), "train", str(SPEC), "--data", str(PHOTOS),
                   "--holdout-photographers", "0.15", "--epochs", str(epochs), "--out", f"{folder}/run"]
        env = {**os.environ, "ARCHBUILDER_CACHE_DIR": os.environ.get("ARCHBUILDER_CACHE_DIR", f"{folder}/cache")}
        load, cpu_before = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = [(round(time.perf_counter() - start, 1), line.rstrip()) for line in process.stdout]
        if process.wait():
            raise RuntimeError("\n".join(line for _, line in lines[-20:]))
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(f"{folder}/run/history.csv") as handle:
            history = list(csv.DictReader(handle))
    epoch_seconds = [float(row["seconds"]) for row in history]
    return {"tree": str(tree), "load": [round(load, 1), round(os.getloadavg()[0], 1)],
            "wall": round(time.perf_counter() - start, 1),
            "cpu": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1),
            "epoch_seconds": epoch_seconds, "images_per_second": [row.get("images_per_second") for row in history],
            "first_epoch_extra": round(epoch_seconds[0] - min(epoch_seconds[1:]), 1), "lines": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--configs", default="default,before,lazy-build,keras-adam,keras-bn")
    parser.add_argument("--grappler-log", action="store_true", help="also sum grappler's per-pass times")
    parser.add_argument("--cli", nargs="+", type=Path, metavar="TREE",
                        help="instead: time `cli.py train` of each checkout TREE, interleaved")
    parser.add_argument("--epochs", type=int, default=3, help="with --cli")
    parser.add_argument("--steady", type=int, metavar="ROUNDS",
                        help="instead: steady-state steps of --configs in one process, interleaved, ROUNDS each")
    parser.add_argument("--spec", type=Path, help="another spec than the documented ResNet-50 (e.g. a zoo file)")
    parser.add_argument("--size", type=int, help="input height and width (default 64)")
    parser.add_argument("--batch", type=int, help="batch size (default 32)")
    parser.add_argument("--test-images", type=int, help="images of the prediction phase (default 273)")
    parser.add_argument("--trace-only", action="store_true", help="stop each worker after the trace (op counts)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name, value in (("SPEC", args.spec and args.spec.resolve()), ("SIZE", args.size), ("BATCH", args.batch),
                        ("TEST_IMAGES", args.test_images)):
        if value:  # here, and for the workers, which read them at import
            os.environ[f"FIRST_STEP_{name}"] = str(value)
            globals()[name] = type(globals()[name])(value)
    if args.trace_only:
        os.environ["FIRST_STEP_TRACE_ONLY"] = "1"
    if args.steady:
        print(json.dumps(steady(args.configs.split(","), args.steady)), flush=True)
        return
    if args.cli:
        for round_ in range(args.repeats):
            for tree in args.cli[round_ % len(args.cli):] + args.cli[:round_ % len(args.cli)]:
                print(json.dumps({"round": round_ + 1, **run_cli(tree.resolve(), args.epochs)}), flush=True)
        return
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
    keys = [k + suffix for k in ("variables", "trace", "first", "step", "one_off", "pipeline", "predict", "extra") for suffix in ("", "_cpu")]
    keys += ["ops"]
    summary = {c: {k: statistics.median(r[k] for r in rs) for k in keys if k in rs[0]} for c, rs in results.items()}
    print(json.dumps({"medians": summary}, indent=1))


if __name__ == "__main__":
    main()
