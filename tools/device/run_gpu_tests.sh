#!/usr/bin/env bash
# All GPU tests, the memory checker and the benchmarks in one GPU-machine call.
#
# On the build machine (no GPU needed), from the repository root:
#     bash tools/device/run_gpu_tests.sh pack
#   builds cuda_tests, cuda_bench, cuda_forward_bench and dsv4 in $DSV4_BUILD (default build-cudab,
#   configured with -DCMAKE_CUDA_ARCHITECTURES=90a-real) and copies them without debug sections
#   into out/device/bundle.tar.gz (ignored by git), with the shared libraries dsv4 needs beyond
#   the C/C++ runtime (cpp-httplib, brotli: absent on the GPU machine) in its lib/.
#
# On the GPU machine (device tool: carry ["out/device"]):
#     bash tools/device/run_gpu_tests.sh
#   1. cuda_tests (kernels against the CPU ops, the whole model against the CPU reference and the
#      transformers fixtures, snapshots across backends, sampling)   -> $OUT/gpu_tests.log
#   2. cuda_forward_bench (decode step time per stage) and dsv4 bench --synthetic flash-q2, both
#      with as many layers as the card holds  -> $OUT/forward_bench.log, $OUT/bench.log, bench.csv
#   3. compute-sanitizer memcheck on cuda_tests (default: the kernel tests and the engine's GPU
#      snapshot/sampling tests on the tiny model; the long whole-model comparisons and *Large*
#      tests are left out)                                               -> $OUT/sanitizer.log
#   4. cuda_bench --quick (copy ceiling, matvec GB/s)                    -> $OUT/cuda_bench.log
#   5. racecheck on the matvec launch-shape sweep and SASS instruction counts of the matvec kernels
#      (when time is left)                        -> $OUT/sanitizer.log, $OUT/sass_summary.txt
#   plus $OUT/summary.txt (device, results; printed last). At most 8 files come back from $OUT.
#   Steps share a time budget (DSV4_GPU_BUDGET seconds, default 420). Environment knobs:
#   DSV4_TEST_FILTER (gtest filter of step 1), DSV4_MEMCHECK_FILTER (of step 2),
#   DSV4_BENCH_LAYERS (default: 43 on cards with >= 120 GB, else 30), DSV4_BENCH_FRONTIERS
#   (default 2048,8192), DSV4_BENCH_GEN (default 64); DSV4_SKIP_NCU, DSV4_SKIP_BENCH and
#   DSV4_SKIP_MATVEC_BENCH leave those steps out.
#   Exit status: non-zero if the tests or the memory checker failed (or could not run).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-cudab}
  cmake --build "$BUILD" --target cuda_tests cuda_bench cuda_forward_bench dsv4 -j2
  dsv4_pack "$BUILD" out/device cuda_tests cuda_bench cuda_forward_bench dsv4
  echo "carry out/device and run: bash tools/device/run_gpu_tests.sh"
  exit 0
fi

BIN=${DSV4_GPU_BIN:-out/device}
[[ -f "$BIN/bundle.tar.gz" ]] && BIN=$(dsv4_unpack "$BIN")
BIN=$(cd "$BIN" && pwd)
OUT=${OUT:-$PWD/out/gpu-run}
dsv4_run_start "$BIN" 420

TESTS="$BIN/cuda_tests"
BENCH="$BIN/cuda_bench"
FORWARD_BENCH="$BIN/cuda_forward_bench"
DSV4="$BIN/dsv4"
if ! "$TESTS" --gtest_list_tests >/dev/null 2>/tmp/dsv4-start.txt; then
  note "carried cuda_tests does not start here: $(head -c 300 /tmp/dsv4-start.txt)"
  exit 3
fi

# ---- 1. tests ----
timeout "$(budget 150)" "$TESTS" --gtest_color=no --gtest_filter="${DSV4_TEST_FILTER:-*}" >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
grep -E 'worst rel L2|first position' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"

# ---- 2. whole-model benchmarks ----
timeout "$(budget 90)" "$FORWARD_BENCH" --layers "$layers" --ctx "${DSV4_FORWARD_CTX:-2048}" --steps 64 \
  >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench (flash-q2, $layers layers): exit $?"
