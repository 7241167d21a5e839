#!/usr/bin/env bash
# PyTorch "at its best" on this machine (/work/shared/REFERENCE.md, last section): OpenBLAS's OpenMP build
# sharing torch's OpenMP pool, tcmalloc (no page faults on large temporaries), threads pinned to cores,
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (they force a slower kernel).
#   bench/peer_env.sh                      prints the command prefix (env ... ) for reuse
#   bench/peer_env.sh CMD [ARGS...]        execs CMD under those settings, e.g.
#   bench/peer_env.sh /usr/bin/python3 bench/peer_train.py --position alibi
set -euo pipefail
find_lib() {  # package, file name pattern
  dpkg -L "$1" 2>/dev/null | grep -E "$2" | head -n1 || true
}
TCMALLOC=$(find_lib libtcmalloc-minimal4 '/libtcmalloc_minimal\.so\.4$')
[ -n "$TCMALLOC" ] || TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
BLASLIB=$(find_lib libopenblas0-openmp '/openblas-openmp/libblas\.so\.3$')
BLASDIR=$(dirname "${BLASLIB:-/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3}")
PREFIX=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_PROC_BIND=true OMP_PLACES=cores
        "LD_PRELOAD=$TCMALLOC" "LD_LIBRARY_PATH=$BLASDIR")
if [ $# -eq 0 ]; then
  printf '%s ' "${PREFIX[@]}"; echo
else
  exec "${PREFIX[@]}" "$@"
fi
