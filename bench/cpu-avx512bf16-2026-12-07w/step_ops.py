"""What train's traced step is made of: its ops by type, its captured variables, and (--profile)
where the trace's seconds go by cProfile (whose overhead makes the trace ~1.8x longer; read the
shares). Scratch, twenty-second session.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-07w/step_ops.py resnet152 64 [--profile]
"""
import collections, cProfile, io, json, pstats, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from archbuilder.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()
from archbuilder.training.first_step import build_before_tracing
from bench import first_step

network, size = sys.argv[1], int(sys.argv[2])
first_step.SPEC, first_step.SIZE = ROOT / "architectures" / "imagenet" / f"{network}.yaml", size
model = first_step._switched_model("default")  # as train switches it
spec = (tf.TensorSpec((None, size, size, 3)), tf.TensorSpec((None, 10)))
build_before_tracing(model, spec)
profile = cProfile.Profile() if "--profile" in sys.argv else None
start = time.perf_counter()
if profile: profile.enable()
concrete = tf.function(model.train_step).get_concrete_function(spec)
if profile: profile.disable()
seconds = time.perf_counter() - start
ops = concrete.graph.get_operations()
print(json.dumps({"network": network, "size": size, "trace_s": round(seconds, 2), "profiled": bool(profile),
                  "ops": len(ops), "captures": len(concrete.graph.captures), "model_variables": len(model.variables),
                  "optimizer_variables": len(model.optimizer.variables), "trainable": len(model.trainable_variables)}))
for count, kind in sorted(((n, k) for k, n in collections.Counter(op.type for op in ops).items()), reverse=True)[:20]:
    print(f"{count:6d} {kind}")
if profile:
    stats = pstats.Stats(profile)
    total = sum(entry[3] for key, entry in stats.stats.items() if key[2] == "get_concrete_function")
    parts = {"forward (the Keras layers' calls)": "functional.py:174(call)", "gradient (the tape)": "TFE_Py_TapeGradient",
             "optimizer (Adam's ops)": "base_optimizer.py:460(apply_gradients)",
             "automatic control dependencies": "auto_control_deps.py:343(__exit__)",
             "variable captures (placeholders)": "capture_container.py:267(_create_placeholder_helper)"}
    for name, where in parts.items():
        cumulative = max((entry[3] for key, entry in stats.stats.items() if where in f"{key[0]}:{key[1]}({key[2]})" or where == key[2].strip("{}").split(".")[-1].split(" ")[-1]), default=0)
        print(f"{name}: {cumulative:.2f} s profiled, {cumulative / total:.0%} of the trace")
