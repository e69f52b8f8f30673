"""cli.py with cProfile from fit's start ("preparing the graph") to the end of the first step."""
import sys, cProfile, pstats, time
sys.argv = ["cli.py"] + sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from archbuilder.training import first_step
prof = cProfile.Profile()
b, e = first_step.GraphPreparation.on_train_begin, first_step.GraphPreparation.on_train_batch_end
def on_begin(self, logs=None):
    r = b(self, logs); prof.enable(); return r
def on_end(self, batch, logs=None):
    if self.seconds is None:
        prof.disable()
        st = pstats.Stats(prof, stream=sys.stderr); st.sort_stats("cumulative").print_stats(60)
        st.sort_stats("tottime").print_stats(25)
    return e(self, batch, logs)
first_step.GraphPreparation.on_train_begin = on_begin; first_step.GraphPreparation.on_train_batch_end = on_end
from archbuilder.cli import run
run()
