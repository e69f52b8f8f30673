"""One-off (seventeenth session, Zen 4): TensorFlow's profiler over the *first* training call of a zoo
network as `train` makes it (switches from the user's cache, variables built before the trace);
prints the first and two later calls' seconds, each thread kind's own event time, and the events
with the most own time (bench/step_profile.py `own_times`).

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/first_call_profile.py resnet101 32
    ONEDNN_VERBOSE=profile_create .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/first_call_profile.py resnet101 32 | grep -c create
"""
import collections
import sys
import time

from first_call_setup import model_as_train  # this script's folder

from bench.step_profile import line_events, own_times, profiled

net, batch = sys.argv[1], int(sys.argv[2])
model, x, y, variables = model_as_train(net, batch)
print("variables", round(variables, 2))
first, space = profiled(lambda: model.train_on_batch(x, y))
t = time.perf_counter(); model.train_on_batch(x, y); second = time.perf_counter() - t
t = time.perf_counter(); model.train_on_batch(x, y); third = time.perf_counter() - t
print(f"first {first:.2f} s, then {second:.2f}, {third:.2f}")
by_line = collections.Counter(); own = collections.Counter()
for plane in space.planes:
    for line in plane.lines:
        events = line_events(plane, line)
        if not events: continue
        lname = line.name.split("/")[0][:24]
        o = own_times(events)
        for k, v in o.items(): own[(lname, k[:70])] += v
        by_line[lname] += sum(o.values())
print("per thread kind (own ms):", [(k, round(v)) for k, v in by_line.most_common(10)])
for (l, k), v in own.most_common(40): print(f"{v:9.1f} {l:24s} {k}")
