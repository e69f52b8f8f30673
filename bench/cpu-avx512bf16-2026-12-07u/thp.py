import mmap, time, sys, ctypes
n = int(float(sys.argv[1]) * 2**30); huge = sys.argv[2] == "1"
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
if huge: m.madvise(mmap.MADV_HUGEPAGE)
import numpy as np
a = np.frombuffer(m, dtype=np.uint8)
t = time.perf_counter(); a[::4096] = 1; t1 = time.perf_counter() - t
ahp = [l for l in open("/proc/self/smaps_rollup") if "AnonHuge" in l][0].split()[1]
t = time.perf_counter(); a[::4096] = 2; t2 = time.perf_counter() - t
print(f"huge={huge} {sys.argv[1]} GiB first touch {t1:.3f} s, again {t2:.3f} s, AnonHugePages {int(ahp)//1024} MiB")
