"""Which of grappler's passes can be left out of train's step with the optimized graph the same,
byte for byte (node order included), and how much time each saves. Scratch."""
import sys, time, statistics, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from archbuilder.runtime import import_tensorflow_quietly
tf = import_tensorflow_quietly()
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2 as rc
from tensorflow.python.grappler import tf_optimizer
from archbuilder.training.first_step import build_before_tracing
from archbuilder.training.grappler_rounds import set_train_rewrites
from bench import first_step
from bench.grappler_rounds import step_meta_graph
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
OFF = rc.RewriterConfig.OFF
VARIANTS = {
    "base": lambda r: None,
    "no_layout": lambda r: setattr(r, "layout_optimizer", OFF),
    "no_memopt": lambda r: setattr(r, "memory_optimization", rc.RewriterConfig.NO_MEM_OPT),
    "no_implsel": lambda r: setattr(r, "implementation_selector", OFF),
    "no_pin": lambda r: setattr(r, "pin_to_host_optimization", OFF),
    "no_loop": lambda r: setattr(r, "loop_optimization", OFF),
    "no_shape": lambda r: setattr(r, "shape_optimization", OFF),
    "no_debug": lambda r: setattr(r, "debug_stripper", OFF),
    "no_common": lambda r: setattr(r, "common_subgraph_elimination", OFF),
    "sched": lambda r: setattr(r, "memory_optimization", rc.RewriterConfig.SCHEDULING_HEURISTICS),
    "lean": lambda r: [setattr(r, k, OFF) for k in ("layout_optimizer", "implementation_selector", "pin_to_host_optimization", "loop_optimization", "shape_optimization", "debug_stripper")],
}
import os
if os.environ.get("ONLY"): VARIANTS = {k: VARIANTS[k] for k in os.environ["ONLY"].split(",")}
def optimized(concrete, variant):
    meta = step_meta_graph(concrete)  # as bench/grappler_rounds.py hands the step to grappler
    config = config_pb2.ConfigProto()
    set_train_rewrites(config.graph_options.rewrite_options)
    VARIANTS[variant](config.graph_options.rewrite_options)
    t = time.perf_counter()
    g = tf_optimizer.OptimizeGraph(config, meta, verbose=False, graph_id=b"step")
    return time.perf_counter() - t, g
for network in sys.argv[1].split(","):
    first_step.SPEC, first_step.SIZE = ROOT / "architectures" / "imagenet" / f"{network}.yaml", 64
    model = first_step._switched_model("default")
    spec = (tf.TensorSpec((None, 64, 64, 3)), tf.TensorSpec((None, 10)))
    build_before_tracing(model, spec)
    concrete = tf.function(model.train_step).get_concrete_function(spec)
    times = {v: [] for v in VARIANTS}; graphs = {}
    for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
        for v in (list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]):
            s, g = optimized(concrete, v); times[v].append(s); graphs.setdefault(v, g.SerializeToString(deterministic=True))
    base = graphs["base"]
    print(json.dumps({"network": network, "nodes": len(concrete.graph.get_operations()),
        **{v: [round(statistics.median(times[v]), 3), graphs[v] == base] for v in VARIANTS},
        **({"attr": sum(b"_grappler_relax_allocator_constraints" in n.SerializeToString() for n in __import__("tensorflow").compat.v1.GraphDef.FromString(graphs["sched"]).node)} if "sched" in graphs else {})}), flush=True)
    tf.keras.backend.clear_session()
