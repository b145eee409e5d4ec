#!/usr/bin/env bash
# Fetches, here, the wheels benchmarks/gpu_check.sh installs on the GPU machine (Python 3.12, a
# CUDA PyTorch, no network): the packages this project needs that its image lacks, at the
# versions CI tests. They go to .whl/ (ignored by git), which
# the device tool carries (carry: [".whl"]).
#
#     bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for tag in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
    manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl \
    torchrl==0.14.1 tensordict==0.14.3 hoptorch==0.1.4 pyvers==0.2.3 orjson==3.13.0 importlib_metadata==10.2.0 \
    gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 \
    websockets==17.4 glfw==2.11.0 pyopengl==3.1.10 hydra-core==1.3.8 omegaconf==2.3.1
# The ANTLR runtime Hydra parses overrides with is published as a source archive only.
python3 -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .whl
du -sh .whl
