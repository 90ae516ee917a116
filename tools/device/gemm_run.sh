#!/usr/bin/env bash
# The int8 GEMM (src/cuda/gemm_int8.cu) in one GPU-machine call: its tests with memcheck and
# racecheck beside them, its benchmark against the baseline bundle's, the prefill chunk profile of
# both bundles, then the whole-model tests with the time left (session 8: how its tile variants
# were measured, docs/PERF.md "int8 MoE GEMM, 128-row tile").
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill DSV4_NO_BUILD=1 bash tools/device/gemm_run.sh pack
#   bundles cuda_tests, gemm_bench, cuda_forward_bench and dsv4 into out/int8/bundle.tar.gz.
# There (device tool: carry ["out/int8", "out/base8"]):
#     bash tools/device/gemm_run.sh
#   1. cuda_tests GemmInt8.*:GemmSplit.*:SplitFormats/*, and beside it compute-sanitizer memcheck of
#      GemmInt8.* and racecheck of GemmInt8.Q2_KGroupedGatherAndScatter
#                                                     -> gpu_tests.log, memcheck.log, racecheck.log
#   2. gemm_bench --int8 (MoE down Q2_K: f16, split, int8; 2048 and 4096 tokens),
#      this bundle, then out/base8's                  -> gemm_bench.log
#   3. cuda_forward_bench one 4096-token chunk at 2048 (DSV4_FORWARD_LAYERS, default 4), stage by
#      stage, this bundle and out/base8               -> forward_bench.log
#   4. with the time left: cuda_tests DSV4_TEST_FILTER (default the whole-model tests)
#                                                     -> model_tests.log
#   Steps share DSV4_GPU_BUDGET seconds (default 100).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BUNDLE_DIR=out/int8

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-prefill}
  [[ -n "${DSV4_NO_BUILD:-}" ]] || cmake --build "$BUILD" --target cuda_tests gemm_bench cuda_forward_bench dsv4 -j2
  dsv4_pack "$BUILD" "$BUNDLE_DIR" cuda_tests gemm_bench cuda_forward_bench dsv4
  exit 0
fi

BIN=$(dsv4_unpack "$BUNDLE_DIR") || { echo "no bundle in $BUNDLE_DIR"; exit 3; }
BASE=""
[[ -f out/base8/bundle.tar.gz ]] && BASE=$(dsv4_unpack out/base8)
OUT=${OUT:-$PWD/out/int8-run}
dsv4_run_start "$BIN" 100
flayers=${DSV4_FORWARD_LAYERS:-4}

# ---- 1. tests, memcheck and racecheck beside them ----
timeout "$(budget 45)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='GemmInt8.*' >"$OUT/memcheck.log" 2>&1 &
mem_pid=$!
timeout "$(budget 45)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='GemmInt8.Q2_KGroupedGatherAndScatter' >"$OUT/racecheck.log" 2>&1 &
race_pid=$!
timeout "$(budget 40)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter='GemmInt8.*:GemmSplit.*:SplitFormats/*' \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
wait "$mem_pid"
rc_mem=$?
wait "$race_pid"
rc_race=$?
note "cuda_tests (GEMM): exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/memcheck.log" | tr '\n' ' '))"
note "racecheck: exit $rc_race ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/racecheck.log" | tr '\n' ' '))"

# ---- 2. the GEMM's rates, this bundle and the baseline ----
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -e "$d/libcublas.so.13" ]] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
{
  echo "### this bundle"
  timeout "$(budget 25)" "$BIN/gemm_bench" --int8
  if [[ -n "$BASE" ]]; then
    echo "### baseline out/base8"
    timeout "$(budget 25)" "$BASE/gemm_bench" --int8
  fi
} >"$OUT/gemm_bench.log" 2>&1
note "gemm_bench --int8: see gemm_bench.log"
grep -E '^###|MoE down|convert' "$OUT/gemm_bench.log" | tee -a "$SUMMARY" >/dev/null

# ---- 3. one 4096-token chunk stage by stage, this bundle and the baseline ----
{
  echo "### this bundle, chunk 4096 at 2048, $flayers layers"
  timeout "$(budget 20)" "$BIN/cuda_forward_bench" --layers "$flayers" --ctx 2048 --chunk 4096 --steps 1
  if [[ -n "$BASE" ]] && ((DEADLINE - SECONDS > 12)); then
    echo "### baseline out/base8, chunk 4096 at 2048, $flayers layers"
    timeout "$(budget 20)" "$BASE/cuda_forward_bench" --layers "$flayers" --ctx 2048 --chunk 4096 --steps 1
  fi
} >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench ($flayers layers): see forward_bench.log"

# ---- 4. the whole-model tests with the time left ----
if ((DEADLINE - SECONDS > 10)); then
  timeout "$(budget 60)" "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_TEST_FILTER:-CudaSyntheticLarge.*:CudaForward.*:CudaReference*:CudaEngine.*}" \
    >"$OUT/model_tests.log" 2>&1
  note "cuda_tests (whole model): exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]|^\[       OK \]' "$OUT/model_tests.log" | tr '\n' ' '))"
fi

echo "---- summary ----"
cat "$SUMMARY"
((rc_tests != 0)) && exit 1
((rc_mem != 0)) && exit 2
((rc_race != 0)) && exit 2
exit 0
