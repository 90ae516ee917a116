#!/usr/bin/env bash
# GPU machine: regenerate the transformers reference fixtures of tests/fixtures/reference/ and
# compare dsv4's CPU logits against them in the same run.
# Usage (repository root, dsv4 binary carried at out/device/dsv4):
#   bash tools/device/make_reference_fixtures.sh OUTDIR
set -euo pipefail
O=${1:?output dir}
mkdir -p "$O"
BIN=${DSV4_BIN:-out/device/dsv4}
R=tools/reference
W=$(mktemp -d)
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

# name preset seed n_tokens token_seed
FIXTURES=(
  "tiny 1 300 7"
  "small 1 700 11"
)
for spec in "${FIXTURES[@]}"; do
  read -r preset seed n tseed <<<"$spec"
  "$BIN" gen-model --preset "$preset" --seed "$seed" --types f32 --out "$W/$preset.gguf"
  for mode in plain official; do
    name="$preset-s$seed-$mode"
    python3 $R/make_fixture.py --gguf "$W/$preset.gguf" --n-tokens "$n" --seed "$tseed" --mode "$mode" \
      --out "$O/$name.dsv4fix" 2>&1 | tee "$W/$name.log" | grep -v Warning || true
    test -f "$O/$name.dsv4fix"
    # dsv4's CPU logits for the same ids, wrapped in the fixture format, then compared.
    python3 -c "
import sys; sys.path.insert(0, '$R')
from fixture import read_fixture
h, t, l = read_fixture('$O/$name.dsv4fix')
open('$W/$name.ids', 'w').write(','.join(str(int(x)) for x in t))"
    "$BIN" logits -m "$W/$preset.gguf" --tokens-file "$W/$name.ids" --mode "$mode" --out "$W/$name.bin" >/dev/null
    python3 -c "
import sys, numpy as np; sys.path.insert(0, '$R')
from fixture import read_fixture, write_fixture
h, t, l = read_fixture('$O/$name.dsv4fix')
c = np.fromfile('$W/$name.bin', dtype='<f4').reshape(l.shape)
write_fixture('$W/$name.dsv4.dsv4fix', {k: h[k] for k in ('mode', 'gguf', 'schedule')}, t, c)"
    echo "== $name: dsv4 CPU vs transformers"
    python3 $R/compare_fixtures.py "$O/$name.dsv4fix" "$W/$name.dsv4.dsv4fix" || true
  done
done
ls -la "$O"
