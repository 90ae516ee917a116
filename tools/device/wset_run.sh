#!/usr/bin/env bash
# The speculative step's write-set checkpoint (session.cc, region_copy.cu) against a baseline, one
# call: its tests and memcheck, then the decode host loop (cuda_forward_bench's "sample + step"
# lines, speculation on and off; the sampler timings) and dsv4 bench at 2K for both bundles,
# alternated. DSV4_FILTER / DSV4_MEMCHECK_FILTER replace the test filters.
# Here: dsv4_pack <build> out/wset ...; baseline bundle out/base8. There: bash tools/device/wset_run.sh.
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
B=$(dsv4_unpack "${DSV4_NEW:-out/wset}")
BASE=$(dsv4_unpack "${DSV4_BASE:-out/base8}")
OUT=${OUT:-$PWD/out/wset-run}
dsv4_run_start "$B" 400
filter=${DSV4_FILTER:-'CudaRegionCopy.*:CudaDeviceState.*:CudaSpeculativeStep.*:CudaEngine.*'}
timeout "$(budget 150)" "$B/cuda_tests" --gtest_color=no --gtest_filter="$filter" >"$OUT/tests.log" 2>&1
note "tests: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/tests.log" | head -20 | tee -a "$SUMMARY"
timeout "$(budget 90)" compute-sanitizer --tool memcheck --error-exitcode 3 "$B/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaRegionCopy.*:CudaDeviceState.*:CudaSpeculativeStep.EveryOtherCallUndoesTheQueuedStep}" >"$OUT/memcheck.log" 2>&1
note "memcheck: exit $? $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | head -1)"
for tag in new base new base; do
  bin=$B; [[ $tag == base ]] && bin=$BASE
  timeout "$(budget 60)" "$bin/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >"$OUT/forward_$tag.log" 2>&1
  note "forward $tag: $(grep -E 'graph|speculation|sampl' "$OUT/forward_$tag.log" | tr '\n' ' ')"
done
for tag in new base; do
  bin=$B; [[ $tag == base ]] && bin=$BASE
  timeout "$(budget 80)" "$bin/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 2048 --gen 64 >"$OUT/bench_$tag.log" 2>&1
  note "bench $tag: exit $? $(grep -iE 'decode' "$OUT/bench_$tag.log" | tail -2 | tr '\n' ' ')"
done
