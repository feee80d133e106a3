# ComfyUI for INSTALL_COMFYUI=1 (sourced by runpod_start.sh): its code on the volume (STUDIO_ROOT/ComfyUI), its venv
# in COMFY_VENV on the container disk like the studio's; `log` says what happened. Sets COMFYUI_PYTHON.
COMFYUI_PINNED=v0.8.1  # COMFYUI_REF overrides (a tag, a branch; empty: the newest code)
install_comfyui() {
  local dir="$STUDIO_ROOT/ComfyUI" venv="$COMFY_VENV"
  local repo="${COMFYUI_REPO:-https://github.com/comfyanonymous/ComfyUI.git}" ref="${COMFYUI_REF-$COMFYUI_PINNED}"
  if [ ! -f "$dir/main.py" ]; then
    # the release the render workflow and the Z-Image nodes were checked with; its newest code when that tag is gone
    if [ -z "$ref" ] || ! git clone -q --depth 1 --branch "$ref" "$repo" "$dir" 2>/dev/null; then
      [ -z "$ref" ] || log "ComfyUI $ref is not in $repo: taking its newest code instead"
      rm -rf "$dir"
      git clone -q --depth 1 "$repo" "$dir"
    fi
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
  local want
  want=$(sha256sum "$dir/requirements.txt" | cut -c1-16)
  if [ "$(cat "$venv/.studio-comfyui.sha" 2>/dev/null || true)" != "$want" ]; then
    "$venv/bin/python" -m pip install -q -r "$dir/requirements.txt"
    echo "$want" > "$venv/.studio-comfyui.sha"
  fi
  mkdir -p "$dir/models/loras"
  export COMFYUI_PYTHON="$venv/bin/python"
}
