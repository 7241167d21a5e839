#!/usr/bin/env bash
# Runs a command with llama-cpp-python importable from an unpacked source tree and a llama.cpp built elsewhere,
# for tools/check_llamacpp.py when `pip install llama-cpp-python` is too slow to finish (it compiles llama.cpp):
#   LLAMACPP_PY=/path/to/llama_cpp_python-X.Y.Z LLAMACPP_LIB=/path/to/build/bin tools/llamacpp_env.sh CMD...
# (the sdist from `pip download --no-binary :all: llama-cpp-python`, and its vendor/llama.cpp built with cmake:
# libllama.so and libggml*.so in LLAMACPP_LIB). Without them set, runs CMD unchanged.
set -euo pipefail
if [ -n "${LLAMACPP_PY:-}" ]; then export PYTHONPATH="$LLAMACPP_PY${PYTHONPATH:+:$PYTHONPATH}"; fi
if [ -n "${LLAMACPP_LIB:-}" ]; then export LLAMA_CPP_LIB_PATH="$LLAMACPP_LIB"; fi
exec "$@"
