#!/usr/bin/env bash
# The routed experts' decode work (2-bit row-tile kernel: dp4a over fixed-point activation limbs,
# fused SwiGLU) in one GPU-machine call, this bundle against the baseline bundle on the same card:
#   1. SASS of the 2-bit kernels (cuobjdump, if there): instructions per kernel and the inner-loop
#      opcodes (IDP, LDS, LOP3, IADD3, IMAD, PRMT)                            -> summary.txt
#   2. cuda_tests (DSV4_TEST_FILTER: the 2-bit kernel, experts, MoE)          -> gpu_tests.log
#   3. compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER) and racecheck (DSV4_RACECHECK_FILTER)
#                                                                              -> sanitizer.log
#   4. cuda_bench --only MoE, both bundles                                     -> cuda_bench.log
#   5. cuda_forward_bench --layers L --ctx 2048 --steps 64, both bundles       -> forward.log
#   6. ncu (clock unlocked, one un-graphed decode step of 4 layers): per-kernel times of the
#      expert kernels, both bundles; for this one the sections and stall reasons of the first
#      two expert launches (gate/up, down)                     -> ncu_new.log, ncu_base.log
#   7. the whole cuda_tests with what is left of the budget (DSV4_FULL_SUITE=0: skipped)
#                                                                              -> gpu_all.log
# Here:   DSV4_BUILD=build-matvec DSV4_BUNDLE=out/experts DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
#         (optional DSV4_ALT_BUNDLE: another build's cuda_bench + cuda_forward_bench, timed in 4-6 too)
# There:  bash tools/device/experts_run.sh   (carry out/experts, out/device)
# Everything under $OUT (default out/experts-run); summary.txt collects the results. The steps
# share DSV4_GPU_BUDGET seconds (default 300).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BIN=$(dsv4_unpack "${DSV4_BUNDLE:-out/experts}") || { echo "no bundle"; exit 3; }
BASE=""
[[ -f "${DSV4_BASE_BUNDLE:-out/device}/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/device}")
# An alternative build of this kernel to time beside it (cuda_bench, ncu, decode step), if carried.
ALT=""
[[ -n "${DSV4_ALT_BUNDLE:-}" && -f "$DSV4_ALT_BUNDLE/bundle.tar.gz" ]] && ALT=$(dsv4_unpack "$DSV4_ALT_BUNDLE")
OUT=${OUT:-$PWD/out/experts-run}
dsv4_run_start "$BIN" 300

# ---- 1. SASS ----
sass_counts() {  # BIN_DIR: per 2-bit kernel, instructions and the main opcodes
  cuobjdump -sass "$1/cuda_tests" 2>/dev/null | awk '
    /Function : / {name = $3; inside = (name ~ /matvec_2bit_kernel/)}
    inside && /\/\*[0-9a-f]{4,}\*\// {
      n[name]++
      split($0, f, /\*\/ +/); op = f[2]; sub(/^@!?U?P[0-9T] +/, "", op); sub(/[ .;].*/, "", op); c[name, op]++
    }
    END {for (k in n) {printf "%s: %d instructions;", k, n[k];
         split("IDP IMAD LOP3 IADD3 SHF LDS PRMT FFMA FADD I2F LDGSTS BAR", ops, " ");
         for (i in ops) printf " %s %d", ops[i], c[k, ops[i]]; printf "\n"}}'
}
if command -v cuobjdump >/dev/null; then
  { echo "== SASS, this bundle"; sass_counts "$BIN"; [[ -n "$BASE" ]] && { echo "== SASS, baseline"; sass_counts "$BASE"; }; } 2>&1 |
    tee -a "$SUMMARY"
else
  note "no cuobjdump on this machine"
fi

# ---- 2. tests ----
filter=${DSV4_TEST_FILTER:-CudaMatvec2bit*:CudaMatvec.TwoBit*:CudaMatvec.Experts:CudaMatvec.ExpertSum*:CudaMatvec.DefaultPlans:CudaMatvecLarge.ExpertDecodeShapes:CudaMoeFusedDown.*:CudaMoe.*}
timeout "$(budget 60)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="$filter" >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure|worst rel L2' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"

