#!/usr/bin/env bash
# Decode-speed work in one GPU-machine call: the kernel tests, memcheck of the changed kernels, the
# Q8_0 matvec benchmark with its launch-shape sweep, and the decode step of the full model, with
# a baseline bundle's decode step in the same call when one is carried.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-decode bash tools/device/decode_run.sh pack
#   builds cuda_tests, cuda_bench, cuda_forward_bench (and dsv4 when DSV4_PACK_DSV4=1) in
#   $DSV4_BUILD (DSV4_NO_BUILD=1: as they are) and bundles them, without debug sections, into
#   $DSV4_BUNDLE/bundle.tar.gz (default out/decode).
# On the GPU machine (device tool: carry ["out/decode"], plus "out/device" for the baseline):
#     bash tools/device/decode_run.sh
#   1. cuda_tests (filter DSV4_TEST_FILTER, default all)                 -> $OUT/gpu_tests.log
#   2. cuda_forward_bench --layers L --ctx 2048 --steps 64                -> $OUT/forward_bench.log
#   3. cuda_bench --sweep Q8_0 (copy ceiling, Q8_0 cases, launch-shape sweep) -> $OUT/cuda_bench.log,
#      then the baseline bundle's (out/device, if carried) decode step      -> $OUT/forward_base.log
#   4. compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER) and racecheck of the row-tile kernel
#                                                                        -> $OUT/sanitizer.log
#   5. dsv4 bench --synthetic flash-q2 --frontiers 2048 --gen 64 (if packed) -> $OUT/bench.log
#   Knobs: DSV4_BISECT_FILTER (those tests again with DSV4_NO_PDL=1), DSV4_FORWARD_ARGS (default
#   "--ctx 2048 --steps 64"), DSV4_FORWARD_NO_PDL=1 (the decode step again without PDL),
#   DSV4_MATVEC_BENCH (cuda_bench arguments, default "--sweep Q8_0"), DSV4_RACECHECK_FILTER
#   (default CudaMatvec.Q8RowTileKernelEveryWarpSplit), DSV4_BUNDLE (this bundle's folder, default
#   out/decode), DSV4_BASE_BUNDLE (the baseline's, default out/device).
#   $OUT/summary.txt collects the results. Steps share DSV4_GPU_BUDGET seconds (default 300).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-decode}
  targets=(cuda_tests cuda_bench cuda_forward_bench)
  [[ "${DSV4_PACK_DSV4:-0}" == 1 ]] && targets+=(dsv4)
  [[ "${DSV4_NO_BUILD:-0}" == 1 ]] || cmake --build "$BUILD" --target "${targets[@]}" -j2
  dsv4_pack "$BUILD" "${DSV4_BUNDLE:-out/decode}" "${targets[@]}"
  exit 0
fi

BUNDLE=${DSV4_BUNDLE:-out/decode}
BASE_BUNDLE=${DSV4_BASE_BUNDLE:-out/device}
BIN=$(dsv4_unpack "$BUNDLE") || { echo "no bundle in $BUNDLE"; exit 3; }
BASE=""
[[ -f "$BASE_BUNDLE/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_BUNDLE")
OUT=${OUT:-$PWD/out/decode-run}
dsv4_run_start "$BIN" 300

# ---- 1. tests ----
timeout "$(budget 90)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="${DSV4_TEST_FILTER:-*}" >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure|worst rel L2|first position' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
# 1b. Bisecting: the tests of DSV4_BISECT_FILTER again with every kernel launched the ordinary way.
if [[ -n "${DSV4_BISECT_FILTER:-}" ]]; then
  DSV4_NO_PDL=1 timeout "$(budget 80)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="$DSV4_BISECT_FILTER" \
    >"$OUT/gpu_tests_no_pdl.log" 2>&1
  note "cuda_tests with DSV4_NO_PDL=1 ($DSV4_BISECT_FILTER): exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests_no_pdl.log" | tr '\n' ' '))"
  grep -E 'worst rel L2' "$OUT/gpu_tests_no_pdl.log" | head -20 | tee -a "$SUMMARY"
fi

# ---- 2. decode step of the whole model (this bundle) ----
fwd_args=(--layers "$layers" ${DSV4_FORWARD_ARGS:---ctx 2048 --steps 64})
timeout "$(budget 60)" "$BIN/cuda_forward_bench" "${fwd_args[@]}" >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench ${fwd_args[*]}: exit $?"
cat "$OUT/forward_bench.log" | tee -a "$SUMMARY"
if [[ -n "${DSV4_FORWARD_NO_PDL:-}" ]]; then
  DSV4_NO_PDL=1 timeout "$(budget 50)" "$BIN/cuda_forward_bench" "${fwd_args[@]}" >"$OUT/forward_no_pdl.log" 2>&1
  note "cuda_forward_bench, DSV4_NO_PDL=1: exit $?"
  grep -E 'decode|^  ' "$OUT/forward_no_pdl.log" | tail -14 | tee -a "$SUMMARY"
fi

# ---- 3. matvec benchmark ----
timeout "$(budget 45)" "$BIN/cuda_bench" ${DSV4_MATVEC_BENCH:---sweep Q8_0} >"$OUT/cuda_bench.log" 2>&1
note "cuda_bench: exit $?"
cat "$OUT/cuda_bench.log" | tee -a "$SUMMARY"

# ---- 3b. the baseline bundle's decode step, same machine ----
if [[ -n "$BASE" ]]; then
  timeout "$(budget 45)" "$BASE/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 \
    >"$OUT/forward_base.log" 2>&1
  note "baseline cuda_forward_bench ($BASE_BUNDLE): exit $?"
  cat "$OUT/forward_base.log" | tee -a "$SUMMARY"
fi

# ---- 4. sanitizers ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  {
    echo "### memcheck"
    timeout "$(budget 40)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaMatvec.Q8RowTile*:CudaMatvec.GraphCapture*:CudaMatvec.DefaultPlans:CudaHc.*:CudaNorms.*:CudaMoe.*:CudaEngine.SessionSample*}"
    echo "### memcheck exit $?"
    echo "### racecheck"
    timeout "$(budget 20)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter="${DSV4_RACECHECK_FILTER:-CudaMatvec.Q8RowTileKernelEveryWarpSplit}"
    echo "### racecheck exit $?"
  } >"$OUT/sanitizer.log" 2>&1
  rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
  note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | head -1)); $(grep -o '### racecheck exit [0-9]*' "$OUT/sanitizer.log") ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
fi

# ---- 5. dsv4 bench ----
if [[ -x "$BIN/dsv4" ]]; then
  timeout "$(budget 90)" "$BIN/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 2048 --gen 64 \
    >"$OUT/bench.log" 2>&1
  note "dsv4 bench: exit $?"
  cat "$OUT/bench.log" | tee -a "$SUMMARY"
fi
note "seconds used: $SECONDS"
[[ $rc_tests == 0 && $rc_mem == 0 ]]
