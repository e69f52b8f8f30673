import sys
sys.argv = ["x", "resnet50"]
exec(open(__file__.replace("memdiff.py", "passes.py")).read().split("for network in")[0])
network = "resnet50"
first_step.SPEC, first_step.SIZE = ROOT / "architectures" / "imagenet" / f"{network}.yaml", 64
model = first_step._switched_model("default")
spec = (tf.TensorSpec((None, 64, 64, 3)), tf.TensorSpec((None, 10)))
build_before_tracing(model, spec)
concrete = tf.function(model.train_step).get_concrete_function(spec)
for v in ("no_memopt", "no_common"):
    _, a = optimized(concrete, "base"); _, b = optimized(concrete, v)
    na = {n.name: n for n in a.node}; nb = {n.name: n for n in b.node}
    print(v, "nodes", len(na), len(nb), "only base", list(set(na) - set(nb))[:8], "only variant", list(set(nb) - set(na))[:8])
    order_same = [n.name for n in a.node] == [n.name for n in b.node]
    print(" order same", order_same)
    diff = [k for k in na if k in nb and na[k].SerializeToString(deterministic=True) != nb[k].SerializeToString(deterministic=True)]
    print(" nodes differing", len(diff))
    for k in diff[:3]:
        x, y = na[k], nb[k]
        print("  ", k, x.op, y.op, list(x.input) == list(y.input), sorted(set(x.attr) ^ set(y.attr)), [key for key in x.attr if key in y.attr and x.attr[key] != y.attr[key]])
        if list(x.input) != list(y.input): print("    in", list(x.input)[:6], list(y.input)[:6])
    print(" library same", a.library.SerializeToString(deterministic=True) == b.library.SerializeToString(deterministic=True))
