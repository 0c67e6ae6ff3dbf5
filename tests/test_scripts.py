"""The UCMFH-style shell scripts, run as a user would (small model, one epoch)."""
import json
import os
import subprocess
import sys

from conftest import ROOT, small_dataset

SMALL = ["--modality_dropout", "0", "--balanced_neighbours", "covariance",
         "--epoch", "1", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "64",
         "--batch_size", "512", "--unimodal_epochs", "1"]


def run_script(name, data_root, *extra):
    env = dict(os.environ, DATA_ROOT=str(data_root), PYTHON=sys.executable)
    return subprocess.run(["bash", str(ROOT / name), *extra], capture_output=True, text=True, env=env,
                          timeout=300)


def test_test_flickr_runs_all_four_code_lengths_and_ends_with_one_table(tmp_path):
    (small_dataset(tmp_path) / "small").rename(tmp_path / "data" / "mirflickr")  # UCMFH's layout, for the real pickles
    out = tmp_path / "runs"
    done = run_script("test-flickr.sh", tmp_path / "data", *SMALL, "--output_dir", str(out),
                      "--checkpoint_dir", str(tmp_path / "ck"))
    assert done.returncode == 0, done.stderr
    table = done.stdout.strip().splitlines()[-6:]
    assert "I2T mAP@50" in table[0] and [line.split()[1] for line in table[2:]] == ["16", "32", "64", "128"]
    for bits in (16, 32, 64, 128):
        result = json.loads((out / f"mirflickr_{bits}bit" / "results.json").read_text())
        assert result["bits"] == bits and result["dataset"] == "mirflickr"
        assert (tmp_path / "ck" / "hash" / f"mirflickr_hash_{bits}.pth").is_file()


def test_missing_dataset_stops_at_once_with_where_to_put_it(tmp_path):
    done = run_script("test-nus.sh", tmp_path)
    assert done.returncode == 1
    assert "nus-wide/ not found: put UCMFH's feature pickles" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_bench_map_times_the_loop_the_metric_alone_and_the_default_trio(capsys):
    import bench_map_cli

    assert bench_map_cli.main(["--queries", "12", "--database", "700", "--bits", "16", "--check_queries", "4"]) == 0
    out = capsys.readouterr().out
    for row in ("loop: mAP@50 alone", "retrieval_metrics: mAP@50 alone", "retrieval_metrics: mAP@50 + mAP@all + P@50",
                "default trio"):
        assert row in out
    assert "MISMATCH" not in out and out.count(" OK") == 5
