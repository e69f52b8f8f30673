#!/bin/bash
# fit start -> first step end ("graph ready") of cli.py train NET b32, touch off/on alternating
cd "$(dirname "$0")/../.."
NET=${NET:-resnet152}; G=${G:-5}
for r in $(seq 1 ${ROUNDS:-3}); do for v in $G 0; do
  rm -rf /tmp/fsm/ab_run
  s=$(date +%s.%N)
  out=$(TOUCH_GIB=$v ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/cpu-avx512bf16-2026-12-07u/touch_cli.py train architectures/imagenet/$NET.yaml --data /tmp/fsm/zoo2 --out /tmp/fsm/ab_run --epochs 1 --batch-size 32 2>&1)
  ips=$(python3 -c "import json; print(json.load(open('/tmp/fsm/ab_run/state.json'))['history'][0]['images_per_second'])")
  echo "$NET round $r touch=$v $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') :: $(echo "$out" | grep -E 'graph ready|^touch' | tr '\n' ' ') :: images/s $ips"
done; done
