#!/usr/bin/env bash
# Train and/or score 16, 32, 64 and 128-bit codes on one dataset, then print one table.
# Used by test-flickr.sh, test-nus.sh and test-mscoco.sh:
#   scripts/run_dataset.sh DATASET TASK [--key value ...]
# TASK as UCMFH users know it: 0 train_real, 1 train_hash (train, then score),
# 2 test_real, 3 test_hash (score the saved checkpoints). DATA_ROOT defaults to ./data.
set -euo pipefail
dataset=$1 task=$2
shift 2
cd "$(dirname "$0")/.."
data_root=${DATA_ROOT:-./data}
if [ ! -d "$data_root/$dataset" ]; then
  echo "error: $data_root/$dataset/ not found: put UCMFH's feature pickles train.pkl, query.pkl and retrieval.pkl there, or set DATA_ROOT (see docs/data.md)" >&2
  exit 1
fi
exec "${PYTHON:-python}" train.py --dataset "$dataset" --data_root "$data_root" --task "$task" \
  --hash_lens 16 32 64 128 --output_dir "runs/${dataset}_task${task}_$(date +%Y%m%d-%H%M%S)" "$@"
