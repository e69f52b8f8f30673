#!/bin/bash
# One-off (eighteenth session, Zen 4; needs first_step_memory.py, commit 28890bf): `cli.py train`'s first step without and with
# archbuilder/training/first_step_memory.py's warm-up, alternating, through bench/zoo_speed.py --who
# ours --warm-cache (kernel choices cached). "off": the first-step-memory cache file removed first,
# so the run touches nothing and records its step's peak; "on": the next run, which touches that much.
#   NETS="resnet152 resnet101" ROUNDS="1 2" bash bench/cpu-avx512bf16-2026-12-07s/first_step_memory_ab.sh
cd "$(dirname "$0")/../.."
CACHE=${ARCHBUILDER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/archbuilder}
for net in ${NETS:-resnet152 resnet101}; do
for r in ${ROUNDS:-1 2}; do
  for mode in off on; do
    if [ $mode = off ]; then rm -f "$CACHE"/first-step-memory-*.json; fi
    echo "== $net round $r warm-up $mode $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/')"
    ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/zoo_speed.py --who ours --warm-cache --rounds 1 --networks $net 2>&1 | grep -E "^\| [a-z]" | awk -F'|' '{print "images/s", $4, "| first step extra", $8, "| start to first step end", $12}'
  done
done
done
