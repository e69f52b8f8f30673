"""cli.py printing RSS and TensorFlow's CPU pool at fit start and after each batch (scratch)."""
import os, sys, time
sys.argv = ["cli.py"] + sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from archbuilder.training import loop
original = loop._graph_preparation
def rss():
    for l in open("/proc/self/status"):
        if l.startswith(("VmRSS", "VmHWM")): yield l.split()[1]
def show(what):
    import tensorflow as tf
    m = tf.config.experimental.get_memory_info("CPU:0")
    r = list(rss()); minflt = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
    print(f"MEM {what}: RSS {int(r[1])/2**20:.2f} GiB (HWM {int(r[0])/2**20:.2f}), pool current {m['current']/2**30:.2f} peak {m['peak']/2**30:.2f} GiB, minflt {minflt/1e6:.2f} M", flush=True)
def patched():
    cb = original()
    b, e, t = cb.on_train_begin, cb.on_train_batch_end, cb.on_train_end
    def on_train_begin(logs=None): show("fit start"); return b(logs)
    def on_train_batch_end(batch, logs=None): r = e(batch, logs); show(f"batch {batch} end"); return r
    def on_train_end(logs=None): show("fit end (the epoch's checkpoint saved)"); return t(logs)
    cb.on_train_begin, cb.on_train_batch_end, cb.on_train_end = on_train_begin, on_train_batch_end, on_train_end
    return cb
loop._graph_preparation = patched
import atexit; atexit.register(lambda: show("exit"))
from archbuilder.cli import run
run()
