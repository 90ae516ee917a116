#!/usr/bin/env bash
# The GEMM's GPU checks and benchmark in one device call.
#
# Here (no GPU), from the repository root:
#     bash bench/gemm_device.sh pack
#   builds cuda_tests and gemm_bench in build-gemm/ and copies them, without host debug info, to
#   out/gemm/ (ignored by git, ≈ 25 MB). Worst case ≈ 235 s: use timeout_s 240.
# On the GPU machine (device tool, carry ["out/gemm"]):
#     bash bench/gemm_device.sh
#   1. the GEMM tests (cuda_tests --gtest_filter='*Gemm*')        -> $OUT/gemm_tests.log
#   2. gemm_bench (cuBLAS ceiling + TFLOP/s table)                -> $OUT/gemm_bench.log
#      (and gemm_bench_v1 --quick, an earlier build, when carried) -> $OUT/gemm_bench_v1.log
#      ncu --set full on two kernels (gemm_bench --profile)       -> $OUT/gemm_ncu.txt
#   3. compute-sanitizer memcheck on the GEMM tests               -> $OUT/gemm_memcheck.log
#      and racecheck on two of them                               -> $OUT/gemm_racecheck.log
#   plus nvidia-smi -> $OUT/gemm_gpu.txt. Exit status: non-zero if a test or memcheck failed.
set -u -o pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "pack" ]]; then
  set -e
  ninja -C build-gemm -j2 cuda_tests gemm_bench
  mkdir -p out/gemm
  cp build-gemm/tests/cuda_tests build-gemm/gemm_bench out/gemm/
  strip -g out/gemm/cuda_tests out/gemm/gemm_bench
  du -sh out/gemm
  exit 0
fi

BIN=${DSV4_GEMM_BIN:-out/gemm}
OUT=${OUT:-$PWD/out/gemm-run}
mkdir -p "$OUT"
FILTER='*Gemm*'
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu \
  --format=csv >"$OUT/gemm_gpu.txt" 2>&1
cat "$OUT/gemm_gpu.txt"

timeout 60 "$BIN/cuda_tests" --gtest_filter="$FILTER" >"$OUT/gemm_tests.log" 2>&1 || status=1
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|tests ran" "$OUT/gemm_tests.log" | head -20
grep -A3 "Failure" "$OUT/gemm_tests.log" | head -40

# The cuBLAS library of the machine's CUDA toolkit or PyTorch's wheel, for the dlopen in the bench.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib \
                 /opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib 2>/dev/null); do
  [[ -e "$d/libcublas.so.13" ]] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
timeout 80 "$BIN/gemm_bench" >"$OUT/gemm_bench.log" 2>&1 || echo "gemm_bench exit $?"
# An earlier build, if carried as gemm_bench_v1: the baseline on the same card.
if [[ -x "$BIN/gemm_bench_v1" ]]; then
  timeout 40 "$BIN/gemm_bench_v1" --quick >"$OUT/gemm_bench_v1.log" 2>&1 || echo "gemm_bench_v1 exit $?"
fi
# Hardware counters of two kernels (BF16 and Q4_K weights, large tile, 2048 × 4096 → 4096).
if command -v ncu >/dev/null; then
  timeout 60 ncu --clock-control none --set full -k regex:gemm_kernel -c 2 "$BIN/gemm_bench" --profile \
    >"$OUT/gemm_ncu.txt" 2>&1 || echo "ncu exit $?"
fi

if command -v compute-sanitizer >/dev/null; then
  timeout 60 compute-sanitizer --tool memcheck --print-limit 20 "$BIN/cuda_tests" --gtest_filter="$FILTER" \
    >"$OUT/gemm_memcheck.log" 2>&1 || status=1
  tail -4 "$OUT/gemm_memcheck.log"
  # Shared-memory hazards of the pipeline, on two small cases.
  timeout 30 compute-sanitizer --tool racecheck --print-limit 20 "$BIN/cuda_tests" \
    --gtest_filter='*GemmFormatTest*/Q4_K:*GroupedGemmTest*/IQ2_XXS' >"$OUT/gemm_racecheck.log" 2>&1 || status=1
  tail -4 "$OUT/gemm_racecheck.log"
else
  echo "compute-sanitizer not found" | tee "$OUT/gemm_memcheck.log"
  status=1
fi
cat "$OUT/gemm_bench.log"
exit $status
