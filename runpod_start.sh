#!/usr/bin/env bash
# Z-Image Studio: the RunPod template's start command. Safe to run on every pod start.
#
#   bash runpod_start.sh            install what is missing, then run every service under supervisord
#   bash runpod_start.sh --demo     tiny local demo models instead of downloads (also automatic without a GPU)
#
# - The virtual environment lives on the container disk (STUDIO_VENV, default /opt/studio-venv): a network
#   volume makes installing a venv take 30-60 minutes. It sees the image's CUDA torch
#   (--system-site-packages), so torch is never downloaded again.
# - Wheels, the pip cache, the built llama-cpp-python wheel and HF_HOME live in STUDIO_ROOT/.cache
#   (/workspace/.cache on a pod), so a restarted pod reinstalls from cache in about a minute.
# - Only STUDIO_ROOT (/workspace) survives a pod stop: everything the user makes or downloads lives there.
#   This script writes nothing outside STUDIO_ROOT and the venv (supervisord's socket sits in a temp folder).
# - INSTALL_COMFYUI=1 also installs ComfyUI into STUDIO_ROOT/ComfyUI (started on port 8188; finished LoRAs
#   are copied into its models/loras; the files in models-comfyui.txt are downloaded for it).
# - Services start at once; models.txt is downloaded in the background and every page shows the progress.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(pwd)

DEMO="${STUDIO_DEMO:-}"
for arg in "$@"; do
  case "$arg" in
    --demo) DEMO=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "runpod_start.sh: unknown option $arg (use --demo or --help)" >&2; exit 2 ;;
  esac
done

START_US=${EPOCHREALTIME/./}
log() { printf '[start] %s\n' "$*"; }
# step "what" command...: run one step and log it on one line with its duration.
step() {
  local what=$1 begin=${EPOCHREALTIME/./} rc=0
  shift
  "$@" || rc=$?
  local ms=$(( (${EPOCHREALTIME/./} - begin) / 1000 ))
  if [ "$rc" = 0 ]; then
    printf '[start] %-44s %3d.%01d s\n' "$what" $((ms / 1000)) $((ms % 1000 / 100))
  else
    printf '[start] %-44s FAILED (exit %s)\n' "$what" "$rc" >&2
  fi
  return "$rc"
}

# ---- where things live
if [ -z "${STUDIO_ROOT:-}" ]; then
  if [ -d /workspace ] && [ -w /workspace ]; then STUDIO_ROOT=/workspace; else STUDIO_ROOT="$REPO/workspace"; fi
  if [ -d /workspace ] && [ ! -w /workspace ]; then
    echo "[start] WARNING: /workspace (the pod's volume) cannot be written: everything goes to $STUDIO_ROOT on the" \
         "container's disk, lost when the pod stops (the pages say so too). Check the volume, then restart the pod." >&2
  fi
fi
mkdir -p "$STUDIO_ROOT"
STUDIO_ROOT=$(cd "$STUDIO_ROOT" && pwd)
CACHE="$STUDIO_ROOT/.cache"
export STUDIO_ROOT
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$CACHE/pip}"
export STUDIO_WHEEL_CACHE="${STUDIO_WHEEL_CACHE:-$CACHE/wheels}"
export HF_HOME="${HF_HOME:-$CACHE/huggingface}"
export HF_XET_HIGH_PERFORMANCE="${HF_XET_HIGH_PERFORMANCE:-1}"  # model downloads may use every core and link
if [ -z "${STUDIO_VENV:-}" ]; then
  if mkdir -p /opt/studio-venv 2>/dev/null && [ -w /opt/studio-venv ]; then STUDIO_VENV=/opt/studio-venv
  else STUDIO_VENV="$REPO/.venv"; fi
fi
export STUDIO_VENV
log "root $STUDIO_ROOT, venv $STUDIO_VENV, pip cache $PIP_CACHE_DIR, models cache $HF_HOME"

# ---- GPU or demo (an explicit STUDIO_DEMO=0/1 wins over the GPU check)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  log "GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n1)"
  [ -n "$DEMO" ] || DEMO=0
elif [ -z "$DEMO" ]; then
  log "no NVIDIA GPU found: demo mode (tiny local models)"
  DEMO=1
fi
export STUDIO_DEMO="$DEMO"

# ---- install (idempotent: a second run only checks)
mkdir -p "$PIP_CACHE_DIR" "$STUDIO_WHEEL_CACHE" "$HF_HOME"
if [ ! -x "$STUDIO_VENV/bin/python" ] && python3 -c "import torch" >/dev/null 2>&1; then
  export STUDIO_SYSTEM_TORCH=1  # keep the image's CUDA torch: the venv sees the system site-packages
fi
step "install dependencies (scripts/install.sh)" bash scripts/install.sh
PY="$STUDIO_VENV/bin/python"
export STUDIO_PYTHON="$PY"  # what supervisord's programs run

# ---- optional ComfyUI: the code on the volume, its venv on the container disk like the studio's
COMFY_VENV="${COMFYUI_VENV:-/opt/comfyui-venv}"
if [ -z "${COMFYUI_VENV:-}" ] && [ ! -w /opt ]; then
  COMFY_VENV="$STUDIO_ROOT/.cache/comfyui-venv"
fi
source scripts/comfyui.sh  # install_comfyui
if [ "${INSTALL_COMFYUI:-0}" = 1 ]; then
  step "ComfyUI (INSTALL_COMFYUI=1)" install_comfyui || log "ComfyUI could not be installed; the studio runs without it"
elif [ -f "$STUDIO_ROOT/ComfyUI/main.py" ] && [ -x "$COMFY_VENV/bin/python" ]; then
  export COMFYUI_PYTHON="$COMFY_VENV/bin/python"
fi

# ---- supervisord environment (STUDIO_ROOT, STUDIO_PYTHON, STUDIO_RUN_DIR, optional programs)
exports=$(step "prepare supervisord" "$PY" -m studio.supervisor_env --exports)
eval "$(printf '%s\n' "$exports" | grep '^export ')"
printf '%s\n' "$exports" | grep -v '^export ' || true

# ---- not running already for this workspace, and its ports free (one sentence each, instead of supervisord's)
"$PY" -m studio.start_checks || exit 1

total_ms=$(( (${EPOCHREALTIME/./} - START_US) / 1000 ))
log "ready to start after $((total_ms / 1000)).$((total_ms % 1000 / 100)) s; demo=$STUDIO_DEMO; logs in $STUDIO_ROOT/logs"
log "dataset manager :${PORT:-3000}  trainer :${TRAINER_PORT:-8675}  caption service 127.0.0.1:${QWEN_PORT:-11435}"
export PATH="$STUDIO_VENV/bin:$PATH"
# once every service answers: where to go, how to stop ($$ is supervisord once exec'd: it ends with it)
"$PY" -m studio.start_checks --announce --while-pid $$ &
exec supervisord -n -c supervisord.conf
