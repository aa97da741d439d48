#!/usr/bin/env bash
# Create the side virtualenv for the RecBole peers at <repo>/.peers-venv (gitignored) and install
# bench/peers/requirements.txt into it. Idempotent: re-running only installs what is missing.
#
#   bash bench/peers/setup.sh
#
# Variables: PYTHON (default python3, 3.11 tested), PEERS_VENV (default <repo>/.peers-venv),
# TORCH_SPEC (default 'torch==2.13.0'; on this machine pip takes the CPU wheel from local disk. Elsewhere
# pass a CPU wheel index, e.g. TORCH_SPEC='torch==2.13.0 --index-url <CPU wheel index>', so pip never pulls a
# multi-GB CUDA build; on a CUDA machine a CUDA build is fine and the driver uses the GPU).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${PEERS_VENV:-$REPO/.peers-venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" --disable-pip-version-check)

# torch first and alone, so the CPU wheel is the one that lands (word splitting of TORCH_SPEC is intended).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_SPEC
fi
# --no-deps: the file is the full pinned closure; RecBole's own metadata would pull ray.
"${PIP[@]}" install --no-deps -r "$HERE/requirements.txt"

# Smoke test: the imports the driver needs, with the same ray stub it uses.
"$VENV/bin/python" - <<'PY'
import sys, types
ray = types.ModuleType("ray"); ray.tune = types.ModuleType("ray.tune")
sys.modules.setdefault("ray", ray); sys.modules.setdefault("ray.tune", ray.tune)
import numpy, torch, recbole
from recbole.config import Config  # noqa: F401
from recbole.data import create_dataset, data_preparation  # noqa: F401
from recbole.utils import get_model, get_trainer  # noqa: F401
assert numpy.__version__.startswith("1."), numpy.__version__
print(f"ok: recbole {recbole.__version__}, torch {torch.__version__} "
      f"(cuda {torch.cuda.is_available()}), numpy {numpy.__version__}")
PY
