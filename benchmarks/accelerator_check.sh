#!/usr/bin/env bash
# On a GPU host or a TPU VM: the demo preset and the throughput benchmark on the
# accelerator, each figure printed with the device name.
#
#   make accelerator-check                      # or: bash benchmarks/accelerator_check.sh
#
# Environment: PY (python with lsbench installed; default python3), WORKDIR
# (default runs/accelerator-check), PRESET (default demo), BENCH_ARGS (extra
# flags for the benchmark), ALLOW_CPU=1 (run even when JAX finds no accelerator).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WORKDIR=${WORKDIR:-runs/accelerator-check}
PRESET=${PRESET:-demo}

# Platform, device kind and count, as JAX sees them (tab-separated).
IFS=$'\t' read -r PLATFORM KIND NDEV < <("$PY" -c '
import jax
d = jax.devices()
print(jax.default_backend(), d[0].device_kind, len(d), sep="\t")')
DEVICE="$KIND x$NDEV ($PLATFORM)"
echo "accelerator_check: device $DEVICE, jax $("$PY" -c 'import jax; print(jax.__version__)')"
if [ "$PLATFORM" = cpu ] && [ "${ALLOW_CPU:-0}" != 1 ]; then
  echo "accelerator_check: error: JAX found no GPU or TPU here (platform cpu); install JAX for CUDA" \
       "(pip install -U 'jax[cuda12]') or, on a TPU VM, for TPU (pip install -U 'jax[tpu]'); ALLOW_CPU=1 runs on CPU" >&2
  exit 2
fi
mkdir -p "$WORKDIR"

# 1. The demo preset (finished runs in WORKDIR are reused: remove it for a cold timing).
t0=$(date +%s.%N)
"$PY" -m lsbench.cli.main suite --preset="$PRESET" --workdir="$WORKDIR/suite" --platform="$PLATFORM"
t1=$(date +%s.%N)
"$PY" -m lsbench.cli.main leaderboard --results="$WORKDIR/suite/runs" --out="$WORKDIR/leaderboard" >/dev/null
DEMO=$("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
c = s["counts"]
print("%d/%d runs completed" % (c.get("completed", 0), c["total"]))' "$WORKDIR/suite/suite.json")

# 2. The throughput benchmark (#19's, when present), else the round-rate benchmark.
if [ -f benchmarks/bench_throughput.py ]; then BENCH=benchmarks/bench_throughput.py; else BENCH=benchmarks/bench_round_rate.py; fi
# shellcheck disable=SC2086
"$PY" "$BENCH" ${BENCH_ARGS:-} | tee "$WORKDIR/bench.txt"

echo
echo "== accelerator_check on $DEVICE"
echo "$PRESET preset: $DEMO in $("$PY" -c "print(f'{$t1 - $t0:.1f}')") s wall (board: $WORKDIR/leaderboard/index.html)"
echo "$(basename "$BENCH"): see above, also in $WORKDIR/bench.txt"
