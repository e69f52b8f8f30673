"""Fresh-memory cost on this VM: write GB of new memory (numpy), time it; then again (kept)."""
import sys, time, numpy as np
gb = float(sys.argv[1])
n = int(gb * 2**30 // 8)
t = time.perf_counter(); a = np.empty(n); a.fill(1.0); t1 = time.perf_counter() - t
t = time.perf_counter(); a.fill(2.0); t2 = time.perf_counter() - t
print(f"{gb} GB fresh {t1:.2f} s ({t1/gb:.2f} s/GB), again {t2:.3f} s")
