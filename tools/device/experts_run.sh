#!/usr/bin/env bash
# The routed experts' decode work (2-bit row-tile kernel, fused SwiGLU) in one GPU-machine call:
# decode_run.sh with the experts' tests, benchmarks and sanitizers, then Nsight Compute (cold L2,
# one un-graphed decode step of a 4-layer model) on the experts' kernels of this bundle and of the
# baseline bundle, times and stall reasons.
#
# Here:   DSV4_BUILD=build-decode DSV4_BUNDLE=out/experts bash tools/device/decode_run.sh pack
# There:  DSV4_BUNDLE=out/experts bash tools/device/experts_run.sh   (carry out/experts, out/device)
#   -> decode_run.sh's logs (summary.txt, gpu_tests.log, forward_bench.log, forward_base.log,
#      cuda_bench.log, sanitizer.log) and ncu_new.log, ncu_base.log. Knobs: decode_run.sh's,
#      DSV4_NCU_DETAIL=0 (no stall-reason sections for this bundle), DSV4_NCU_BASE_DETAIL=1 (them
#      for the baseline too).
set -u -o pipefail
cd "$(dirname "$0")/../.."
export DSV4_BUNDLE=${DSV4_BUNDLE:-out/experts}
export DSV4_TEST_FILTER=${DSV4_TEST_FILTER:-CudaMatvec*:CudaMoe*:CudaForward*:CudaEngine*}
export DSV4_MATVEC_BENCH=${DSV4_MATVEC_BENCH:---only MoE}
export DSV4_MEMCHECK_FILTER=${DSV4_MEMCHECK_FILTER:-CudaMatvec.TwoBitRowTile*:CudaMoeFusedDown.*:CudaMoe.*:CudaMatvec.Experts:CudaMatvec.DefaultPlans}
export DSV4_RACECHECK_FILTER=${DSV4_RACECHECK_FILTER:-CudaMoeFusedDown.SameBitsAsSwigluThenMatvec}
export DSV4_GPU_BUDGET=${DSV4_GPU_BUDGET:-240}
export OUT=${OUT:-$PWD/out/experts-run}
bash tools/device/decode_run.sh
rc=$?

source tools/device/common.sh
BIN=$(dsv4_unpack "$DSV4_BUNDLE")
# decode_run.sh gives racecheck 20 s; the 2-bit kernel's every-warp-split test needs more.
if command -v compute-sanitizer >/dev/null; then
  {
    echo "### racecheck (experts_run.sh) CudaMatvec.TwoBitRowTileKernelEveryWarpSplit"
    timeout 75 compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter=CudaMatvec.TwoBitRowTileKernelEveryWarpSplit
    echo "### racecheck (experts_run.sh) exit $?"
  } >>"$OUT/sanitizer.log" 2>&1
  grep -E '### racecheck \(experts_run.sh\) exit|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -2 >>"$OUT/summary.txt"
fi
BASE=""
[[ -f "${DSV4_BASE_BUNDLE:-out/device}/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/device}")
ncu_step() {  # BIN_DIR LOG DETAIL: expert-kernel times, then (DETAIL 1) stall reasons of the first ones
  local bin=$1 log=$2 detail=$3
  timeout 40 ncu --profile-from-start off -k 'regex:matvec_2bit|swiglu' --metrics gpu__time_duration.sum \
    "$bin/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 >"$log" 2>&1
  echo "### ncu times exit $?" >>"$log"
  if [[ "$detail" == 1 ]]; then
    timeout 40 ncu --profile-from-start off -k 'regex:matvec_2bit|swiglu' -c 3 --section SpeedOfLight \
      --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
      "$bin/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 >>"$log" 2>&1
    echo "### ncu sections exit $?" >>"$log"
  fi
}
if command -v ncu >/dev/null; then
  ncu_step "$BIN" "$OUT/ncu_new.log" "${DSV4_NCU_DETAIL:-1}"
  [[ -n "$BASE" ]] && ncu_step "$BASE" "$OUT/ncu_base.log" "${DSV4_NCU_BASE_DETAIL:-0}"
  for f in "$OUT"/ncu_new.log "$OUT"/ncu_base.log; do
    [[ -f "$f" ]] || continue
    echo "== $(basename "$f"): kernel, us (cold L2)" >>"$OUT/summary.txt"
    awk '/matvec_2bit_kernel|swiglu_kernel/ {k = ($0 ~ /swiglu/) ? "swiglu" : ($0 ~ /Fmt2bIQ2/ ? "iq2" : "q2k")}
         /gpu__time_duration.sum/ && k != "" {print k, $NF; k = ""}' "$f" | sort | uniq -c | head -20 >>"$OUT/summary.txt"
    awk '/matvec_2bit_kernel|swiglu_kernel/ {k = ($0 ~ /swiglu/) ? "swiglu" : ($0 ~ /Fmt2bIQ2/ ? "iq2" : "q2k")}
         /gpu__time_duration.sum/ && k != "" {s[k] += $NF; n[k]++; k = ""}
         END {for (k in s) printf "mean %s %.2f us over %d\n", k, s[k] / n[k], n[k]}' "$f" >>"$OUT/summary.txt"
  done
else
  echo "no ncu on this machine" >>"$OUT/summary.txt"
fi
echo "experts_run seconds: $SECONDS" >>"$OUT/summary.txt"
exit $rc
