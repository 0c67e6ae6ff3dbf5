"""The ablation runner and its summary statistics."""
import json
import math

import pytest

import ablation_cli
from config import build_config
from conftest import ROOT, process_id, small_dataset
from study import ablation, workers
from study.summary import collect_results, mean_std, method_label, paired_test, summarize, to_markdown

SMALL = ["--", "--modality_dropout", "0", "--balanced_neighbours", "covariance",
         "--epoch", "1", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32",
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
    markdown = to_markdown(list(rows.values()))
    assert "0.6500 ± 0.1179" in markdown and "| +0.0500 (p=0.102) | +0.0000 |" in markdown   # T2I: Δ, no p


def test_small_helpers():
    assert mean_std([0.3]) == (pytest.approx(0.3), None)
    assert paired_test([0.1], [0.2])[1] is None
    assert method_label({"use_progressive_hash": True, "scale_schedule": "step", "scale_max": 15.0,
                         "balanced_loss": True}) == "progressive-step-smax15+balanced"
    assert method_label({"use_progressive_hash": False}) == "plain"


def test_interrupted_grid_resumes_and_a_finished_one_does_no_work(tmp_path, monkeypatch):
    argv = ["--dataset", "small", "--data_root", str(small_dataset(tmp_path)), "--bits", "8", "--seeds", "2",
            "--cca", "--out", str(tmp_path / "grid"), *SMALL, "--unimodal_epochs", "1"]   # one branch epoch
    real_run_one, calls = ablation.run_one, []

    def crash_after_two(*a):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(a[0])
        return real_run_one(*a)

    monkeypatch.setattr(ablation, "run_one", crash_after_two)
    # the grid's figures are drawn (the summary ones below); each run's training curves are only
    # asked for: test_plots.py draws them, at 1 s apiece
    from study import plots
    curves = []
    monkeypatch.setattr(plots, "plot_training_curves", lambda run, out: curves.append(run) or out)
    with pytest.raises(KeyboardInterrupt):
        ablation_cli.main(argv)
    assert len(collect_results(tmp_path / "grid")) == 2
    def checkpoint_gone_once_scored(*a):   # no run of this grid re-scores another's checkpoint
        calls.append(a[0])
        folder = real_run_one(*a)
        assert not (folder / "checkpoints").exists(), folder
        return folder

    from ICMR import Solver

    def never_written(solver):   # so none is written: a zoo model's is 0.5 GB
        raise AssertionError(f"{solver.checkpoint_path} written by a run no other run re-scores")
    monkeypatch.setattr(ablation, "run_one", checkpoint_gone_once_scored)
    monkeypatch.setattr(Solver, "save_checkpoint", never_written)
    rows = ablation_cli.main(argv)
    assert len(calls) == 5  # 2 before the crash + the 3 missing runs (cca + 2 methods x 2 seeds = 5 in all)
    assert {r["method"] for r in rows} == {"cca", "plain", "progressive-linear"}
    assert all(r["n_seeds"] == 2 for r in rows if r["method"] != "cca")
    assert (tmp_path / "grid" / "summary.md").is_file() and (tmp_path / "grid" / "summary.csv").is_file()
    assert (tmp_path / "grid" / "map_vs_bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "grid" / "progressive_hash_visualization_small_8bit.png").is_file()
    assert sorted(run.relative_to(tmp_path / "grid").as_posix() for run in curves) == [
        f"small/8bit/{method}/seed{seed}" for method in ("plain", "progressive-linear") for seed in (0, 1)]
    ablation_cli.main(["--no_plots", *argv])
    assert len(calls) == 5  # re-running does no work
    run = tmp_path / "grid" / "small" / "8bit" / "plain" / "seed1"
    assert (run / "histograms.json").is_file() and (run / "codes.npz").is_file()
    assert not (run / "checkpoints").exists()
    assert json.loads((run / "results.json").read_text())["seed"] == 1


def test_ladder_rungs_are_cumulative_then_branch_with_their_baselines():
    from study.ladder import FLAWS_FIXED, rung_settings
    rungs = {label: (settings, parent) for label, settings, parent in rung_settings("ucmfh")}
    assert rungs["ucmfh"] == ({"preset": "ucmfh"}, None)
    assert rungs["+stable-ties"][0] == {"preset": "ucmfh", "eval_sequence": "item", "eval_drop_last": False,
                                        "tie_order": "index"}
    fixed = rungs[FLAWS_FIXED][0]
    assert fixed == {"preset": "ucmfh", "eval_sequence": "item", "eval_drop_last": False, "tie_order": "index",
                     "lr_step": "epoch", "train_limit": 0, "train_drop_last": False}
    assert rungs["dropout-0.5"] == ({**fixed, "modality_dropout": 0.5}, FLAWS_FIXED)
    assert rungs["progressive-hashnet"][0] == {**fixed, "use_progressive_hash": True, "scale_schedule": "hashnet"}
    assert rungs["dropout-0.75+progressive"] == ({**fixed, "modality_dropout": 0.75, "use_progressive_hash": True,
                                                  "scale_schedule": "linear"}, "dropout-0.75")
    assert rungs["defaults"] == ({}, FLAWS_FIXED)
    assert rungs["unimodal-branch-no-distill"] == ({**fixed, "unimodal_epochs": 5, "unimodal_distill": 0.0},
                                                   "unimodal-branch")
    assert rungs["progressive+unimodal-branch"] == (
        {**fixed, "use_progressive_hash": True, "scale_schedule": "linear", "unimodal_epochs": 5}, "progressive-linear")
    # after every switch is off, the preset's remaining values are UCMFH's training: plain tanh, no branch
    from config import build_config
    cfg, default = build_config([f"--{k}={v}" for k, v in fixed.items()]), build_config([])
    differ = {k for k in vars(cfg) if getattr(cfg, k) != getattr(default, k)}
    assert differ == {"preset", "seed", "unimodal_epochs", "use_progressive_hash", "eval_batch_size", "modality_dropout",
                      "balanced_loss", "infonce_mask_neighbours"}


def test_vary_axis_crosses_settings_and_compares_at_equal_values(tmp_path):
    args = ablation_cli.parse_args(["--dataset", "demo", "--bits", "8", "--seeds", "2", "--out", str(tmp_path),
                                    "--vary", "modality_dropout=0,0.5", "--vary", "lr_hash=0.001"])
    labels = {label: baseline for label, _, baseline in ablation.settings(args)}
    assert labels == {"plain modality_dropout=0 lr_hash=0.001": None,
                      "progressive-linear modality_dropout=0 lr_hash=0.001": "plain modality_dropout=0 lr_hash=0.001",
                      "plain modality_dropout=0.5 lr_hash=0.001": None,
                      "progressive-linear modality_dropout=0.5 lr_hash=0.001":
                          "plain modality_dropout=0.5 lr_hash=0.001"}
    runs = ablation.grid(args)
    assert len(runs) == 8
    folder, argv, *_ = runs[2]
    assert folder == tmp_path / "demo" / "8bit" / "progressive-linear_modality_dropout=0_lr_hash=0.001" / "seed0"
    assert "--modality_dropout=0" in argv and "--lr_hash=0.001" in argv
    assert not any(a.startswith("--scale_max") for a in argv)     # the default map applies
    args = ablation_cli.parse_args(["--dataset", "demo", "--scale_max", "8", "16:8,64:12", "--out", str(tmp_path)])
    assert [label for label, _, _ in ablation.settings(args)] == ["plain", "progressive-linear-smax8",
                                                                  "progressive-linear-smax16:8,64:12"]
    for bad in ("modality_dropout", "nope=1,2", "modality_dropout=x", "epoch="):
        with pytest.raises(SystemExit):
            ablation_cli.parse_args(["--vary", bad])
    # a key varied and also set after --: the fixed value would win in every run
    for fixed in (["--late_temperature", "auto"], ["--late-temperature=auto"]):
        with pytest.raises(SystemExit):
            ablation_cli.parse_args(["--vary", "late_temperature=0,0.3", "--", *fixed])
    assert ablation_cli.parse_args(["--vary", "late_temperature=0", "--", "--temperature", "0.4"]).vary


def test_method_grid_leaves_the_balanced_loss_to_train_py_unless_asked(tmp_path):
    # a fixed --balanced_loss=False in every run once overrode the default after the default turned on
    default = ablation_cli.parse_args(["--dataset", "demo", "--bits", "8", "--seeds", "1", "--out", str(tmp_path)])
    runs = ablation.grid(default)
    assert runs and not any(a.startswith("--balanced_loss") for _, argv, *_ in runs for a in argv)
    assert {folder.parent.name for folder, *_ in runs} == {"plain", "progressive-linear"}
    both = ablation_cli.parse_args(["--dataset", "demo", "--bits", "8", "--seeds", "1", "--out", str(tmp_path),
                                    "--balanced", "off", "on"])
    flags = {folder.parent.name: [a for a in argv if a.startswith("--balanced_loss")] for folder, argv, *_ in
             ablation.grid(both)}
    assert flags == {"plain": ["--balanced_loss=False"], "progressive-linear": ["--balanced_loss=False"],
                     "plain+balanced": ["--balanced_loss=True"], "progressive-linear+balanced": ["--balanced_loss=True"]}


def test_wiki_reads_data_root_outside_a_zoo_grid_and_wiki_root_inside_one():
    plain = ablation_cli.parse_args(["--dataset", "wiki", "--data_root", "/somewhere"])
    assert ablation.data_root_of(plain, "wiki") == "/somewhere" and ablation.data_root_of(plain, "demo") == "/somewhere"
    zoo = ablation_cli.parse_args(["--zoo", "--data_root", "/somewhere", "--wiki_root", "/wiki_here"])
    assert ablation.data_root_of(zoo, "wiki") == "/wiki_here" and ablation.data_root_of(zoo, "demo") == "/somewhere"


def test_a_zoo_grid_without_vary_varies_the_modality_dropout_and_with_it_only_what_is_asked():
    bare = ablation.settings(ablation_cli.parse_args(["--zoo", "--dataset", "demo"]))
    assert [label for label, *_ in bare] == ["default", *(f"modality_dropout={v}" for v in ("0", "0.25", "0.5", "0.75"))]
    asked = ablation.settings(ablation_cli.parse_args(["--zoo", "--dataset", "demo", "--vary", "temperature=0.3"]))
    assert [label for label, *_ in asked] == ["default", "temperature=0.3"]


def test_a_zoo_run_leaves_the_validation_pairs_out_and_a_varied_value_or_a_flag_after_dashes_wins(tmp_path):
    def trained(*argv):   # {label: the config each of the grid's runs trains with}
        args = ablation_cli.parse_args(["--zoo", "--dataset", "demo", "--seeds", "1", "--out", str(tmp_path), *argv])
        return {record["method"]: build_config(run_argv) for _, run_argv, _, _, record in ablation.grid(args)}

    runs = trained("--vary", "epoch=3", "--vary", "val_queries=50", "--vary", "val_unseen=false")
    assert (runs["default"].epoch, runs["default"].val_queries, runs["default"].val_unseen) == (10, 300, True)
    assert runs["epoch=3"].epoch == 3 and runs["epoch=3"].val_unseen      # a varied value wins over the zoo's
    assert runs["val_queries=50"].val_queries == 50 and not runs["val_unseen=false"].val_unseen
    kept = trained("--vary", "temperature=0.3", "--", "--val_unseen", "false", "--epoch", "2")
    assert all(not c.val_unseen and c.epoch == 2 for c in kept.values())  # flags after -- win over both


def test_a_grid_resumed_with_other_model_settings_stops_at_once_naming_the_run(tmp_path, monkeypatch, capsys):
    import yaml

    from config import to_dict
    argv = ["--zoo", "--dataset", "zoo-fewlabels", "--seeds", "1", "--vary", "temperature=0.3", "--out", str(tmp_path)]
    runs = ablation.grid(ablation_cli.parse_args(argv))
    folder, run_argv = runs[0][:2]                    # done by a version that left the validation pairs in
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    saved = to_dict(build_config(run_argv))
    (folder / "config.yaml").write_text(yaml.safe_dump(saved))
    ablation.check_done_runs(runs)                    # as asked now: nothing to say
    (folder / "config.yaml").write_text(yaml.safe_dump({**saved, "val_unseen": False}))
    started = []
    monkeypatch.setattr(ablation_cli, "run_grid", started.append)
    with pytest.raises(SystemExit) as stop:
        ablation_cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and not started
    assert f"{folder}: done with val_unseen False, but the grid now asks True" in err
    ablation_cli.main([*argv, "--", "--val_unseen", "false"])   # the flags it was made with: it goes on
    assert len(started) == 1


def test_the_zoo_report_reads_every_set_in_the_folder_from_its_root(tmp_path):
    # a grid of zoo-fewlabels added to a folder that holds wiki from an earlier call: wiki from --wiki_root
    (tmp_path / "wiki" / "16bit").mkdir(parents=True)
    (tmp_path / "summary.md").write_text("")                       # files in the folder are no sets
    zoo = ablation_cli.parse_args(["--zoo", "--dataset", "zoo-fewlabels", "--out", str(tmp_path), "--data_root",
                                   "/somewhere", "--wiki_root", "/wiki_here"])
    assert ablation.report_roots(zoo) == {"wiki": "/wiki_here", "zoo-fewlabels": "/somewhere"}


def test_grid_flags_must_be_spelled_out(capsys):
    # argparse's prefix matching took a mistyped --keep_checkpoint for --keep_checkpoints and started a grid
    for short in ("--keep_checkpoint", "--zo", "--seed=1"):
        with pytest.raises(SystemExit) as stop:
            ablation_cli.parse_args([short])
        assert stop.value.code == 2 and f"unrecognized arguments: {short}" in capsys.readouterr().err
    assert ablation_cli.parse_args(["--keep_checkpoints", "--seeds", "1"]).keep_checkpoints


def test_runs_that_differ_only_in_scoring_re_score_a_checkpoint(tmp_path):
    args = ablation_cli.parse_args(["--dataset", "demo", "--bits", "8", "--seeds", "1", "--out", str(tmp_path),
                                    "--ladder", "ucmfh"])
    runs = {record["method"]: (folder, argv, record) for folder, argv, _, _, record in
            ablation.share_trainings(ablation.grid(args))}
    source = runs["ucmfh"][0]
    for label in ("+item-eval", "+all-scored", "+stable-ties"):   # evaluation switches only: no training
        folder, argv, record = runs[label]
        assert record["scored_checkpoint_of"] == str(source)
        assert argv[-4:] == ["--task", "test_hash", "--checkpoint_dir", str(source / "checkpoints")]
    for label in ("ucmfh", "+epoch-lr", "dropout-0.5", "dropout-0.75+progressive"):
        assert "scored_checkpoint_of" not in runs[label][2] and "test_hash" not in runs[label][1]
    # the project's defaults choose their modality dropout (auto): a model of their own, unlike the
    # rung with progressive hashing + the unimodal branch at dropout 0
    assert "scored_checkpoint_of" not in runs["defaults"][2]


def test_ladder_grid_end_to_end_with_validation_scores(tmp_path):
    argv = ["--dataset", "small", "--data_root", str(small_dataset(tmp_path)), "--bits", "8", "--seeds", "2",
            "--ladder", "ucmfh", "--out", str(tmp_path / "grid"), "--no_plots", *SMALL, "--val_queries", "100",
            "--eval_batch_size", "32", "--batch_size", "64"]   # the preset drops partial batches: 250 pairs, 100 queries
    from study import ladder
    monkey_rungs = [r for r in ladder.LADDERS["ucmfh"] if r.label in ("ucmfh", "+item-eval", "+all-scored")]
    ladder.LADDERS["test"] = monkey_rungs
    try:
        rows = ablation_cli.main([*argv[:argv.index("ucmfh")], "test", *argv[argv.index("ucmfh") + 1:]])
    finally:
        del ladder.LADDERS["test"]
    by_method = {r["method"]: r for r in rows}
    assert list(by_method) == ["ucmfh", "+item-eval", "+all-scored"]          # ladder order, not by name
    assert by_method["+item-eval"]["baseline"] == "ucmfh" and by_method["ucmfh"]["baseline"] is None
    assert by_method["+all-scored"]["val_i2t_map_mean"] is not None
    # the re-scored rungs read the ucmfh rung's checkpoint: the same training time, other scores
    assert by_method["+item-eval"]["train_seconds_mean"] == by_method["ucmfh"]["train_seconds_mean"]
    assert not list((tmp_path / "grid").rglob("*.pth"))                      # cleaned up at the end
    summary = (tmp_path / "grid" / "summary.md").read_text()
    assert "| vs |" in summary and "Δ val I2T mAP@K (p)" in summary
    assert "| small | 8 | ucmfh | 2 |" in (tmp_path / "grid" / "claims.md").read_text()


def test_claims_against_hand_computed_values(tmp_path):
    from study.claims import write_claims
    epochs = [{"epoch": e, "loss": 2.0 * e, "loss_step_std": 0.1 * e, "saturated": 0.1 * e, "abs_h": 0.5}
              for e in range(1, 7)]                      # the last third: epochs 5 and 6
    for seed, (final, i2t) in enumerate(((12.0, 0.5), (10.0, 0.7))):
        run = tmp_path / "demo" / "8bit" / "m" / f"seed{seed}"
        run.mkdir(parents=True)
        records = [*epochs[:-1], {**epochs[-1], "loss": final}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (run / "results.json").write_text(json.dumps({
            **fake({"method": "m"}, seed, i2t, 0.6), "i2t_map_continuous": i2t + 0.02, "t2i_map_continuous": 0.6}))
    [row] = write_claims(tmp_path)
    # loss_step_std / loss: epoch 5: 0.5 / 10 = 0.05; epoch 6: 0.6 / 12 (seed 0) or 0.6 / 10 (seed 1)
    assert row["step_loss_cv"] == pytest.approx(((0.05 + 0.05) + (0.05 + 0.06)) / 4)
    assert row["final_loss_seed_std"] == pytest.approx(math.sqrt(2.0))          # 12 and 10
    assert row["quantisation_gap"] == pytest.approx(0.01)                        # (0.02 + 0) / 2
    assert row["saturated"] == pytest.approx(0.6) and row["abs_h"] == 0.5
    assert row["map_seed_std"] == pytest.approx(math.sqrt(2) * 0.1 / 2)        # (0.55, 0.65)
    assert "| demo | 16 | m | 2 |" in (tmp_path / "claims.md").read_text()


def test_every_ladder_names_parents_it_contains():
    from study.ladder import LADDERS, rung_settings
    for name, rungs in LADDERS.items():
        labels = [r.label for r in rungs]
        assert all(r.parent is None or r.parent in labels for r in rungs), name
        assert rung_settings(name)[0] == ("ucmfh", {"preset": "ucmfh"}, None)
    full = dict((label, settings) for label, settings, _ in rung_settings("ucmfh"))
    assert all(full[label] == settings for label, settings, _ in rung_settings("ucmfh-short"))  # same folders


def test_parallel_runs_each_get_a_fresh_process():
    """A worker that trained run after run grew to 12 GB and was killed: --jobs gives every run its own process."""
    import os
    process_ids = workers.run_in_processes([(index,) for index in range(3)], jobs=2, run=process_id)
    assert len(set(process_ids)) == 3 and os.getpid() not in process_ids


@pytest.mark.parametrize("threads", [3, None])
def test_a_run_made_here_trains_at_its_thread_count_and_puts_the_count_back(tmp_path, monkeypatch, threads):
    """--jobs 1 makes the runs in the grid's own process: a run left torch at its count afterwards
    (a test worker kept at one thread went on with two). None, the default with one job: as it is."""
    import torch

    import train

    seen = []
    monkeypatch.setattr(train, "main", lambda argv: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    ablation.run_one(tmp_path / "run", ["--epoch", "1"], "demo", 16, None, str(tmp_path), threads)
    assert seen == [threads or before] and torch.get_num_threads() == before


def test_a_worker_imports_nothing_heavy_before_its_run():
    """A spawned worker unpickles study.workers.end_with_grid first: with torch, numpy and scipy
    behind it, each worker took 4-5 s to start, and the fresh-process and killed-grid tests 21 s (now 3)."""
    import subprocess
    import sys

    code = "import sys, study.workers; print(sorted({'torch', 'numpy', 'scipy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_killed_grid_takes_its_running_workers_with_it(tmp_path):
    """Killing a grid (here SIGKILL) ends its workers too, so no run goes on writing into its folder."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; sys.path[:0] = [{!r}, {!r}]\n"
            "import conftest\nfrom study import workers\n"
            "workers.run_in_processes([({!r},), ({!r},)], 2, conftest.wait_for_release)\n").format(
        str(root), str(root / "tests"), str(tmp_path), str(tmp_path))
    grid = subprocess.Popen([sys.executable, "-c", code], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("started*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # the id from the name: the file may exist a moment before its text is written
        workers = [int(p.name.removeprefix("started")) for p in tmp_path.glob("started*")]
        assert len(workers) == 2, "the grid's workers did not start"
        os.kill(grid.pid, signal.SIGKILL)
        grid.wait()

        def alive(pid):   # a zombie (ended, not yet reaped) counts as ended
            try:
                return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
            except (FileNotFoundError, ProcessLookupError):   # gone between the listing and the read
                return False

        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in workers if alive(pid)]
    finally:
        (tmp_path / "release").write_text("")      # a worker still running finishes and exits
        grid.kill()
    assert survivors == [] and not list(tmp_path.glob("done*"))
