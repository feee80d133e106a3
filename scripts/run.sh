#!/usr/bin/env bash
# Run the studio on this machine: install (idempotent, scripts/install.sh) and start every service under
# supervisord, the same way a pod does (runpod_start.sh). Open http://localhost:3000 and http://localhost:8675.
#
#   bash scripts/run.sh           demo mode (tiny local models) when there is no NVIDIA GPU or no model hub
#   bash scripts/run.sh --demo    demo mode always
#   PORT=3100 TRAINER_PORT=8775 QWEN_PORT=11535 bash scripts/run.sh    other ports
#
# Here the venv is ./.venv and STUDIO_ROOT defaults to ./workspace (or /workspace when it exists and is writable).
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case "$arg" in
    --demo) ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "[run] unknown option $arg: the only option is --demo (ports and the rest are environment variables," \
            "e.g. PORT=3100 TRAINER_PORT=8775 QWEN_PORT=11535 bash scripts/run.sh; see README.md)" >&2; exit 2 ;;
  esac
done
# The venv is made once with this Python: an older one fails later with pip's errors instead of one sentence.
if [ ! -x "${STUDIO_VENV:-.venv}/bin/python" ]; then
  python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
    have="not found"
    if command -v "$python" >/dev/null 2>&1; then
      have=$("$python" --version 2>&1 || true)
      have=${have%%$'\n'*}
    fi
    echo "[run] Python 3.10 or newer is needed to create the virtual environment (\"$python\": ${have:-no version})." \
         "Install a newer one and name it, e.g. PYTHON=python3.11 bash scripts/run.sh" >&2
    exit 1
  fi
fi
export STUDIO_VENV="${STUDIO_VENV:-.venv}"
export STUDIO_WHEEL_CACHE="${STUDIO_WHEEL_CACHE:-$HOME/.cache/zimage-studio/wheels}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
export HF_HOME="${HF_HOME:-$HOME/.cache/huggingface}"
STUDIO_VENV=$(mkdir -p "$STUDIO_VENV" && cd "$STUDIO_VENV" && pwd)
rmdir "$STUDIO_VENV" 2>/dev/null || true  # only created to resolve the path; install.sh makes the venv

args=("$@")
if [ -z "${STUDIO_DEMO:-}" ] && [[ " $* " != *" --demo "* ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "[run] no NVIDIA GPU (nvidia-smi not found): demo mode"
    args+=(--demo)
  else
    hub="${HF_ENDPOINT:-https://huggingface.co}"
    if ! python3 - "$hub" <<'EOF' >/dev/null 2>&1
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=5)
except urllib.error.HTTPError:
    pass  # the server answered: it is reachable
EOF
    then
      echo "[run] the model hub ($hub) cannot be reached: demo mode"
      args+=(--demo)
    fi
  fi
fi
exec bash runpod_start.sh "${args[@]}"
