#!/usr/bin/env bash
# The CUDA tests and benchmarks in one GPU-machine call.
#
# On the build machine (no GPU needed), from the repository root:
#     bash tools/device/run_gpu_tests.sh pack
#   builds cuda_tests and cuda_bench in build-cuda/ and copies them, with GoogleTest's headers and
#   static library (for a rebuild on the GPU machine if the binaries cannot start there), into
#   out/device/ (ignored by git, ~25 MB).
#
# On the GPU machine (device tool: carry ["out/device"]):
#     bash tools/device/run_gpu_tests.sh
#   1. cuda_tests                                     -> $OUT/gpu_tests.log
#   2. cuda_bench (copy ceiling + matvec GB/s table)  -> $OUT/cuda_bench.log
#   3. compute-sanitizer memcheck on cuda_tests (without the *Large* tests), then racecheck on
#      the launch-shape sweep                         -> $OUT/sanitizer.log
#   4. SASS instruction counts per kernel (cuobjdump) -> $OUT/sass_summary.txt
#   plus nvidia-smi -> $OUT/nvidia-smi.txt and a short $OUT/summary.txt (printed last).
#   Steps share a time budget (DSV4_GPU_BUDGET seconds, default 540) so the call ends inside the
#   device tool's 10-minute limit. Exit status: non-zero if the tests or the memory checker failed
#   (or could not run).
#
# Binaries are taken from $DSV4_GPU_BIN (default out/device). If they cannot start (other system
# libraries), they are rebuilt there with nvcc from the carried tree.
set -u -o pipefail
cd "$(dirname "$0")/../.."

if [[ "${1:-}" == "pack" ]]; then
  set -e
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-cuda --target cuda_tests cuda_bench -j2
  mkdir -p out/device/gtest/include out/device/gtest/lib
  cp build-cuda/tests/cuda_tests build-cuda/cuda_bench out/device/
  cp -r /usr/include/gtest out/device/gtest/include/
  cp /usr/lib/x86_64-linux-gnu/libgtest.a out/device/gtest/lib/
  du -sh out/device
  echo "carry out/device and run: bash tools/device/run_gpu_tests.sh"
  exit 0
fi

BIN=${DSV4_GPU_BIN:-out/device}
OUT=${OUT:-$PWD/out/gpu-run}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
DEADLINE=$((SECONDS + ${DSV4_GPU_BUDGET:-540}))
note() { echo "$*" | tee -a "$SUMMARY"; }
# Seconds for the next step: its cap, or what is left of the budget if less (at least 1: a
# `timeout 0` would mean no limit at all).
budget() {
  local left=$((DEADLINE - SECONDS))
  ((left < 1)) && left=1
  ((left < $1)) && echo "$left" || echo "$1"
}

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || note "nvidia-smi failed"
note "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null | head -1)"

# ---- binaries: the carried ones, or a rebuild with nvcc ----
TESTS="$BIN/cuda_tests"
BENCH="$BIN/cuda_bench"
if ! "$TESTS" --gtest_list_tests >/dev/null 2>"$OUT/start.txt"; then
  note "carried cuda_tests does not start here ($(head -c 300 "$OUT/start.txt")); rebuilding with nvcc"
  BUILD=/tmp/dsv4-cuda-build
  mkdir -p "$BUILD"
  GTEST_INC=/usr/include
  GTEST_LIB=-lgtest
  if [[ -d "$BIN/gtest/include/gtest" ]]; then
    GTEST_INC="$BIN/gtest/include"
    GTEST_LIB="$BIN/gtest/lib/libgtest.a"
  fi
  CXXFLAGS="-std=c++20 -O2 -mavx2 -mfma -mf16c -ffp-contract=off -Isrc -Itests -I$GTEST_INC -I/usr/local/cuda/include"
  NVFLAGS="-std=c++20 -O3 -lineinfo -gencode arch=compute_90a,code=sm_90a -Isrc"
  (
    set -e
    objs=() pids=()
    for f in src/util/*.cc src/gguf/*.cc src/quant/*.cc src/cuda/*.cc tests/cuda/*.cc; do
      o="$BUILD/$(echo "$f" | tr / _).o"
      g++ $CXXFLAGS -c "$f" -o "$o" &
      objs+=("$o") pids+=($!)
    done
    for f in src/cuda/*.cu; do
      o="$BUILD/$(echo "$f" | tr / _).o"
      nvcc $NVFLAGS -c "$f" -o "$o" &
      objs+=("$o") pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    lib_objs=()
    for o in "${objs[@]}"; do [[ "$o" == *tests_cuda_* ]] || lib_objs+=("$o"); done
    nvcc -gencode arch=compute_90a,code=sm_90a "${objs[@]}" $GTEST_LIB -lpthread -o "$BUILD/cuda_tests"
    nvcc $NVFLAGS bench/cuda_bench.cu "${lib_objs[@]}" -lpthread -o "$BUILD/cuda_bench"
  ) >"$OUT/rebuild.log" 2>&1 || note "rebuild failed: see rebuild.log"
  TESTS="$BUILD/cuda_tests"
  BENCH="$BUILD/cuda_bench"
fi

# ---- 1. tests ----
timeout "$(budget 240)" "$TESTS" --gtest_color=no >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"

# ---- 2. benchmark ----
timeout "$(budget 180)" "$BENCH" >"$OUT/cuda_bench.log" 2>&1
note "cuda_bench: exit $?"

# ---- 3. sanitizers ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  {
    echo "### memcheck (all tests but *Large*)"
    timeout "$(budget 200)" compute-sanitizer --tool memcheck --error-exitcode 3 \
      "$TESTS" --gtest_color=no --gtest_filter=-*Large*
    echo "### memcheck exit $?"
  } >"$OUT/sanitizer.log" 2>&1
  rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
  note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | head -1))"
  if ((DEADLINE - SECONDS > 40)); then
    {
      echo "### racecheck (launch-shape sweep)"
      timeout "$(budget 120)" compute-sanitizer --tool racecheck --error-exitcode 3 \
        "$TESTS" --gtest_color=no --gtest_filter=CudaMatvec.EveryLaunchShapeOfTheFastKernel
      echo "### racecheck exit $?"
    } >>"$OUT/sanitizer.log" 2>&1
    note "racecheck: $(grep -o '### racecheck exit [0-9]*' "$OUT/sanitizer.log") ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
  fi
else
  note "compute-sanitizer not found"
fi

# ---- 4. SASS: load widths and instruction mix of each kernel ----
if command -v cuobjdump >/dev/null; then
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

echo
echo "---- cuda_bench (tail) ----"
tail -n 45 "$OUT/cuda_bench.log"
echo "---- summary ----"
cat "$SUMMARY"
if ((rc_tests != 0)); then exit 1; fi
if ((rc_mem != 0)); then exit 2; fi
exit 0
