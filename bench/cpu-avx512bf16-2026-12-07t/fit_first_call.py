"""  for v in 1 0 1 0; do ONE_FN=$v .venv/bin/python bench/cpu-avx512bf16-2026-12-07t/fit_first_call.py; done   # fit_first_call.log

fit's training function, first call vs later calls, with (ONE_FN=1) or without the one-function
switch: trace (get_concrete_function on the iterator), the first call, two later calls. One process."""
import os, sys, time, json, statistics
os.environ.setdefault("FIRST_STEP_SPEC", "architectures/imagenet/resnet152.yaml")
os.environ.setdefault("FIRST_STEP_SIZE", "224")
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); os.chdir(ROOT)
from bench import first_step as fs
from archbuilder.runtime import import_tensorflow_quietly
tf = import_tensorflow_quietly()
import numpy as np
from archbuilder.training.grappler_rounds import one_grappler_round
from archbuilder.training import first_step
with one_grappler_round():
    model = fs._switched_model("default")
    S, B = fs.SIZE, fs.BATCH
    rng = np.random.default_rng(0)
    x = rng.random((B, S, S, 3), dtype="float32"); y = np.eye(10, dtype="float32")[rng.integers(0, 10, B)]
    ds = tf.data.Dataset.from_tensors((x, y)).repeat(4)
    ds = tf.data.Dataset.from_tensor_slices((np.repeat(x, 4, 0), np.repeat(y, 4, 0))).batch(B)
    first_step.build_before_tracing(model, ds.element_spec)
    if os.environ.get("ONE_FN") == "1":
        from archbuilder.training.unnested_step_functions import use_unnested_step_functions
        assert use_unnested_step_functions(model)
    model.make_train_function()
    fn = model.train_function
    traced = getattr(fn, "step_on_iterator", None) or [c.cell_contents for c in fn.__closure__ if hasattr(c.cell_contents, "_list_all_concrete_functions")][0]
    it = iter(ds)
    t = time.perf_counter(); c = traced.get_concrete_function(it); trace = time.perf_counter() - t
    ops = len(c.graph.get_operations())
    times = []
    for _ in range(4):
        t = time.perf_counter(); float(fn(it)["loss"]); times.append(time.perf_counter() - t)
    later = statistics.median(times[1:])
    print(json.dumps({"one_fn": os.environ.get("ONE_FN"), "trace": round(trace, 2), "ops": ops, "first": round(times[0], 2),
                      "later": [round(t, 2) for t in times[1:]], "first_call_extra": round(times[0] - later, 2),
                      "serial_extra": round(trace + times[0] - later, 2)}))
