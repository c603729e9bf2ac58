#!/usr/bin/env bash
# Install the CPU build of torch 2.13.0 into the given Python environment before anything else, so that
# pip never resolves an unpinned torch (which on Linux pulls a multi-GB CUDA build).
#   1. torch already importable: nothing to do.
#   2. a local wheel (pip's find-links, as on the nncli dev machines): use it; dependencies from the index.
#   3. no NVIDIA GPU: PyTorch's CPU wheel index.   4. otherwise: PyPI's default build.
set -euo pipefail
PY=${1:-python3}
VERSION=${TORCH_VERSION:-2.13.0}
if "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$VERSION' else 1)" 2>/dev/null; then
  exit 0
fi
if "$PY" -m pip install -q --no-index --no-deps "torch==$VERSION" 2>/dev/null; then
  # torch came from the local wheel; its small pure-Python dependencies come from the usual index
  # (torch itself is already satisfied, so pip cannot swap in another build)
  exec "$PY" -m pip install -q "torch==$VERSION"
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
  exec "$PY" -m pip install -q "torch==$VERSION" --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" \
    --extra-index-url https://pypi.org/simple
fi
exec "$PY" -m pip install -q "torch==$VERSION"
