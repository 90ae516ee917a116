#!/usr/bin/env bash
# End-to-end checks of the reference tooling on a machine with torch + transformers (GPU or not).
# Run from the repository root:  bash tools/reference/tests/run_device_checks.sh [workdir]
# Uses its own random synthetic GGUFs (tests/synth_gguf.py), not `dsv4 gen-model`.
set -euo pipefail
W=${1:-${OUT:-/tmp/dsv4-reference-check}}
mkdir -p "$W"
R=tools/reference
export PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, numpy; print('torch', torch.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
if python3 -c "import pytest" 2>/dev/null; then
  python3 -m pytest -q -p no:cacheprovider "$R"
else
  echo "pytest missing: skipping the unit tests"
fi
python3 $R/tests/synth_gguf.py --preset tiny --seed 1 --out "$W/tiny.gguf"
# plain + official fixtures, with the cached-vs-full self-check (top-k active from position 35)
python3 $R/make_fixture.py --gguf "$W/tiny.gguf" --n-tokens 160 --seed 7 --mode plain \
  --out "$W/tiny-plain.dsv4fix" --self-check --self-check-json "$W/tiny-plain-selfcheck.json"
python3 $R/make_fixture.py --gguf "$W/tiny.gguf" --n-tokens 160 --seed 7 --mode official \
  --out "$W/tiny-official.dsv4fix" --self-check --self-check-chunk 5 --self-check-json "$W/tiny-official-selfcheck.json"
python3 - "$W" <<'EOF'
import sys, numpy as np
sys.path.insert(0, "tools/reference")
from fixture import read_fixture
w = sys.argv[1]
hp, tp, lp = read_fixture(f"{w}/tiny-plain.dsv4fix")
ho, to, lo = read_fixture(f"{w}/tiny-official.dsv4fix")
assert np.array_equal(tp, to)
d = np.abs(lp - lo).max(axis=1) / np.abs(lp).max(axis=1)
print("official vs plain: max rel logit difference per position: median %.3e max %.3e; argmax agreement %.3f"
      % (np.median(d), d.max(), (lp.argmax(1) == lo.argmax(1)).mean()))
EOF
