#!/bin/bash
# fit start -> first step end ("graph ready") of `cli.py train` ResNet-152 at batch 32, the one-function
# switch on (ONE_FN=1) and off, alternating. DATA: 10 class folders of photos (the zoo's 200 sign photos:
# 20 per class from ../shared/datasets/sign-language-digits, linked).
#   DATA=/tmp/fsm/zoo bash bench/cpu-avx512bf16-2026-12-07t/ab_r152.sh   # ab_r152.log
cd "$(dirname "$0")/../.."
NET=${NET:-resnet152}
for r in $(seq 1 ${ROUNDS:-3}); do for v in 1 0; do
  rm -rf /tmp/ab_run
  out=$(ONE_FN=$v ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/cpu-avx512bf16-2026-12-07t/ab_cli.py train architectures/imagenet/$NET.yaml --data "$DATA" --out /tmp/ab_run --epochs 1 --batch-size 32 2>&1)
  ips=$(python3 -c "import json; print(json.load(open('/tmp/ab_run/state.json'))['history'][0]['images_per_second'])")
  echo "$NET round $r one_fn=$v $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') :: $(echo "$out" | grep 'graph ready') :: images/s $ips"
done; done
