#!/bin/bash
# Every measurement of issue 12 that depends on the CPU kind, one after another, on this machine:
#
#     bash bench/cpu_kind.sh [--quick]
#
# Run it on a quiet machine (nothing else running: the figures are ratios taken in one run, but a
# second process on 2 cores still moves them). ~70 minutes on 2 cores; --quick skips the accuracy
# runs (~25 minutes). It needs `./setup.sh` and the bench extra (`.venv/bin/pip install -e '.[bench]'`,
# PyTorch's CPU build) and writes, each named after the CPU kind and the date:
#
#   bench/cpu-<kind>-<date>/lscpu.txt           the CPU's model and flags (<date>b/, c/... for
#                                               later runs the same day)
#   .../suite.log                               the default test suite on this CPU
#   .../kernel_gradients.log                    issue 12 item 2: TensorFlow's kernel gradient against the matmul
#   .../first_step.log                          item 4: where the first step's time goes
#   .../train_speed.log                         item 3: cli (float32 and mixed_bfloat16) against PyTorch
#                                               (eager and compiled, float32 and bf16 autocast), Keras
#                                               with TensorFlow's defaults, and the float32 matmul ceiling
#   .../accuracy-*.json (not with --quick)      item 3's bf16 decision and item 5: the shipped recipe on
#                                               the held-out photographers, float32 and mixed_bfloat16
#
# <kind> is amx where /proc/cpuinfo lists amx_bf16 (an Intel Xeon with AMX), avx512bf16 where it
# lists avx512_bf16 (Zen 4, Zen 5), avx512 for other AVX-512 CPUs, else avx2 (Zen 3). Copy the figures into bench/RESULTS.md with the commands below.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
quick=${1:-}

if grep -qw amx_bf16 /proc/cpuinfo; then kind=amx  # Intel Xeon with AMX tiles (oneDNN's bf16 and int8 matmuls)
elif grep -qw avx512_bf16 /proc/cpuinfo; then kind=avx512bf16
elif grep -qw avx512f /proc/cpuinfo; then kind=avx512
else kind=avx2; fi
# A second run the same day gets its own folder (-b, -c, ...): never overwrite an earlier run's logs.
out=bench/cpu-$kind-$(date -u +%F)
for suffix in "" b c d e f g h i j k l m n o p q r s t u v w x y z; do
  if mkdir "$out$suffix" 2>/dev/null; then out=$out$suffix; break; fi
  if [ "$suffix" = z ]; then echo "bench/cpu_kind.sh: $out and $out[b-z] exist; move some away" >&2; exit 2; fi
done
lscpu > "$out/lscpu.txt"
echo "CPU kind: $kind ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); writing $out/"

step() {  # step NAME COMMAND...: runs COMMAND, its output into $out/NAME.log, and says how long it took
  local name=$1; shift
  local start=$SECONDS
  echo "$(date -u +%H:%M:%S) $name: $*"
  "$@" > "$out/$name.log" 2>&1 || echo "  $name exited with $? (see $out/$name.log)"
  echo "  $((SECONDS - start)) s"
}

step suite "$PY" -m pytest -q -p no:cacheprovider
step kernel_gradients "$PY" bench/kernel_gradients.py --repeats 9
step first_step "$PY" bench/first_step.py --repeats 2 --configs default,before
# 80 photos a digit: 25 steps an epoch, enough for bf16's warm-up steps to drop out of the median.
step train_speed "$PY" bench/train_speed.py --per-class 80 --repeats 3 \
  --configs cli,cli-bf16,torch-eager-fp32,torch-compile-fp32,torch-eager-bf16,torch-compile-bf16,keras-default,matmul

if [ "$quick" != "--quick" ]; then
  recipe=architectures/recipes/resnet50_signs_fast.yaml
  step accuracy-float32 "$PY" bench/accuracy.py --only 10 --spec $recipe --seed 0 --tag "cpu-$kind-float32"
  step accuracy-bf16 "$PY" bench/accuracy.py --only 10 --spec $recipe --seed 0 --tag "cpu-$kind-bf16" \
    --set training.precision=mixed_bfloat16
  mv bench/accuracy-cpu-"$kind"-* "$out"/
fi
echo "done: $out/"