cat "$OUT/forward_bench.log" | tee -a "$SUMMARY"
# Kernel by kernel: one un-graphed decode step of layers 0-3 (every layer kind) under ncu.
if command -v ncu >/dev/null && [[ -z "${DSV4_SKIP_NCU:-}" ]]; then
  {
    echo "### ncu: one decode step, 4 layers, context 2100 (gpu__time_duration per kernel)"
    timeout "$(budget 80)" ncu --clock-control none --print-units base --nvtx --nvtx-include "profile/" --metrics gpu__time_duration.sum \
      --csv "$FORWARD_BENCH" --layers 4 --ctx 2100 --steps 2 2>&1 | ncu_kernel_times
  } >>"$OUT/forward_bench.log" 2>&1
  note "ncu: $(tail -1 "$OUT/forward_bench.log")"
fi
if [[ -z "${DSV4_SKIP_BENCH:-}" ]]; then
  timeout "$(budget 200)" "$DSV4" bench --synthetic flash-q2 --layers "$layers" \
    --frontiers "${DSV4_BENCH_FRONTIERS:-2048,8192}" --gen "${DSV4_BENCH_GEN:-64}" --csv "$OUT/bench.csv" \
    >"$OUT/bench.log" 2>&1
  note "dsv4 bench (flash-q2, $layers layers): exit $?"
  cat "$OUT/bench.log" | tee -a "$SUMMARY"
fi

# ---- 3. memory checker ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  {
    echo "### memcheck"
    timeout "$(budget 150)" compute-sanitizer --tool memcheck --error-exitcode 3 \
      "$TESTS" --gtest_color=no --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaHc.*:CudaNorms.*:CudaCompressor.*:CudaIndexer.*:CudaAttention.*:CudaMoe.*:CudaSampling.*:CudaMatvec2bit*:CudaMatvecQ8*:GemmSplit*:CudaPrefillAttention.*:CudaEngine.SnapshotRoundTrip*:CudaEngine.SessionSample*:CudaEngine.Parses*}"
    echo "### memcheck exit $?"
  } >"$OUT/sanitizer.log" 2>&1
  rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
  note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
else
  note "compute-sanitizer not found"
fi

# ---- 4. matvec benchmark ----
if [[ -z "${DSV4_SKIP_MATVEC_BENCH:-}" ]]; then
  timeout "$(budget 40)" "$BENCH" --quick >"$OUT/cuda_bench.log" 2>&1
  note "cuda_bench: exit $? ($(grep -iE 'copy' "$OUT/cuda_bench.log" | head -2 | tr '\n' ' '))"
fi

# ---- 5. racecheck and SASS (what time is left) ----
if command -v compute-sanitizer >/dev/null && ((DEADLINE - SECONDS > 30)); then
  {
    echo "### racecheck (launch-shape sweep)"
    timeout "$(budget 60)" compute-sanitizer --tool racecheck --error-exitcode 3 \
      "$TESTS" --gtest_color=no --gtest_filter=CudaMatvec.EveryLaunchShapeOfTheFastKernel
    echo "### racecheck exit $?"
  } >>"$OUT/sanitizer.log" 2>&1
  note "racecheck: $(grep -o '### racecheck exit [0-9]*' "$OUT/sanitizer.log")"
fi
if command -v cuobjdump >/dev/null && ((DEADLINE - SECONDS > 10)); then
  cuobjdump -sass "$TESTS" 2>/dev/null | python3 -c '
import re, sys, collections
name, c = None, collections.Counter()
def flush():
    if name and ("matvec" in name):
        keys = sorted(k for k in c if re.match(r"(LDGSTS|LDG|LDS|LD\b|LD\.|LDL|STL|STS|STG|FFMA|FADD|FMUL|PRMT|I2F|SHFL|BAR)", k))
        total = sum(c.values())
        print(name[:110]); print("   total %d: " % total + ", ".join("%s %d" % (k, c[k]) for k in keys))
for line in sys.stdin:
    m = re.search(r"Function : (\S+)", line)
    if m:
        flush(); name, c = m.group(1), collections.Counter(); continue
    m = re.search(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", line)
    if m: c[m.group(1)] += 1
flush()
' >"$OUT/sass_summary.txt" 2>&1
  note "sass: $(grep -c total "$OUT/sass_summary.txt") kernels summarised in sass_summary.txt"
fi

echo "---- summary ----"
cat "$SUMMARY"
if ((rc_tests != 0)); then exit 1; fi
if ((rc_mem != 0)); then exit 2; fi
exit 0
