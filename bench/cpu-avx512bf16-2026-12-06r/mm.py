import sys, time
n = 2048
if sys.argv[1] == "torch":
    import torch; torch.set_num_threads(2)
    a = torch.randn(n, n); b = torch.randn(n, n); mm = lambda: torch.mm(a, b)
    print(torch.__config__.show().split("\n")[1:4])
else:
    import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    a = tf.random.normal((n, n)); b = tf.random.normal((n, n)); mm = lambda: tf.linalg.matmul(a, b).numpy()
for _ in range(3): mm()
ts = []
for _ in range(15):
    t = time.perf_counter(); mm(); ts.append(time.perf_counter() - t)
ts.sort(); print(sys.argv[1], f"{2*n**3/ts[7]/1e9:.1f} GFLOPS median")
