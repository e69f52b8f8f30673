"""Is one grappler round (training/grappler_rounds.py) the same computation as TensorFlow's default
two rounds and tfg, and how much of grappler's time does it save? Every zoo network, one process.

    .venv/bin/python bench/grappler_rounds.py [--networks resnet50,vit_b16] [--size 64] [--batch 8] [--steps 0]

For each network (architectures/imagenet/NAME.yaml, 10 classes, compiled and switched as `train`
does: bench/first_step.py `_switched_model`) the training step is traced once, then:

  same       the traced step called under TensorFlow's default options and, from the same weights,
             optimizer state and batch, under `one_grappler_round`: the loss and every variable
             after the step (weights, batch norm statistics, optimizer slots, dropout seeds) must be
             equal bit for bit. Each call instantiates the function under its own options, so
             each graph is optimized by its own settings (tests/test_grappler_rounds.py holds that).
             On this project's CPUs these steps' numbers do not depend on grappler's rewrites at
             all (with grappler off they are the same bits too), so this shows the numbers, and
  op_types_differ  the ops of the two optimized graphs, by type (constants aside: the second
             round merges duplicates), shows grappler's output: {} where both have the same ops.
  default_s  grappler alone over the step's graph with the default settings (tf_optimizer.OptimizeGraph,
  once_s     the same entry point TensorFlow's function runtime calls), and with one round, no tfg.
  step_*     with --steps N: N training steps of each instantiation, alternating, medians and the
             median ratio of each round's pair (the same ops: this shows the machine's noise).

Prints one JSON line per network and exits 1 if any network differs. bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.runtime import import_tensorflow_quietly  # noqa: E402

tf = import_tensorflow_quietly()

import numpy as np  # noqa: E402
from tensorflow.core.protobuf import config_pb2  # noqa: E402
from tensorflow.python.grappler import tf_optimizer  # noqa: E402

from archbuilder.training.first_step import build_before_tracing  # noqa: E402
from archbuilder.training.grappler_rounds import one_grappler_round, set_train_rewrites  # noqa: E402
from bench import first_step  # noqa: E402


def step_meta_graph(concrete):
    """The traced step's graph as grappler's entry point takes it: every output and every variable
    update fetched, so nothing the step does is pruned."""
    graph = concrete.graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetch = meta.collection_def["train_op"].node_list.value
    fetch.extend(t.op.name for t in concrete.outputs)
    fetch.extend(op.name for op in graph.get_operations() if op.type.startswith(("ResourceApply", "Assign")))
    return meta


def _optimized(concrete, once: bool):
    """Grappler over the traced step's graph, as the function runtime runs it before the first
    call: its seconds and the optimized graph's op types (constants left out: a second round
    merges duplicates)."""
    meta = step_meta_graph(concrete)
    config = config_pb2.ConfigProto()
    if once:
        set_train_rewrites(config.graph_options.rewrite_options)
    started = time.perf_counter()
    optimized = tf_optimizer.OptimizeGraph(config, meta, verbose=False, graph_id=b"step")
    return time.perf_counter() - started, Counter(node.op for node in optimized.node if node.op != "Const")


def compare(network: str, size: int, batch: int, steps: int) -> dict:
    first_step.SPEC, first_step.SIZE = ROOT / "architectures" / "imagenet" / f"{network}.yaml", size
    model = first_step._switched_model("default")
    spec = (tf.TensorSpec((None, size, size, 3)), tf.TensorSpec((None, 10)))
    build_before_tracing(model, spec)
    concrete = tf.function(model.train_step).get_concrete_function(spec)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, size, size, 3), dtype="float32"))
    y = tf.one_hot(rng.integers(0, 10, batch), 10)
    variables = [*model.variables, *model.optimizer.variables]
    start = [v.numpy() for v in variables]

    def step():
        for variable, value in zip(variables, start):
            variable.assign(value)
        model.reset_metrics()
        loss = concrete((x, y))["loss"].numpy()
        return loss, [v.numpy() for v in variables]

    default_loss, default_after = step()
    with one_grappler_round():
        once_loss, once_after = step()
    differing = [v.path for v, a, b in zip(variables, default_after, once_after) if a.tobytes() != b.tobytes()]
    (default_s, default_ops), (once_s, once_ops) = _optimized(concrete, False), _optimized(concrete, True)
    times = {"default": [], "once": []}
    for round_ in range(steps):  # both instantiations are warm: alternating steps, each round's order swapped
        for arm in ("default", "once") if round_ % 2 == 0 else ("once", "default"):
            started = time.perf_counter()
            if arm == "once":
                with one_grappler_round():
                    concrete((x, y))["loss"].numpy()
            else:
                concrete((x, y))["loss"].numpy()
            times[arm].append(time.perf_counter() - started)
    timing = {} if not steps else {
        "step_default_s": round(statistics.median(times["default"]), 3), "step_once_s": round(statistics.median(times["once"]), 3),
        "step_ratio_default_over_once": round(statistics.median(a / b for a, b in zip(times["default"], times["once"])), 3)}
    return {"network": network, "ops": len(concrete.graph.get_operations()),
            "same": default_loss.tobytes() == once_loss.tobytes() and not differing,
            "loss": [float(default_loss), float(once_loss)], "variables": len(variables),
            "differing": differing[:5], "op_types_differ": {op: once_ops[op] - default_ops[op]
                                                            for op in default_ops | once_ops if once_ops[op] != default_ops[op]},
            "default_s": round(default_s, 2), "once_s": round(once_s, 2), **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", help="comma-separated names in architectures/imagenet/ (default: all)")
    parser.add_argument("--size", type=int, default=64, help="input height and width (the graph's ops do not depend on it)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=0,
                        help="then time this many steps of each instantiation, alternating (the same graph: a noise check)")
    args = parser.parse_args()
    names = args.networks.split(",") if args.networks else sorted(
        path.stem for path in (ROOT / "architectures" / "imagenet").glob("*.yaml"))
    failed = False
    for name in names:
        row = compare(name, args.size, args.batch, args.steps)
        failed |= not row["same"]
        print(json.dumps(row), flush=True)
        tf.keras.backend.clear_session()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
