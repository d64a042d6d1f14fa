#!/usr/bin/env bash
# Run a command at the lowest SIMD level of PyTorch, numpy, MKL and oneDNN.
#
# Why: machines differ in their vector units (AVX2, AVX-512), and kernels of different widths
# round differently. A test or a page claim that holds natively but not here sits on a numerical
# edge and would fail on someone else's machine. `make test` runs the claim-bearing tests and the
# toy-model page under this setting as well as natively.
#   usage: scripts/lowest_simd.sh CMD [ARG ...]
# Trained models depend on the kernels too: give such a run its own RESIDUAL_RESPONSE_CACHE.
set -euo pipefail
export ATEN_CPU_CAPABILITY=default
export NPY_DISABLE_CPU_FEATURES="X86_V3,X86_V4,AVX512_ICL,AVX512_SPR"
export MKL_ENABLE_INSTRUCTIONS=SSE4_2
export ONEDNN_MAX_CPU_ISA=SSE41
echo "lowest SIMD: ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY NPY_DISABLE_CPU_FEATURES=$NPY_DISABLE_CPU_FEATURES" \
     "MKL_ENABLE_INSTRUCTIONS=$MKL_ENABLE_INSTRUCTIONS ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA" >&2
exec "$@"
