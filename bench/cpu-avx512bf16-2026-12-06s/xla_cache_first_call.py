"""One-off (seventeenth session, Zen 4): the first training call of a zoo network as `train` makes it
(bench/fused_kernels.py `make` + `switch_as_train`, the optimizer's variables built before the trace
as training/first_step.py does), then two more; prints the first call's extra over the faster later
one. Run with TensorFlow's persistent XLA cache (a fresh folder, then the same folder again) to see
what the cached compiles of the fused kernels save:

    rm -rf /tmp/xlac1; for i in 1 2; do TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=/tmp/xlac1 \
        .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/xla_cache_first_call.py resnet101 32; done
"""
import sys
import time

from first_call_setup import model_as_train  # this script's folder

net, batch = sys.argv[1], int(sys.argv[2])
model, x, y, _ = model_as_train(net, batch)
times = []
for i in range(3):
    t = time.perf_counter(); model.train_on_batch(x, y); times.append(time.perf_counter() - t)
print(f"{net}: first {times[0]:.2f} s, later {times[1]:.2f} {times[2]:.2f}, extra {times[0] - min(times[1:]):.2f} s")
