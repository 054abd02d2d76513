#!/usr/bin/env bash
# Installs bpuq's build and test dependencies from Debian's packages (idempotent, skips what is there).
set -euo pipefail
packages=(
  build-essential cmake python3
  libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev
  libonnx-dev libprotobuf-dev protobuf-compiler
  doctest-dev libbenchmark-dev libyaml-cpp-dev
  libjpeg-dev libpng-dev zlib1g-dev
)
# optional: oneDNN for the side-by-side kernel benchmarks
# (libdnnl-dev's CMake config requires OpenCL: its Recommends, skipped by --no-install-recommends)
if [ "${BPUQ_WITH_ONEDNN:-1}" = "1" ]; then packages+=(libdnnl-dev ocl-icd-opencl-dev); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
