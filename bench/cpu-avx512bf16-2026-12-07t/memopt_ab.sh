#!/bin/bash
# fit start -> first step end of `cli.py train` ResNet-152 b32, grappler's memory optimizer at train's
# scheduling level (new) and TensorFlow's default, alternating.  DATA=<10 class folders> bash memopt_ab.sh
cd "$(dirname "$0")/../.."
for r in $(seq 1 ${ROUNDS:-2}); do for m in new default; do
  rm -rf /tmp/ab_run
  out=$(MEMOPT=$m ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/cpu-avx512bf16-2026-12-07t/memopt_cli.py train architectures/imagenet/resnet152.yaml --data "$DATA" --out /tmp/ab_run --epochs 1 --batch-size 32 2>&1)
  ips=$(python3 -c "import json; print(json.load(open('/tmp/ab_run/state.json'))['history'][0]['images_per_second'])")
  echo "resnet152 round $r memopt=$m $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') :: $(echo "$out" | grep 'graph ready') :: images/s $ips"
done; done
