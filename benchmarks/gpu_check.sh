#!/usr/bin/env bash
# The GPU check (CUDA end to end): on the GPU machine, from the repository root, with the wheels
# of benchmarks/gpu_wheels.sh in .whl/, writing every result into the folder it is given:
#
#     bash benchmarks/gpu_check.sh "$OUT"            # the device tool: carry [".whl"], timeout_s 560
#
# 1. the CUDA tests (every test with "cuda" in its name or parameters);
# 2. a short recipe run with device=cuda and collection on the machine's CPU cores;
# 3. benchmarks/throughput.py on Hopper and Humanoid with device=cuda, and on Hopper with the same
#    workers on the CPU alone, for the ratio (docs/performance.md).
# Each step has its own time limit (about 8 minutes in all), so one that hangs leaves the others
# their time and the results so far; steps.txt says how each ended, log.txt holds their output.
# DEVICE=cpu SKIP_WHEELS=1 WORKERS=2 runs the same steps on a machine without a GPU (to check
# the script itself: the CUDA tests then skip).
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUTPUT_DIR}
mkdir -p "$out"
device=${DEVICE:-cuda}
# 16 cores: 16 collector processes of 4 envs each (2048 samples = 32 steps of 64 envs).
collection=("collector.num_workers=${WORKERS:-16}" "env.num_envs=4")
workers=(--override "${collection[0]}" --override "${collection[1]}")
if [ -z "${SKIP_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed" | tee "$out/failed.txt"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi 2>&1 | head -15
    python3 -c "import torch, torchrl, tensordict, gymnasium, mujoco; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'torchrl', torchrl.__version__, 'tensordict', tensordict.__version__, \
'gymnasium', gymnasium.__version__, 'mujoco', mujoco.__version__)"
    nproc
} > "$out/machine.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: runs one step under its limit, its output into log.txt
    local name=$1 limit=$2
    shift 2
    local tic=$SECONDS
    echo "===== $name: $*" >> "$out/log.txt"
    timeout "$limit" "$@" >> "$out/log.txt" 2>&1
    echo "$name: exit $? after $((SECONDS - tic)) s" | tee -a "$out/steps.txt"
}

step tests 120 python3 -m pytest -q -n 0 -p no:cacheprovider -k cuda -W ignore::UserWarning \
    tests/test_devices.py tests/test_store.py tests/test_updates.py tests/test_loss.py tests/test_envs.py
step recipe 90 python3 recipes/mujoco_awr.py task=hopper device="$device" "${collection[@]}" \
    collector.total_frames=61440 eval.interval=15 checkpoint.interval=15 progress=false output_dir=/tmp/gpu_check_run
for task in hopper humanoid; do
    step "throughput_${task}_$device" 90 python3 benchmarks/throughput.py --task "$task" --device "$device" \
        --iterations 10 --floor-modes fused_x4 "${workers[@]}" --out "$out/throughput_${task}_$device.json" \
        --run-dir "/tmp/throughput_${task}_$device"
done
step throughput_hopper_cpu_only 90 python3 benchmarks/throughput.py --task hopper --device cpu \
    --iterations 10 --floor-modes fused_x4 "${workers[@]}" --out "$out/throughput_hopper_cpu_only.json" \
    --run-dir /tmp/throughput_hopper_cpu_only
