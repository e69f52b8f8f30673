"""One-off (seventeenth session, Zen 4): the first training call of a zoo network as `train` makes it
(bench/fused_kernels.py `make` + `switch_as_train`, the optimizer's variables built before the trace
as training/first_step.py does), then two more; prints the first call's extra over the faster later
one. Run with TensorFlow's persistent XLA cache (a fresh folder, then the same folder again) to see
what the cached compiles of the fused kernels save:

    rm -rf /tmp/xlac1; for i in 1 2; do TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=/tmp/xlac1 \
        .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/xla_cache_first_call.py resnet101 32; done
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from bench.fused_kernels import make, switch_as_train
import keras, numpy as np, tensorflow as tf
from archbuilder.training.first_step import build_before_tracing
net, batch = sys.argv[1], int(sys.argv[2])
model = make(net, []); switch_as_train(model, batch)
x = np.random.RandomState(0).uniform(0, 255, (batch, *model.input_shape[1:])).astype("float32")
y = keras.utils.to_categorical(np.arange(batch) % 10, 10)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
build_before_tracing(model, ds.element_spec)
times = []
for i in range(3):
    t = time.perf_counter(); model.train_on_batch(x, y); times.append(time.perf_counter() - t)
print(f"{net}: first {times[0]:.2f} s, later {times[1]:.2f} {times[2]:.2f}, extra {times[0] - min(times[1:]):.2f} s")
