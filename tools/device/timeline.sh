# Kernel timelines of a CUDA program on the GPU machine (CUPTI activity records; nsys does not run
# there): timeline/kernel_timeline.cc injected with CUDA_INJECTION64_PATH, summarised by
# timeline_summary.py. From the repository root:
#   here:  bash tools/device/timeline.sh build
#          (out/timeline: the library and libcupti; carry out/timeline and the program's bundle)
#   there: bash tools/device/timeline.sh run NAME PROGRAM [ARGS...]
#          ($OUT/NAME.csv.gz: one row per kernel; $OUT/NAME.txt: timeline_summary.py --layers)
# Tracing costs ≈ 3 % of a decode step (docs/PERF.md, session 18).
set -euo pipefail
case "${1:-}" in
  build)
    mkdir -p out/timeline
    cuda=${CUDA_HOME:-/usr/local/cuda}
    g++ -O2 -std=c++20 -shared -fPIC -I"$cuda/include" tools/device/timeline/kernel_timeline.cc \
      -o out/timeline/libkernel_timeline.so -L"$cuda/lib" -L"$cuda/lib64" -lcupti -Wl,-rpath,'$ORIGIN'
    cp -L "$(ls "$cuda"/lib*/libcupti.so.* | head -1)" out/timeline/
    ls -la out/timeline
    ;;
  run)
    name=$2
    shift 2
    rows=$(mktemp)
    CUDA_INJECTION64_PATH="$PWD/out/timeline/libkernel_timeline.so" DSV4_TIMELINE_OUT="$rows" "$@"
    gzip -c "$rows" >"$OUT/$name.csv.gz"
    python3 tools/device/timeline_summary.py "$rows" --layers >"$OUT/$name.txt"
    rm -f "$rows"
    head -3 "$OUT/$name.txt"
    ;;
  *)
    echo "usage: timeline.sh build | run NAME PROGRAM [ARGS...]" >&2
    exit 2
    ;;
esac
