#!/bin/bash
# One-off (seventeenth session, Zen 4): `cli.py train`'s first step with archbuilder/xla_cache.py's
# persistent XLA cache off (ARCHBUILDER_XLA_CACHE=0) and on, alternating, EfficientNet-B1 and
# ResNet-101 (or NETS) through bench/zoo_speed.py --who ours --warm-cache (kernel choices cached). The
# first 'on' run of a network fills the shared folder; later ones load from it. ROUNDS: "1 2" by default.
#   bash bench/cpu-avx512bf16-2026-12-06s/xla_cache_ab.sh
#   NETS=convnext_tiny ROUNDS="1 2 3" bash bench/cpu-avx512bf16-2026-12-06s/xla_cache_ab.sh
cd "$(dirname "$0")/../.."
for net in ${NETS:-efficientnet_b1 resnet101}; do
for r in ${ROUNDS:-1 2}; do
  for mode in off on; do
    if [ $mode = off ]; then E="ARCHBUILDER_XLA_CACHE=0"; else E="X=1"; fi
    echo "== $net round $r xla cache $mode $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/')"
    env $E ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/zoo_speed.py --who ours --warm-cache --rounds 1 --networks $net 2>&1 | grep -E "^\| [a-z]" | awk -F'|' '{print "images/s", $4, "| first step extra", $8, "| start to first step end", $12}'
  done
done
done
ls ~/.cache/archbuilder/
