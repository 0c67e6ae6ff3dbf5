"""The ablation runner and its summary statistics."""
import json
import math

import pytest

import ablation_cli
from study import ablation
from study.summary import collect_results, mean_std, method_label, paired_test, summarize, to_markdown

SMALL = ["--", "--epoch", "1", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32",
         "--batch_size", "512"]


def fake(method_fields, seed, i2t, t2i=0.5):
    return {"dataset": "demo", "bits": 16, "seed": seed, "i2t_map": i2t, "t2i_map": t2i, "i2t_map_all": i2t / 2,
            "t2i_map_all": t2i / 2, "train_seconds": 10.0 + seed, **method_fields}


def test_summary_statistics_against_hand_computed_values():
    plain = {"use_progressive_hash": False}
    progressive = {"use_progressive_hash": True, "scale_schedule": "linear", "scale_max": 10.0}
    results = [fake(plain, s, v) for s, v in enumerate([0.5, 0.6, 0.7])]
    results += [fake(progressive, s, v) for s, v in enumerate([0.55, 0.62, 0.78])]
    for r in results:
        r["method"] = method_label(r)
    rows = {r["method"]: r for r in summarize(results)}
    assert set(rows) == {"plain", "progressive-linear"}
    # plain: mean 0.6; sample std sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    assert rows["plain"]["i2t_map_mean"] == pytest.approx(0.6)
    assert rows["plain"]["i2t_map_std"] == pytest.approx(0.1)
    # progressive: mean 0.65; deviations -0.1, -0.03, 0.13 -> std sqrt(0.0278 / 2)
    assert rows["progressive-linear"]["i2t_map_std"] == pytest.approx(math.sqrt(0.0278 / 2))
    # paired differences 0.05, 0.02, 0.08: mean 0.05, sd 0.03, t = 0.05 / (0.03 / sqrt 3) = 2.8868 with 2 df;
    # for 2 df the t CDF is 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2) = 0.10196
    t = 0.05 / (0.03 / math.sqrt(3))
    assert rows["progressive-linear"]["delta_i2t_map"] == pytest.approx(0.05)
    assert rows["progressive-linear"]["p_i2t_map"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert rows["plain"]["delta_i2t_map"] is None
    assert rows["progressive-linear"]["p_t2i_map"] is None  # identical T2I: no test possible
    assert rows["plain"]["train_seconds_mean"] == pytest.approx(11.0)
    assert "0.6500 ± 0.1179" in to_markdown(list(rows.values()))


def test_small_helpers():
    assert mean_std([0.3]) == (pytest.approx(0.3), None)
    assert paired_test([0.1], [0.2])[1] is None
    assert method_label({"use_progressive_hash": True, "scale_schedule": "step", "scale_max": 15.0,
                         "balanced_loss": True}) == "progressive-step-smax15+balanced"
    assert method_label({"use_progressive_hash": False}) == "plain"


def test_interrupted_grid_resumes_and_a_finished_one_does_no_work(tmp_path, monkeypatch):
    argv = ["--dataset", "demo", "--data_root", str(tmp_path / "data"), "--bits", "8", "--seeds", "2",
            "--cca", "--out", str(tmp_path / "grid"), *SMALL]
    real_run_one, calls = ablation.run_one, []

    def crash_after_two(*a):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(a[0])
        return real_run_one(*a)

    monkeypatch.setattr(ablation, "run_one", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        ablation_cli.main(argv)
    assert len(collect_results(tmp_path / "grid")) == 2
    monkeypatch.setattr(ablation, "run_one", lambda *a: calls.append(a[0]) or real_run_one(*a))
    rows = ablation_cli.main(argv)
    assert len(calls) == 5  # 2 before the crash + the 3 missing runs (cca + 2 methods x 2 seeds = 5 in all)
    assert {r["method"] for r in rows} == {"cca", "plain", "progressive-linear"}
    assert all(r["n_seeds"] == 2 for r in rows if r["method"] != "cca")
    assert (tmp_path / "grid" / "summary.md").is_file() and (tmp_path / "grid" / "summary.csv").is_file()
    assert (tmp_path / "grid" / "map_vs_bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "grid" / "progressive_hash_visualization_demo_8bit.png").is_file()
    ablation_cli.main(argv)
    assert len(calls) == 5  # re-running does no work
    run = tmp_path / "grid" / "demo" / "8bit" / "plain" / "seed1"
    assert (run / "histograms.json").is_file() and (run / "codes.npz").is_file()
    assert not (run / "checkpoints").exists()
    assert json.loads((run / "results.json").read_text())["seed"] == 1
