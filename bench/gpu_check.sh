#!/usr/bin/env bash
# The GPU check for a lent GPU machine (no network there): what the card is,
# then bench/gpu_check.py with whatever Python that machine has, within 5
# minutes. Usage (from the repository root): bash bench/gpu_check.sh [--seconds 20]
set -u
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
python=python3
[ -x .venv/bin/python ] && .venv/bin/python -c "import numpy" 2>/dev/null && python=.venv/bin/python
timeout 280 "$python" -m bench.gpu_check "$@"
