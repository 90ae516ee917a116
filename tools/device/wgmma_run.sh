#!/usr/bin/env bash
# The dense Q8_0 split GEMM on wgmma (src/cuda/gemm_wgmma.cu, session 8) in one GPU-machine call:
# its tests with memcheck and racecheck beside them, its benchmark (f16 mode, split on mma.sync and
# split on wgmma from the same binary), the prefill chunk profile of this bundle and the baseline,
# then the whole-model tests with the time left.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-gemm DSV4_NO_BUILD=1 bash tools/device/wgmma_run.sh pack
#   bundles cuda_tests, gemm_bench and cuda_forward_bench into out/wgmma/bundle.tar.gz.
# There (device tool: carry ["out/wgmma", "out/base8"], or the DSV4_BUNDLE / DSV4_BASE dirs):
#     bash tools/device/wgmma_run.sh
#   1. cuda_tests GemmWgmma.*:GemmSplit.*:SplitFormats/*, beside it compute-sanitizer memcheck of
#      GemmWgmma.* and racecheck of GemmWgmma.PartialTilesMatchDoubleReference
#                                                     -> gpu_tests.log, memcheck.log, racecheck.log
#   2. gemm_bench --wgmma (the dense Q8_0 shapes at 2048 and 4096 tokens)   -> gemm_bench.log
#   3. cuda_forward_bench one 4096-token chunk at 2048 (DSV4_FORWARD_LAYERS, default 4), stage by
#      stage, this bundle and out/base8               -> forward_bench.log
#   4. with the time left: cuda_tests DSV4_TEST_FILTER (default the whole-model tests)
#                                                     -> model_tests.log
#   Steps share DSV4_GPU_BUDGET seconds (default 150).
# Env: DSV4_BUNDLE (default out/wgmma), DSV4_BASE (default out/base8); DSV4_BENCH_ROUNDS (default 1):
# step 2 runs gemm_bench --wgmma that many times for this bundle and the baseline, alternated
# (bundle, baseline, bundle, ...), each run's lines tagged "[bundle]" / "[base]"; DSV4_GEMM_MODES
# (default --wgmma): the gemm_bench modes each run takes, e.g. "--wgmma --moe-wgmma".
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BUNDLE_DIR=${DSV4_BUNDLE:-out/wgmma}
BASE_DIR=${DSV4_BASE:-out/base8}

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-gemm}
  [[ -n "${DSV4_NO_BUILD:-}" ]] || cmake --build "$BUILD" --target cuda_tests gemm_bench cuda_forward_bench -j2
  dsv4_pack "$BUILD" "$BUNDLE_DIR" cuda_tests gemm_bench cuda_forward_bench
  exit 0
fi

BIN=$(dsv4_unpack "$BUNDLE_DIR") || { echo "no bundle in $BUNDLE_DIR"; exit 3; }
BASE=""
[[ -f "$BASE_DIR/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_DIR")
OUT=${OUT:-$PWD/out/wgmma-run}
dsv4_run_start "$BIN" 150
flayers=${DSV4_FORWARD_LAYERS:-4}

# ---- 1. tests, memcheck and racecheck beside them ----
timeout "$(budget 60)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='GemmWgmma.*' >"$OUT/memcheck.log" 2>&1 &
mem_pid=$!
timeout "$(budget 60)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='GemmWgmma.PartialTilesMatchDoubleReference' >"$OUT/racecheck.log" 2>&1 &
race_pid=$!
timeout "$(budget 50)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter='GemmWgmma.*:GemmSplit.*:SplitFormats/*' \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests (GEMM): exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure|got ' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"

# the sanitizers finish first: the timings below have the GPU to themselves
wait "$mem_pid"
rc_mem=$?
wait "$race_pid"
rc_race=$?
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/memcheck.log" | tr '\n' ' '))"
note "racecheck: exit $rc_race ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/racecheck.log" | tr '\n' ' '))"

# ---- 2. the GEMM's rates (split on mma.sync and on wgmma from the same binary) ----
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -e "$d/libcublas.so.13" ]] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
: >"$OUT/gemm_bench.log"
for ((round = 1; round <= ${DSV4_BENCH_ROUNDS:-1}; ++round)); do
  for which in bundle base; do
    dir=$BIN
    if [[ $which == base ]]; then
      [[ -n "$BASE" && -x "$BASE/gemm_bench" ]] || continue
      dir=$BASE
    fi
    ((DEADLINE - SECONDS > 8)) || break 2
    for mode in ${DSV4_GEMM_MODES:---wgmma}; do
      echo "### round $round: $which $mode" >>"$OUT/gemm_bench.log"
      timeout "$(budget 30)" "$dir/gemm_bench" "$mode" 2>&1 | sed "s/^/[$which] /" >>"$OUT/gemm_bench.log"
      note "gemm_bench $mode ($which, round $round): exit ${PIPESTATUS[0]}"
    done
  done
done
grep -E 'Q8_0|IQ2_XXS|tile' "$OUT/gemm_bench.log" | tee -a "$SUMMARY" >/dev/null


# ---- 3. one 4096-token chunk stage by stage, this bundle and the baseline ----
{
  echo "### this bundle, chunk 4096 at 2048, $flayers layers"
  timeout "$(budget 25)" "$BIN/cuda_forward_bench" --layers "$flayers" --ctx 2048 --chunk 4096 --steps 1
  if [[ -n "$BASE" ]] && ((DEADLINE - SECONDS > 12)); then
    echo "### baseline $BASE_DIR, chunk 4096 at 2048, $flayers layers"
    timeout "$(budget 25)" "$BASE/cuda_forward_bench" --layers "$flayers" --ctx 2048 --chunk 4096 --steps 1
  fi
} >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench ($flayers layers): see forward_bench.log"
grep -E '^###|one prefill chunk|q/kv|output|shared' "$OUT/forward_bench.log" | tee -a "$SUMMARY" >/dev/null

# ---- 4. the whole-model tests with the time left ----
if ((DEADLINE - SECONDS > 10)); then
  timeout "$(budget 90)" "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_TEST_FILTER:-CudaForward.*:CudaReference*:CudaEngine.*}" \
    >"$OUT/model_tests.log" 2>&1
  note "cuda_tests (whole model): exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/model_tests.log" | tr '\n' ' '))"
  grep -E '^\[  FAILED  \]' "$OUT/model_tests.log" | head -20 | tee -a "$SUMMARY"
fi

echo "---- summary ----"
cat "$SUMMARY"
((rc_tests != 0)) && exit 1
((rc_mem != 0)) && exit 2
((rc_race != 0)) && exit 2
exit 0
