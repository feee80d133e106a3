#!/usr/bin/env bash
# Install everything the studio needs into ./.venv (idempotent; a second run takes seconds).
#   scripts/install.sh          runtime dependencies
#   scripts/install.sh --dev    plus test tools, Debian chromium for the browser tests
# torch: an existing CUDA torch (the pod image's) is kept; otherwise torch==2.13.0 (CPU here).
# llama-cpp-python 0.3.36 has no wheel on PyPI: it is built once and the wheel cached in
# $STUDIO_WHEEL_CACHE (default ~/.cache/zimage-studio/wheels), so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
VENV="${STUDIO_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
WHEELS="${STUDIO_WHEEL_CACHE:-$HOME/.cache/zimage-studio/wheels}"
LLAMA_VERSION="0.3.36"
TORCH_VERSION="2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

step() { printf '[install] %s\n' "$*"; }
t0=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtual environment $VENV"
  # --system-site-packages keeps a preinstalled CUDA torch visible (RunPod PyTorch images).
  if [ "${STUDIO_SYSTEM_TORCH:-0}" = "1" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP="$PY -m pip"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  # Without an NVIDIA GPU, PyPI's torch brings ~3 GB of CUDA libraries a CPU never uses: the CPU build comes from
  # PyTorch's own index when it can be reached (TORCH_INDEX_URL chooses another; empty: the pip default).
  index="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
  if command -v nvidia-smi >/dev/null 2>&1 || [ -z "$index" ]; then
    index=""
  elif ! "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" \
       "$index" >/dev/null 2>&1; then
    echo "[install] PyTorch's CPU index ($index) cannot be reached: installing pip's default torch (from PyPI that" \
         "is the CUDA build, ~3 GB; TORCH_INDEX_URL names a mirror of the CPU index)" >&2
    index=""
  fi
  step "installing torch==$TORCH_VERSION${index:+ (CPU build from $index)}"
  $PIP install -q "torch==$TORCH_VERSION" ${index:+--index-url "$index" --extra-index-url https://pypi.org/simple}
fi

req=requirements.txt
[ "$DEV" = 1 ] && req=requirements-dev.txt
stamp="$VENV/.studio-$(basename "$req" .txt).sha"
want=$(cat requirements.txt "$req" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  step "installing $req"
  # Constrain torch to what is installed so no dependency can swap it for another build.
  torch_now=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
  $PIP install -q -r "$req" "torch==$torch_now"
  echo "$want" > "$stamp"
fi

# A CUDA build and a CPU build of the same version share a wheel name: keep them in separate folders.
llama_wheels="$WHEELS"
args="-DGGML_NATIVE=OFF"
# STUDIO_CUDA_LLAMA=1 builds for CUDA without a GPU present (an image build); 0 never does.
cuda_llama="${STUDIO_CUDA_LLAMA:-auto}"
if [ "$cuda_llama" = auto ] && command -v nvidia-smi >/dev/null 2>&1; then cuda_llama=1; fi
if [ "$cuda_llama" = 1 ] && command -v nvcc >/dev/null 2>&1; then
  args="-DGGML_CUDA=on -DGGML_NATIVE=OFF"
  llama_wheels="$WHEELS/cuda"
fi
if [ "$cuda_llama" = 1 ] && ! "$PY" -c "import bitsandbytes" >/dev/null 2>&1; then
  step "installing CUDA extras (requirements-cuda.txt)"
  torch_now=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
  $PIP install -q -r requirements-cuda.txt "torch==$torch_now"
fi
if ! "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" >/dev/null 2>&1; then
  mkdir -p "$llama_wheels"
  wheel=$(ls "$llama_wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    step "building llama-cpp-python $LLAMA_VERSION ($args); this takes several minutes once, then it is cached"
    CMAKE_ARGS="$args" $PIP wheel -q --no-deps -w "$llama_wheels" "llama-cpp-python==$LLAMA_VERSION"
    wheel=$(ls "$llama_wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
  fi
  step "installing $(basename "$wheel")"
  $PIP install -q "$wheel"
fi

if [ "$DEV" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  step "installing Debian chromium for the browser tests"
  SUDO=""
  [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
step "ready in $(( $(date +%s) - t0 )) s"
