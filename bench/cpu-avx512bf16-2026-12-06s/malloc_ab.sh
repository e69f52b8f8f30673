#!/bin/bash
# One-off (seventeenth session, Zen 4): `cli.py train` (bench/zoo_speed.py --who ours, the user's
# kernel cache) with glibc's malloc as installed and with bench/peers/malloc.py's `keep` settings,
# alternating, $2 rounds of network(s) $1; STEPS (default 6) steps a run.
#   STEPS=14 bash bench/cpu-avx512bf16-2026-12-06s/malloc_ab.sh efficientnet_b0 3
cd "$(dirname "$0")/../.."
for r in $(seq 1 $2); do
  for mode in default keep; do
    if [ $mode = keep ]; then E="MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4611686018427387904"; else E="X=1"; fi
    echo "== round $r $mode $(uptime)"
    env $E ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/zoo_speed.py --who ours --warm-cache --rounds 1 --steps ${STEPS:-6} --networks $1 2>&1 | grep -E "^\| [a-z]" 
  done
done