# ---- 3. sanitizers ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  {
    echo "### memcheck"
    timeout "$(budget 40)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaMatvec2bit*:CudaMatvec.TwoBitRowTile*:CudaMoeFusedDown.*:CudaMoe.*}"
    echo "### memcheck exit $?"
    echo "### racecheck"
    timeout "$(budget 25)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter="${DSV4_RACECHECK_FILTER:-CudaMatvec2bit*}"
    echo "### racecheck exit $?"
  } >"$OUT/sanitizer.log" 2>&1
  rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
  note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | head -1)); $(grep -o '### racecheck exit [0-9]*' "$OUT/sanitizer.log") ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
fi

# ---- 4. matvec benchmark, both bundles ----
{
  echo "== this bundle"; timeout "$(budget 20)" "$BIN/cuda_bench" --only MoE
  [[ -n "$BASE" ]] && { echo "== baseline"; timeout "$(budget 20)" "$BASE/cuda_bench" --only MoE; }
  [[ -n "$ALT" ]] && { echo "== alternative ($DSV4_ALT_BUNDLE)"; timeout "$(budget 25)" "$ALT/cuda_bench" --only MoE; }
} >"$OUT/cuda_bench.log" 2>&1
grep -E '==|MoE|copy' "$OUT/cuda_bench.log" | tee -a "$SUMMARY"

# ---- 5. decode step, both bundles ----
{
  echo "== this bundle"; timeout "$(budget 35)" "$BIN/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64
  [[ -n "$BASE" ]] && { echo "== baseline"; timeout "$(budget 35)" "$BASE/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64; }
  [[ -n "$ALT" ]] && { echo "== alternative"; timeout "$(budget 40)" "$ALT/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64; }
} >"$OUT/forward.log" 2>&1
cat "$OUT/forward.log" | tee -a "$SUMMARY"

# ---- 6. ncu ----
ncu_times() {  # BIN_DIR TAG
  timeout "$(budget 30)" ncu --profile-from-start off --clock-control none --print-units base \
    -k 'regex:matvec_2bit|swiglu' --metrics gpu__time_duration.sum \
    "$1/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 >"$OUT/ncu_$2.log" 2>&1
  echo "== ncu $2: kernel, mean us (cold L2, clock unlocked)" >>"$SUMMARY"
  awk '/matvec_2bit_kernel|swiglu_kernel/ {k = ($0 ~ /swiglu/) ? "swiglu" : ($0 ~ /Fmt2bIQ2/ ? "iq2" : "q2k")}
       /gpu__time_duration.sum/ && k != "" {v = $NF; gsub(/,/, "", v); s[k] += v; n[k]++; k = ""}
       END {for (k in s) printf "mean %s %.2f us over %d\n", k, s[k] / n[k] / 1000, n[k]}' "$OUT/ncu_$2.log" | tee -a "$SUMMARY"
}
if command -v ncu >/dev/null; then
  ncu_times "$BIN" new
  [[ -n "$BASE" ]] && ncu_times "$BASE" base
  [[ -n "$ALT" ]] && { ncu_times "$ALT" alt; rm -f "$OUT/ncu_alt.log"; }  # at most 8 files come back
  # Sections and stall reasons (WarpStateStats' body) of the first two expert launches: gate/up, down.
  timeout "$(budget 35)" ncu --profile-from-start off --clock-control none -k 'regex:matvec_2bit' -c 2 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
    --section LaunchStats --print-details all \
    "$BIN/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 >>"$OUT/ncu_new.log" 2>&1
  grep -E 'matvec_2bit_kernel|Duration|Issued Warp|No Eligible|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Shared Memory Config|Dynamic Shared|Block Size|Grid Size' \
    "$OUT/ncu_new.log" | tail -40 >>"$SUMMARY"
  grep -iE 'matvec_2bit_kernel<|stall|scoreboard|throttle|wait|barrier|branch|dispatch|selected' "$OUT/ncu_new.log" \
    | grep -v '^ *$' | tail -60 >>"$SUMMARY"
else
  note "no ncu on this machine"
fi

# ---- 7. the whole suite with what is left ----
if [[ "${DSV4_FULL_SUITE:-1}" == 1 ]]; then
  timeout "$(budget 120)" "$BIN/cuda_tests" --gtest_color=no >"$OUT/gpu_all.log" 2>&1
  note "whole cuda_tests: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_all.log" | tr '\n' ' '); last: $(grep -E '^\[ +(OK|FAILED) +\]' "$OUT/gpu_all.log" | tail -1))"
  grep -E '^\[  FAILED  \]' "$OUT/gpu_all.log" | head -20 | tee -a "$SUMMARY"
fi
note "experts_run seconds: $SECONDS"
[[ $rc_tests == 0 && $rc_mem == 0 ]]
