#!/bin/bash
# Runs the PyTorch yardstick and all micro-benchmarks in one go (from /work/main).
cd "$(dirname "$0")/../.."
REF=/work/shared/reference/torch_ice_step.py
ARGS="--embed 192 --depth 4 --heads 3 --img 64 --patch 16 --batch 8 --threads 1"
for i in 1 2 3; do /usr/bin/python3 $REF $ARGS --steps 20; done
node bench/micro/linear.js ${1:-9}
node bench/micro/attention.js ${1:-9}
node bench/micro/norm_gelu.js ${1:-9}
for i in 1 2 3; do /usr/bin/python3 $REF $ARGS --steps 20; done
