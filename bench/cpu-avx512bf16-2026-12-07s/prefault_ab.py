"""One-off (eighteenth session, Zen 4): the first training call of a zoo network as `train` makes it
(first_call_setup.py), with N GiB of TensorFlow's CPU pool touched and freed before it (`seq`), by a
thread while it traces (`thread`), or not (`none`):
    for m in none seq thread; do .venv/bin/python bench/cpu-avx512bf16-2026-12-07s/prefault_ab.py resnet101 32 4 $m; done"""
import sys, time, threading
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu-avx512bf16-2026-12-06s"))
from first_call_setup import model_as_train, tf
net, batch, gib, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key): return int(line.split()[1]) / 2**20
model, x, y, _ = model_as_train(net, batch)
done = {}
def prefault():
    t = time.perf_counter()
    held = [tf.fill([64, 1024, 1024], 1.0) for _ in range(int(gib * 4))]
    done['end'] = time.perf_counter(); done['s'] = done['end'] - t
    del held
t0 = time.perf_counter()
if mode == 'seq': prefault()
th = threading.Thread(target=prefault)
if mode == 'thread': th.start()
times = []
for i in range(3):
    t = time.perf_counter(); model.train_on_batch(x, y); times.append(time.perf_counter() - t)
first_total = time.perf_counter() - t0 - sum(times[1:])
print(f"{net} {mode} {gib} GiB prefault {done.get('s', 0):.2f} s ended at {done.get('end', t0)-t0:.2f}: first incl. prefault {first_total:.2f}, later {times[1]:.2f} {times[2]:.2f}, extra {first_total-min(times[1:]):.2f} s; HWM {status('VmHWM'):.2f} GiB")
