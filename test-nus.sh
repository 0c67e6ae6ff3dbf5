#!/usr/bin/env bash
# UCMFH's NUS-WIDE experiment: train and score 16/32/64/128-bit codes, then one table of all four.
# Needs UCMFH's feature pickles in data/nus-wide/ (or DATA_ROOT=/path/to/datasets).
# TASK: 1 = train the hash stage and score it; 3 = score the saved checkpoints;
#       0 / 2 = train / score the real-valued (fusion only) stage. Extra flags pass through.
TASK=${TASK:-1}
exec bash "$(dirname "$0")/scripts/run_dataset.sh" nus-wide "$TASK" "$@"
