"""One-off (eighteenth session, Zen 4): TensorFlow's CPU pool (get_memory_info) over the first two training
steps against the size guard's static estimate:  .venv/bin/python bench/cpu-avx512bf16-2026-12-07s/pool_peak.py resnet101 32"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu-avx512bf16-2026-12-06s"))
from first_call_setup import model_as_train, tf
from archbuilder.plan.validate import load_checked_spec
from archbuilder.plan.size_guard import estimate
net, batch = sys.argv[1], int(sys.argv[2])
checked = load_checked_spec(str(Path(__file__).resolve().parents[2] / "architectures" / "imagenet" / f"{net}.yaml"), overrides=["classes=10"])
est = estimate(checked.plan, batch, True, 2)
model, x, y, _ = model_as_train(net, batch)
before = tf.config.experimental.get_memory_info('CPU:0')
tf.config.experimental.reset_memory_stats('CPU:0')
model.train_on_batch(x, y)
p1 = tf.config.experimental.get_memory_info('CPU:0')
tf.config.experimental.reset_memory_stats('CPU:0')
model.train_on_batch(x, y)
p2 = tf.config.experimental.get_memory_info('CPU:0')
G = 2**30
print(f"{net} b{batch}: before {before['current']/G:.2f} step1 peak {p1['peak']/G:.2f} (+{(p1['peak']-before['current'])/G:.2f}) step2 peak {p2['peak']/G:.2f} cur {p2['current']/G:.2f}; estimate act {est.activation_bytes/G:.2f} weights {est.weight_bytes/G:.2f}")
