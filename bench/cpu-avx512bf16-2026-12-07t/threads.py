"""  .venv/bin/python bench/cpu-avx512bf16-2026-12-07t/threads.py .venv/bin/python cli.py train ...   # threads_r152.log
  COUNTER=system|faults ... (twentieth session: ../cpu-avx512bf16-2026-12-07u/threads_r152_system_faults.log)

Run a command; sample its threads' CPU (or system seconds, or page faults: COUNTER) every 0.2 s; time-stamp its output lines;
print per-thread-name CPU seconds between marker lines."""
import subprocess, sys, time, os, threading, collections
TCK = os.sysconf("SC_CLK_TCK")
# COUNTER=cpu (user + system seconds, the default), system (seconds in the kernel) or faults (minor
# page faults, in units of 100,000: "1.5" is 150,000). proc(5) stat fields 10, 14, 15.
COUNTERS = {"cpu": lambda f: (int(f[11]) + int(f[12])) / TCK, "system": lambda f: int(f[12]) / TCK,
            "faults": lambda f: int(f[7]) / 1e5}
COUNTER = os.environ.get("COUNTER", "cpu")
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
samples = []  # (t, {tid: (name, cpu)})
def sample():
    while p.poll() is None:
        snap = {}
        try:
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                try:
                    s = open(f"/proc/{p.pid}/task/{tid}/stat").read()
                    name = s[s.index("(") + 1:s.rindex(")")]
                    f = s[s.rindex(")") + 2:].split()
                    snap[tid] = (name, COUNTERS[COUNTER](f))
                except OSError: pass
        except OSError: break
        samples.append((time.perf_counter() - t0, snap))
        time.sleep(0.2)
th = threading.Thread(target=sample, daemon=True); th.start()
marks = []
for line in p.stdout:
    if 'WARNING' in line or 'I0000' in line or 'E0000' in line: continue
    t = time.perf_counter() - t0
    print(f"{t:7.2f} {line.rstrip()[:160]}", flush=True)
    for key in ("training ", "preparing the graph", "graph ready", "after training"):
        if line.startswith(key) and key not in [m[1] for m in marks]: marks.append((t, key))
p.wait(); th.join()
def at(t):
    return min(samples, key=lambda s: abs(s[0] - t))[1]
def bynames(a, b):
    out = collections.Counter()
    for tid, (name, cpu) in b.items():
        out[f"{name}:{'main' if tid == str(p.pid) else tid}"] += cpu - a.get(tid, (name, 0))[1]
    return out
marks.append((samples[-1][0], "end"))
for (ta, ka), (tb, kb) in zip(marks, marks[1:]):
    c = bynames(at(ta), at(tb))
    print(f"--- {ka!r} -> {kb!r}: {tb - ta:.1f} s wall, {sum(c.values()):.1f} CPU s")
    for name, cpu in c.most_common(12):
        if cpu >= 0.05: print(f"   {cpu:6.2f} {name}")
# per-second deltas per tid from "preparing the graph" on, for 30 s
prep = next(t for t, k in marks if k == "preparing the graph")
print("--- per second from 'preparing the graph' (CPU s per thread; main first)")
prev = at(prep)
tids = sorted({tid for _, s in samples for tid in s})
for sec in range(1, 31):
    cur = at(prep + sec)
    d = {tid: cur[tid][1] - prev.get(tid, (None, 0))[1] for tid in cur}
    top = sorted(((v, tid) for tid, v in d.items() if v > 0.05), reverse=True)
    print(f"{sec:3d}s " + " ".join(f"{'main' if tid == str(p.pid) else cur[tid][0][:6] + ':' + tid}={v:.2f}" for v, tid in top))
    prev = cur
