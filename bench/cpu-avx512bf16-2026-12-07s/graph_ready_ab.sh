#!/bin/bash
# One-off (eighteenth session, Zen 4; needs first_step_memory.py, commit 28890bf): train's "graph ready"
# seconds (fit start to the first step's end) with the warm-up off (its cache file removed: the run records) and on.
cd "$(dirname "$0")/../.."
# DATA: 10 class folders of the first 7 sign-language photos each (links), e.g. made with
#   for c in 0 1 2 3 4 5 6 7 8 9; do mkdir -p $DATA/$c; ls ../shared/datasets/sign-language-digits/images/$c | head -7 | while read f; do ln -s "$(realpath ../shared/datasets/sign-language-digits/images/$c/$f)" $DATA/$c/; done; done
DATA=${DATA:-/tmp/fsm/zoo2}
NET=${NET:-resnet152}
for r in $(seq 1 ${ROUNDS:-4}); do for mode in off on; do
  [ $mode = off ] && rm -f ~/.cache/archbuilder/first-step-memory-*.json
  rm -rf /tmp/first-step-memory-ab-run
  line=$(ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python cli.py train architectures/imagenet/$NET.yaml --data $DATA --out /tmp/first-step-memory-ab-run --epochs 1 --batch-size 32 2>&1 | grep 'graph ready')
  echo "$NET round $r $mode $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') :: $line"
done; done
