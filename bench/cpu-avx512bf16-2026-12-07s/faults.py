"""One-off (eighteenth session, Zen 4): minor page faults, RSS and the pool per training step of a zoo
network as `train` makes it:  .venv/bin/python bench/cpu-avx512bf16-2026-12-07s/faults.py resnet101 32"""
import sys, time, resource
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu-avx512bf16-2026-12-06s"))
from first_call_setup import model_as_train, tf
net, batch = sys.argv[1], int(sys.argv[2])
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key): return int(line.split()[1]) / 2**20
model, x, y, _ = model_as_train(net, batch)
for i in range(4):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; t = time.perf_counter()
    model.train_on_batch(x, y)
    dt = time.perf_counter() - t; f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(f"step {i}: {dt:.2f} s, minor faults {f1-f0} ({(f1-f0)*4/2**20:.2f} GiB if 4K), RSS {status('VmRSS'):.2f} HWM {status('VmHWM'):.2f} pool {tf.config.experimental.get_memory_info('CPU:0')['current']/2**30:.2f}")
