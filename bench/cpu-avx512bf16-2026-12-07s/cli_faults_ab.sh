#!/bin/bash
# One-off (eighteenth session, Zen 4; needs first_step_memory.py, commit 28890bf): cli_faults.py's MARK lines,
# warm-up off (its cache file removed) and on, alternating, three rounds of NET (resnet152).
cd "$(dirname "$0")/../.."
# DATA: 10 class folders of the first 7 sign-language photos each (links), e.g. made with
#   for c in 0 1 2 3 4 5 6 7 8 9; do mkdir -p $DATA/$c; ls ../shared/datasets/sign-language-digits/images/$c | head -7 | while read f; do ln -s "$(realpath ../shared/datasets/sign-language-digits/images/$c/$f)" $DATA/$c/; done; done
DATA=${DATA:-/tmp/fsm/zoo2}
for r in 1 2 3; do for mode in off on; do
  [ $mode = off ] && rm -f ~/.cache/archbuilder/first-step-memory-*.json
  rm -rf /tmp/first-step-memory-ab-run
  echo "== round $r $mode $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/')"
  ARCHBUILDER_MAX_MEMORY=22GiB .venv/bin/python bench/cpu-avx512bf16-2026-12-07s/cli_faults.py train architectures/imagenet/${NET:-resnet152}.yaml --data $DATA --out /tmp/first-step-memory-ab-run --epochs 1 --batch-size 32 2>&1 | grep -E 'MARK|graph ready'
done; done
