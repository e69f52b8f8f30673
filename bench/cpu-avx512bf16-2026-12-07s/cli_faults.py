"""One-off (eighteenth session, Zen 4; needs archbuilder/training/first_step_memory.py, commit 28890bf):
`cli.py train` with time, minor page faults and CPU seconds printed at fit's start, the warm-up thread's
start and end, and the first step's end (MARK lines). Arguments: cli.py's."""
import sys, resource, time
sys.argv = ["cli.py"] + sys.argv[1:]
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from archbuilder.runtime import configure_tensorflow_environment
configure_tensorflow_environment()
from archbuilder.training import first_step, first_step_memory as fsm
def mark(tag):
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(f"MARK {tag} t={time.perf_counter():.2f} minflt={r.ru_minflt} cpu={r.ru_utime+r.ru_stime:.2f}", flush=True)
b, e = first_step.GraphPreparation.on_train_begin, first_step.GraphPreparation.on_train_batch_end
def on_begin(self, logs=None): mark("fit-begin"); return b(self, logs)
def on_end(self, batch, logs=None):
    if self.seconds is None: mark("first-step-end")
    return e(self, batch, logs)
first_step.GraphPreparation.on_train_begin = on_begin; first_step.GraphPreparation.on_train_batch_end = on_end
t = fsm.FirstStepMemory._touch_then_measure
def touch(self, total):
    mark("touch-start"); t(self, total); mark("touch-end")
fsm.FirstStepMemory._touch_then_measure = touch
from archbuilder.cli import main
main()
