"""Needs commit 4f98c14 or 0cc6f81 (set_train_rewrites with the scheduling level; reverted after).
ResNet-152's training step (train's switches), its first call under one_grappler_round, grappler's log on:
MEMOPT=default keeps the memory optimizer's default level (gpu_present patched to True for the rewrite only)."""
import os, sys, time
os.environ.setdefault("FIRST_STEP_SPEC", "architectures/imagenet/resnet152.yaml")
os.environ.setdefault("FIRST_STEP_SIZE", "224")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"; os.environ["TF_CPP_VMODULE"] = "meta_optimizer=1"
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2] if "bench" in __file__ else __import__("pathlib").Path("/work/main")
sys.path.insert(0, str(ROOT)); os.chdir(ROOT)
from bench import first_step as fs
from archbuilder.runtime import import_tensorflow_quietly
tf = import_tensorflow_quietly()
import numpy as np
from archbuilder.training import grappler_rounds
if os.environ.get("MEMOPT") == "default":
    grappler_rounds.gpu_present = lambda: True
from archbuilder.training import first_step
with grappler_rounds.one_grappler_round():
    model = fs._switched_model("default")
    S, B = fs.SIZE, 8
    spec = (tf.TensorSpec((None, S, S, 3)), tf.TensorSpec((None, 10)))
    first_step.build_before_tracing(model, spec)
    c = tf.function(model.train_step).get_concrete_function(spec)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((B, S, S, 3), dtype="float32")); y = tf.one_hot(rng.integers(0, 10, B), 10)
    t = time.perf_counter(); float(c((x, y))["loss"]); print("first call", round(time.perf_counter() - t, 2), file=sys.stderr)
