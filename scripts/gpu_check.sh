#!/usr/bin/env bash
# GPU readiness in one call: the quick start on cuda, torchrun on 2 GPUs (when there are 2),
# bench_epoch.py on the GPU and test-flickr.sh on demo-sized data; then one table of timings.
#   bash scripts/gpu_check.sh                # on a machine with a GPU
#   DEVICE=cpu bash scripts/gpu_check.sh     # the same steps on the CPU (slow; to try the script)
# Every step runs even when one before it failed; the exit status is 1 when any step failed.
# Logs go to $GPU_CHECK_DIR (default: a new folder under /tmp), one file per step.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
TORCHRUN=${TORCHRUN:-torchrun}
DEVICE=${DEVICE:-cuda}
EPOCHS=${GPU_CHECK_EPOCHS:-5}           # test-flickr.sh's epochs on demo data (mirflickr.yaml says 100)
work=${GPU_CHECK_DIR:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$work"
rows=() failed=0

step() {   # step NAME COMMAND...: run it, log its output, keep one table row
    local name=$1 start status seconds
    shift
    start=$EPOCHREALTIME
    "$@" >"$work/$name.log" 2>&1
    status=$?
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    rows+=("$(printf '| %-12s | %6s | %9s | %s |' "$name" "$status" "$seconds" "$work/$name.log")")
    [ "$status" -eq 0 ] || failed=1
}

gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
echo "gpu_check: device $DEVICE, $gpus GPU(s) visible, logs in $work"

# the demo set, written once where every step reads it
step demo_data "$PYTHON" -c "from data.datasets import load_dataset; load_dataset('demo', '$work/data')"
step quick_start "$PYTHON" train.py --dataset demo --device "$DEVICE" --output_dir "$work/runs/quick_start" \
    --checkpoint_dir "$work/checkpoints/quick_start" --data_root "$work/data"
if [ "$DEVICE" = cuda ] && [ "$gpus" -ge 2 ]; then
    step torchrun_2 "$TORCHRUN" --nproc_per_node 2 train.py --dataset demo --device cuda \
        --output_dir "$work/runs/torchrun" --checkpoint_dir "$work/checkpoints/torchrun" --data_root "$work/data"
else
    rows+=("| torchrun_2   |   skip |         - | needs --device cuda and 2 GPUs ($gpus visible) |")
fi
step bench_epoch "$PYTHON" scripts/bench_epoch.py --device "$DEVICE"
# test-flickr.sh reads data/mirflickr/: the demo set's pickles stand in for UCMFH's MIRFlickr features
mkdir -p "$work/flickr" && ln -sfn "$work/data/demo" "$work/flickr/mirflickr"
step test_flickr env DATA_ROOT="$work/flickr" PYTHON="$PYTHON" bash test-flickr.sh --device "$DEVICE" \
    --epoch "$EPOCHS" --checkpoint_dir "$work/checkpoints/test_flickr"

echo
echo "| step         | status | seconds   | log |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
