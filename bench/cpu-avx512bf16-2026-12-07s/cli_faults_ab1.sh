#!/bin/bash
# One-off (eighteenth session, Zen 4): cli_faults_ab.sh with the touch as a one-thread tf.data pipeline
# (one_thread_touch.diff), run from a worktree of 28890bf with that diff applied; PY: the main checkout's venv.
cd "$(dirname "$0")/../.."
DATA=${DATA:-/tmp/fsm/zoo2}
PY=${PY:-/work/main/.venv/bin/python}
for r in $(seq 1 ${ROUNDS:-4}); do for mode in off on; do
  [ $mode = off ] && rm -f ~/.cache/archbuilder/first-step-memory-*.json
  rm -rf /tmp/first-step-memory-ab-run
  echo "== round $r $mode $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/')"
  ARCHBUILDER_MAX_MEMORY=22GiB $PY bench/cpu-avx512bf16-2026-12-07s/cli_faults.py train architectures/imagenet/${NET:-resnet152}.yaml --data $DATA --out /tmp/first-step-memory-ab-run --epochs 1 --batch-size 32 2>&1 | grep -E 'MARK|graph ready'
done; done
