"""Time every untimed shape of the budgeted switches for the given zoo files now (no budget), so a
zoo round measures the machine's steady state (what a user's later runs get)."""
import sys, time
sys.path.insert(0, ".")
from archbuilder.runtime import import_tensorflow_quietly
import_tensorflow_quietly()
import archbuilder
from archbuilder.training.depthwise_choice import switch_depthwise_gradient_where_faster
from archbuilder.training.pointwise_choice import switch_pointwise_where_faster, switch_separable_where_faster
from archbuilder.training.timed_switch import TimingBudget
for name in sys.argv[1:]:
    t = time.time()
    model = archbuilder.build(f"architectures/imagenet/{name}.yaml")
    budget = TimingBudget(seconds=1e9)
    for switch in (switch_pointwise_where_faster, switch_separable_where_faster, switch_depthwise_gradient_where_faster):
        switch(model, 32, lambda m: print("  ", m[:160]), budget)
    print(name, f"{time.time() - t:.1f} s", flush=True)
