#!/usr/bin/env bash
# Installs the Debian packages stretch needs to build and test (idempotent: apt-get runs only when something is
# missing; sudo is used when not root). Usage: scripts/install-deps.sh [extra packages...]
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config libdnnl-dev libomp-dev nlohmann-json3-dev libcli11-dev libgtest-dev
      libbenchmark-dev zlib1g-dev libicu-dev libxxhash-dev libsentencepiece-dev libpcre2-dev gnuplot-nox time
      libopenmpi-dev openmpi-bin  # data-parallel training (mpirun -np N stretch train)
      ocl-icd-opencl-dev  # oneDNN's CMake config looks for OpenCL; apt only recommends it
      clang libclang-rt-14-dev "$@")  # clang + libFuzzer: scripts/fuzz.sh
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
