"""scripts/gpu_check.sh's steps and table, with stand-ins for python and torchrun that record their calls
(the real steps need a GPU and minutes; docs/scaling.md says where it ran)."""
import os
import subprocess

import pytest

from conftest import ROOT

# records each call; answers the GPU count; writes the demo folder the way load_dataset would;
# fails the step whose arguments contain $FAIL_ON
FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in *device_count*) echo "$FAKE_GPUS"; exit 0 ;; esac
case "$*" in *load_dataset*) mkdir -p "$GPU_CHECK_DIR/data/demo" ;; esac
case "$*" in *"$FAIL_ON"*) exit 7 ;; esac
exit 0
"""


def _run(tmp_path, gpus, fail_on="no step has this"):
    for name in ("python", "torchrun"):
        (tmp_path / name).write_text(FAKE)
        (tmp_path / name).chmod(0o755)
    env = {**os.environ, "PYTHON": str(tmp_path / "python"), "TORCHRUN": str(tmp_path / "torchrun"),
           "CALLS": str(tmp_path / "calls"), "FAKE_GPUS": str(gpus), "FAIL_ON": fail_on,
           "GPU_CHECK_DIR": str(tmp_path / "work")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    return done, (tmp_path / "calls").read_text().splitlines()


def test_every_step_runs_on_cuda_and_the_table_lists_them(tmp_path):
    done, calls = _run(tmp_path, gpus=2)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:]] == [
        "demo_data", "quick_start", "torchrun_2", "bench_epoch", "test_flickr"]
    assert all(row.split("|")[2].strip() == "0" for row in table[1:])
    [quick] = [c for c in calls if c.startswith("python train.py --dataset demo")]
    assert "--device cuda" in quick
    [torchrun] = [c for c in calls if c.startswith("torchrun")]
    assert "--nproc_per_node 2 train.py" in torchrun and "--device cuda" in torchrun
    assert any(c.startswith("python scripts/bench_epoch.py --device cuda") for c in calls)
    # test-flickr.sh on the demo pickles: all four code lengths, on the GPU, few epochs
    [flickr] = [c for c in calls if "--dataset mirflickr" in c]
    assert "--hash_lens 16 32 64 128" in flickr and "--device cuda" in flickr and "--epoch 5" in flickr
    assert (tmp_path / "work" / "flickr" / "mirflickr").resolve() == (tmp_path / "work" / "data" / "demo")


@pytest.mark.parametrize("gpus", [0, 1])
def test_torchrun_is_skipped_without_two_gpus_and_a_failed_step_fails_the_check(tmp_path, gpus):
    done, calls = _run(tmp_path, gpus=gpus, fail_on="bench_epoch")
    assert done.returncode == 1
    assert not any(c.startswith("torchrun") for c in calls)
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert "skip" in rows["torchrun_2"] and f"({gpus} visible)" in rows["torchrun_2"]
    assert rows["bench_epoch"].split("|")[2].strip() == "7"
    assert rows["test_flickr"].split("|")[2].strip() == "0"      # the steps after a failure still run
