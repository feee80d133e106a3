# Z-Image Studio on RunPod's PyTorch image (CUDA 12.8, Python 3.11, torch 2.8): the environment is baked in,
# so a template that uses this image boots to working pages in seconds.
#   docker build -t zimage-studio .
# Template: this image, HTTP ports 3000 and 8675 (8188 with INSTALL_COMFYUI=1), volume at /workspace.
# Only /workspace survives a pod stop: datasets, models, jobs, LoRAs and caches all live there.
FROM runpod/pytorch:2.8.0-py3.11-cuda12.8.1-cudnn-devel-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STUDIO_VENV=/opt/studio-venv

RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends git cmake build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/zimage-studio
# Dependencies first, so code changes do not rebuild llama-cpp-python.
COPY requirements.txt requirements-dev.txt requirements-cuda.txt ./
COPY scripts/install.sh scripts/install.sh
# The venv sees the image's CUDA torch (--system-site-packages); llama-cpp-python is built for CUDA
# here, where no GPU is attached (STUDIO_CUDA_LLAMA=1), for the common GPU architectures.
RUN STUDIO_SYSTEM_TORCH=1 STUDIO_CUDA_LLAMA=1 STUDIO_WHEEL_CACHE=/tmp/wheels PIP_NO_CACHE_DIR=1 \
    bash scripts/install.sh \
 && rm -rf /tmp/wheels

COPY . .

EXPOSE 3000 8675 8188
# runpod_start.sh finds everything installed, points caches at /workspace/.cache and runs supervisord.
CMD ["bash", "/opt/zimage-studio/runpod_start.sh"]
