# Shared by the device scripts (run_gpu_tests.sh, decode_run.sh, prefill_gpu.sh): bundling built
# binaries here, unpacking them there, and the step budget of a run. Source it from the
# repository root.

# dsv4_pack BUILD_DIR BUNDLE_DIR TARGET...: the targets (from BUILD_DIR or BUILD_DIR/tests) without
# debug sections, plus the shared libraries dsv4 needs beyond the C/C++ runtime and libssl
# (cpp-httplib, brotli: absent on the GPU machine), into BUNDLE_DIR/bundle.tar.gz (compressed: the
# carried tree is limited to 64 MiB).
dsv4_pack() {
  local build=$1 bundle=$2
  shift 2
  local stage t b
  stage=$(mktemp -d)
  mkdir -p "$stage/lib"
  for t in "$@"; do
    b="$build/$t"
    [[ -f "$b" ]] || b="$build/tests/$t"
    objcopy --strip-debug "$b" "$stage/$t"
  done
  if [[ -f "$stage/dsv4" ]]; then
    for lib in $(ldd "$build/dsv4" | grep -oE '/\S*lib(cpp-httplib|brotli)\S*'); do cp -L "$lib" "$stage/lib/"; done
  fi
  rm -rf "$bundle"
  mkdir -p "$bundle"
  tar -C "$stage" -czf "$bundle/bundle.tar.gz" .
  rm -rf "$stage"
  du -sh "$bundle"
}

# dsv4_unpack BUNDLE_DIR: unpacks into /tmp/dsv4-<name of BUNDLE_DIR> and prints that folder.
dsv4_unpack() {
  local dir
  dir=/tmp/dsv4-$(basename "$1")
  mkdir -p "$dir" && tar -C "$dir" -xzf "$1/bundle.tar.gz" && echo "$dir"
}

# dsv4_run_start BIN_DIR DEFAULT_BUDGET: $OUT/summary.txt, note (prints and records a line),
# budget CAP (seconds for the next step: CAP, or what is left of DSV4_GPU_BUDGET if less), the
# bundle's libraries on LD_LIBRARY_PATH, and $layers (flash-q2 layers the card holds).
dsv4_run_start() {
  mkdir -p "$OUT"
  SUMMARY="$OUT/summary.txt"
  : >"$SUMMARY"
  DEADLINE=$((SECONDS + ${DSV4_GPU_BUDGET:-$2}))
  export LD_LIBRARY_PATH="$1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null | head -1)"
  local total_mib
  total_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
  layers=${DSV4_BENCH_LAYERS:-$([[ "${total_mib:-0}" -ge 120000 ]] && echo 43 || echo 30)}
}
note() { echo "$*" | tee -a "$SUMMARY"; }
budget() {
  local left=$((DEADLINE - SECONDS))
  ((left < 1)) && left=1
  ((left < $1)) && echo "$left" || echo "$1"
}
# ncu_kernel_times: ncu --csv output (gpu__time_duration.sum per kernel) on stdin -> one line per
# kernel (µs, name cut to 120 characters) and the total.
ncu_kernel_times() {
  grep -E '^"' | python3 -c '
import csv, sys
rows = [r for r in csv.reader(sys.stdin)]
head, body = rows[0], rows[1:]
k, v = head.index("Kernel Name"), head.index("Metric Value")
total = 0.0
for r in body:
    us = float(r[v].replace(",", "")) / 1000.0
    total += us
    print("%9.2f us  %s" % (us, r[k][:120]))
print("%9.2f us  total of %d kernels" % (total, len(body)))
'
}
# ncu_source NAME NCU_OPTIONS... COMMAND...: `ncu --set full` of the launches the options select,
# leaving $OUT/NAME_details.txt and $OUT/NAME_sass.csv.gz (per-instruction samples and shared-memory
# wavefronts; summarise it here with tools/device/ncu_source_summary.py). ncu's own output goes to
# stderr.
ncu_source() {
  local name=$1
  shift
  ncu --set full --import-source no -o "$OUT/$name" "$@" >&2 || return
  ncu --import "$OUT/$name.ncu-rep" --page details >"$OUT/${name}_details.txt" 2>&1
  ncu --import "$OUT/$name.ncu-rep" --page source --csv --print-source sass 2>/dev/null | gzip >"$OUT/${name}_sass.csv.gz"
  rm -f "$OUT/$name.ncu-rep"
}
