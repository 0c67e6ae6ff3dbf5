"""Figures (study/plots.py, scripts/plot.py) on tiny fake run folders. The builders' matplotlib figures
are read back: panels, titles, axis labels, legends and the plotted data against the input files. The
command line is checked for the PNGs it writes and its one-line errors."""
import csv
import dataclasses
import json

import numpy as np
import pytest
import yaml

import plot_cli   # scripts/plot.py (conftest)
from config import SCALE_SCHEDULES, Config
from conftest import run_records
from schedules import ScaleSchedule, hashnet_scale, normalized_hashnet, training_progress
from study import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 5



@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    """Same figures, fewer pixels: keeps the suite fast (the layout code runs all the same)."""
    monkeypatch.setattr(plots, "DPI", 40)


def fake_histograms(progressive, rng):
    """histograms.json as train.py writes it: after the epochs e whose progress e / (E - 1) is nearest
    0, 20, ..., 100% ("epoch" = epochs completed, e + 1), at the scale of that epoch's last step."""
    schedule = ScaleSchedule(Config(epoch=EPOCHS, use_progressive_hash=progressive), iters_per_epoch=1)
    edges = np.linspace(-1, 1, 51)
    snaps = []
    for e in sorted({round(p * (EPOCHS - 1)) for p in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}):
        scale = schedule.at(e)
        counts = {m: np.histogram(np.tanh(scale * rng.normal(0, 0.6, 2000)), edges)[0].tolist()
                  for m in ("image", "text")}
        snaps.append({"epoch": e + 1, "progress": training_progress(e, EPOCHS), "scale": scale, **counts})
    return {"bin_edges": edges.tolist(), "snapshots": snaps}


def fake_curves(bits, rng):
    """curves.json with different I2T and T2I numbers, so a swapped panel shows."""
    recall = np.linspace(0, 1, bits + 1) ** 0.5
    top = rng.uniform(0.7, 0.9)
    curves = {}
    for direction, drop in (("i2t", 0.0), ("t2i", 0.1)):
        pr = {"radius": list(range(bits + 1)), "recall": recall.tolist(),
              "precision": [None] + (top - drop - 0.4 * recall[1:]).tolist()}  # nothing within radius 0
        pk = {"k": [1, 10, 50, 100, 500], "precision": (top - drop - np.array([0, 0.05, 0.1, 0.15, 0.25])).tolist()}
        curves[direction] = {"pr": pr, "pk": pk}
    return curves


def make_run(folder, progressive=True, bits=64, seed=0, dataset="demo", histograms=True, curves=True):
    """A run folder with the files train.py writes, filled with plausible numbers."""
    rng = np.random.default_rng(seed + (0 if progressive else 100))
    folder.mkdir(parents=True)
    config = {"dataset": dataset, "hash_lens": [bits], "use_progressive_hash": progressive,
              "scale_schedule": "linear", "scale_min": 1.0, "scale_max": 10.0, "epoch": EPOCHS,
              "seed": seed, "map_k": 50, "eval_every": 2}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    for e in range(EPOCHS):
        scale = 1.0 + 9.0 * training_progress(e, EPOCHS) if progressive else 1.0
        sat = min(0.95, 0.05 + 0.09 * scale) if progressive else 0.05 + 0.01 * e
        record = {"epoch": e + 1, "loss": 3.0 - 0.3 * e, "fused_loss": 2.0 - 0.2 * e, "hash_loss": 2.0 - 0.1 * e,
                  "scale": scale, "abs_h": 0.3 + 0.6 * sat, "saturated": sat, "quant_error": (1 - sat) * 0.5,
                  "bit_balance": 0.9 + 0.01 * e, "seconds": 1.2}
        if (e + 1) % 2 == 0 or e + 1 == EPOCHS:
            record.update(i2t_map=0.4 + 0.04 * e, t2i_map=0.41 + 0.04 * e, i2t_map_all=0.3 + 0.02 * e,
                          t2i_map_all=0.31 + 0.02 * e)
        lines.append(json.dumps(record))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    results = {**config, "hash_lens": bits, "bits": bits, "i2t_map": 0.56, "t2i_map": 0.57,
               "i2t_map_all": 0.38, "t2i_map_all": 0.39}
    (folder / "results.json").write_text(json.dumps(results))
    if histograms:
        (folder / "histograms.json").write_text(json.dumps(fake_histograms(progressive, rng)))
    if curves:
        (folder / "curves.json").write_text(json.dumps(fake_curves(bits, rng)))
    return folder


def read_json(path):
    return json.loads(path.read_text())


SUMMARY_COLUMNS = ["dataset", "bits", "method", "n_seeds", "i2t_map_mean", "i2t_map_std", "t2i_map_mean",
                   "t2i_map_std", "i2t_map_all_mean", "i2t_map_all_std", "t2i_map_all_mean", "t2i_map_all_std",
                   "train_seconds_mean", "extra"]


def write_summary(path, rows, map_k=None):
    """summary.csv as study.summary writes it; an optional map_k column last."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS + (["map_k"] if map_k else []))
        writer.writerows(row + ([map_k] if map_k else []) for row in rows)


def summary_rows():
    """Methods out of the figure's order (plain, progressive, others); cca has one seed (no std)."""
    rows = []
    for dataset in ("demo", "wiki"):
        for bits in (16, 32, 64):
            for i, method in enumerate(("cca", "progressive-linear", "plain")):
                base = 0.5 + 0.02 * (bits // 16) + 0.01 * i
                std = "" if method == "cca" else 0.01 + 0.001 * i
                rows.append([dataset, bits, method, 1 if method == "cca" else 3, base, std, base + 0.01, std,
                             base - 0.2, std, base - 0.19, std, 30.0, "x"])
    rows.append(["demo", 128, "plain", 0, "", "", "", "", "", "", "", "", "", "x"])  # a cell not scored yet
    return rows


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), path


def texts(legend):
    return [t.get_text() for t in legend.get_texts()]


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


@pytest.fixture()
def runs(tmp_path):
    return make_run(tmp_path / "runs" / "prog"), make_run(tmp_path / "runs" / "plain", progressive=False)


# ----- the figures' content -----

def test_progressive_visualization_shows_each_snapshot_of_each_run(runs):
    prog, plain = runs
    fig = plots.progressive_visualization_figure(prog, plain)
    snapshots = [read_json(run / "histograms.json")["snapshots"] for run in runs]
    ncols = len(snapshots[0])
    assert ncols == 5 and len(fig.axes) == 2 * ncols
    assert fig.axes[2].get_title() == "after epoch 3 · 50% · scale 5.50"
    edges = read_json(prog / "histograms.json")["bin_edges"]
    for row, snaps in enumerate(snapshots):
        for snap, ax in zip(snaps, fig.axes[row * ncols:(row + 1) * ncols]):
            assert ax.get_title() == (f"after epoch {snap['epoch']} · {snap['progress']:.0%} · "
                                      f"scale {snap['scale']:.2f}")
            assert [p.get_label() for p in ax.patches] == ["image head", "text head"]
            assert [p.get_fill() for p in ax.patches] == [True, False]
            for patch, modality in zip(ax.patches, ("image", "text")):
                values, patch_edges, _ = patch.get_data()
                np.testing.assert_allclose(values, np.array(snap[modality]) / sum(snap[modality]))
                np.testing.assert_allclose(patch_edges, edges)
            assert ax.get_xlabel() == ("hash output h" if row == 1 else "")
    assert fig.axes[0].get_ylabel() == "progressive-linear\nshare of outputs"
    assert fig.axes[ncols].get_ylabel() == "plain\nshare of outputs"
    assert texts(fig.legends[0]) == ["image head", "text head"]
    assert fig.get_suptitle().endswith("demo 64-bit progressive-linear seed 0 vs demo 64-bit plain seed 0")


def test_progressive_visualization_of_one_run_and_of_unequal_snapshots(runs):
    prog, plain = runs
    assert len(plots.progressive_visualization_figure(None, plain).axes) == 5
    hist = read_json(plain / "histograms.json")
    hist["snapshots"] = hist["snapshots"][:3]  # e.g. a run still training
    (plain / "histograms.json").write_text(json.dumps(hist))
    fig = plots.progressive_visualization_figure(prog, plain)
    assert [ax.axison for ax in fig.axes[5:]] == [True, True, True, False, False]
    with pytest.raises(ValueError):
        plots.progressive_visualization_figure(None, None)


def test_scale_comparison_draws_the_training_schedules():
    epochs, iters = 6, 50
    left, right = plots.scale_comparison_figure(epochs=epochs, iters_per_epoch=iters, scale_max=10.0).axes
    assert left.get_title() == "Scale schedules (6 epochs, scale 1 → 10)"
    assert (left.get_xlabel(), left.get_ylabel()) == ("epochs of training elapsed (epoch)", "scale")
    gamma, step = normalized_hashnet(epochs * iters, 1.0, 10.0, Config().hashnet_power, Config().hashnet_step_size)
    hashnet_label = f"hashnet (γ={gamma:g}, power 0.5, updated every {step} it; {iters} it/epoch)"
    assert texts(left.get_legend()) == [hashnet_label if n == "hashnet" else n for n in SCALE_SCHEDULES]
    curves = lines_by_label(left)
    for name in set(SCALE_SCHEDULES) - {"hashnet"}:  # one step per epoch, the last held to its end
        schedule = ScaleSchedule(Config(epoch=epochs, scale_schedule=name), iters)
        values = [schedule.at(e) for e in range(epochs)]
        expected = np.column_stack([range(epochs + 1), values + values[-1:]])
        np.testing.assert_allclose(curves[name].get_xydata(), expected)
        assert curves[name].get_drawstyle() == "steps-post"
    np.testing.assert_allclose(curves["linear"].get_ydata()[:-1], 1 + 9 * np.arange(epochs) / (epochs - 1))
    its = np.arange(epochs * iters + 1)
    expected = [min(hashnet_scale(it, 1.0, gamma, 0.5, step), 10.0) for it in its]   # fitted to the run, capped
    np.testing.assert_allclose(curves[hashnet_label].get_xydata(), np.column_stack([its / iters, expected]))
    assert texts(right.get_legend()) == ["scale 1", "scale 2", "scale 5", "scale 10", "scale 20", "sign(x)"]
    for line in right.get_lines()[:-1]:
        scale = float(line.get_label().split()[1])
        np.testing.assert_allclose(line.get_ydata(), np.tanh(scale * line.get_xdata()))
    assert (right.get_xlabel(), right.get_ylabel()) == ("head pre-activation x", "hash output h")


def test_scale_comparison_takes_hashnet_values_from_config(monkeypatch):
    @dataclasses.dataclass
    class Tuned(Config):
        hashnet_gamma: float = 0.02
        hashnet_power: float = 0.75
        hashnet_step_size: int = 30
        hashnet_normalize: bool = False

    monkeypatch.setattr(plots, "Config", Tuned)
    left = plots.scale_comparison_figure(epochs=3, iters_per_epoch=40).axes[0]
    [line] = [ln for ln in left.get_lines() if ln.get_label().startswith("hashnet")]
    assert line.get_label() == "hashnet (γ=0.02, power 0.75, updated every 30 it; 40 it/epoch)"
    np.testing.assert_allclose(line.get_ydata(), [hashnet_scale(it, 1.0, 0.02, 0.75, 30) for it in range(121)])


TRAINING_PANELS = [  # title, y label, {metrics key: legend label}
    ("Loss terms", "loss (per step, mean)",
     {"loss": "total loss", "fused_loss": "fused-embedding loss", "hash_loss": "hash-output loss"}),
    ("Progressive scale", "scale", {"scale": "scale (epoch mean)"}),
    ("Code saturation", "share of |h| > 0.95 / mean |h|", {"saturated": "share of |h| > 0.95", "abs_h": "mean |h|"}),
    ("Quantisation error", "mean (|h| − 1)²", {"quant_error": "mean (|h| − 1)²"}),
    ("Bit balance (1 = every bit 50/50)", "1 − mean |mean sign| per bit", {"bit_balance": "bit balance"}),
    ("Retrieval on the query set (scored epochs)", "mAP",
     {"i2t_map": "I2T mAP@50", "t2i_map": "T2I mAP@50", "i2t_map_all": "I2T mAP@all", "t2i_map_all": "T2I mAP@all"}),
]


def test_training_curves_plot_every_recorded_series(runs):
    prog, plain = runs
    records = run_records(prog)
    fig = plots.training_curves_figure(prog)
    assert len(fig.axes) == 6
    assert fig.get_suptitle() == "Training curves: demo 64-bit progressive-linear seed 0"
    for ax, (title, ylabel, series) in zip(fig.axes, TRAINING_PANELS):
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (title, "epoch", ylabel)
        assert texts(ax.get_legend()) == list(series.values())
        lines = lines_by_label(ax)
        for key, label in series.items():
            expected = [(r["epoch"], r[key]) for r in records if key in r]  # mAP: the scored epochs only
            np.testing.assert_allclose(lines[label].get_xydata(), expected)
        assert ax.get_xlim() == pytest.approx((0.9, EPOCHS + 0.1))  # one epoch range for all panels
    assert fig.axes[1].get_ylim()[0] == 0
    unbalanced = [{k: v for k, v in r.items() if k != "bit_balance"} for r in run_records(plain)]
    (plain / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in unbalanced))
    balance = plots.training_curves_figure(plain).axes[4]
    assert not balance.get_lines() and balance.get_legend() is None
    assert [t.get_text() for t in balance.texts] == ["not recorded"]


@pytest.mark.parametrize("metric,map_k,ylabel", [("map", "50", "mAP@50"), ("map", None, "mAP@K"),
                                                 ("map_all", "50", "mAP@all")])
def test_map_vs_bits_plots_the_summary_means_and_stds(tmp_path, metric, map_k, ylabel):
    rows = summary_rows()
    write_summary(tmp_path / "summary.csv", rows, map_k=map_k)
    fig = plots.map_vs_bits_figure(tmp_path / "summary.csv", metric=metric)
    assert len(fig.axes) == 4  # demo and wiki, I2T and T2I each
    assert fig.get_suptitle() == f"{ylabel} against code length (mean ± std over seeds)"
    methods = ["plain", "progressive-linear", "cca"]
    assert texts(fig.legends[0]) == methods
    cells = [dict(zip(SUMMARY_COLUMNS, row)) for row in rows]
    panels = [(d, direction) for d in ("demo", "wiki") for direction in ("i2t", "t2i")]
    for ax, (dataset, direction) in zip(fig.axes, panels):
        assert ax.get_title() == f"{dataset}: {plots.TITLES[direction]}"
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("code length (bits)", ylabel)
        assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [16, 32, 64]  # 128 has no scores
        assert [c.get_label() for c in ax.containers] == methods
        shifts = []
        for container, method in zip(ax.containers, methods):
            mine = [c for c in cells if c["dataset"] == dataset and c["method"] == method and c["n_seeds"]]
            x, y = np.asarray(container.lines[0].get_data(), dtype=float)
            np.testing.assert_allclose(y, [c[f"{direction}_{metric}_mean"] for c in mine])
            shifts.append(x / [c["bits"] for c in mine])
            bars = container.lines[2][0].get_segments()  # one vertical segment per point: mean ± std
            stds = [float(c[f"{direction}_{metric}_std"] or 0.0) for c in mine]
            np.testing.assert_allclose([(s[1, 1] - s[0, 1]) / 2 for s in bars], stds, atol=1e-12)
        # each method a little sideways, the same factor at every code length
        assert all(np.allclose(s, s[0]) and 2 ** -0.1 < s[0] < 2 ** 0.1 for s in shifts)
        assert shifts[0][0] < shifts[1][0] < shifts[2][0]


def test_pr_curves_plot_curves_json(runs):
    fig = plots.pr_curves_figure(runs)
    names = ["demo 64-bit progressive-linear seed 0", "demo 64-bit plain seed 0"]
    assert len(fig.axes) == 4 and texts(fig.legends[0]) == names
    for col, direction in enumerate(("i2t", "t2i")):
        top, bottom = fig.axes[col], fig.axes[2 + col]
        title = plots.TITLES[direction]
        assert (top.get_title(), top.get_xlabel(), top.get_ylabel()) == (
            f"{title}: precision-recall", "recall (one point per Hamming radius)", "precision")
        assert (bottom.get_title(), bottom.get_xlabel(), bottom.get_ylabel()) == (
            f"{title}: within Hamming radius", "Hamming radius", "precision / recall")
        assert texts(bottom.get_legend()) == ["precision", "recall"]
        assert [line.get_label() for line in top.get_lines()] == names
        for i, run in enumerate(runs):
            pr = read_json(run / "curves.json")[direction]["pr"]
            precision = [np.nan if p is None else p for p in pr["precision"]]
            np.testing.assert_array_equal(top.get_lines()[i].get_xydata(), np.column_stack([pr["recall"], precision]))
            by_radius = bottom.get_lines()[2 * i:2 * i + 2]
            assert [line.get_linestyle() for line in by_radius] == ["-", "--"]
            np.testing.assert_array_equal(by_radius[0].get_xydata(), np.column_stack([pr["radius"], precision]))
            np.testing.assert_array_equal(by_radius[1].get_xydata(), np.column_stack([pr["radius"], pr["recall"]]))


def test_precision_at_k_plots_curves_json(runs, tmp_path):
    fig = plots.precision_at_k_figure(runs, labels=["ours", "baseline"])
    assert len(fig.axes) == 2 and texts(fig.legends[0]) == ["ours", "baseline"]
    for ax, direction in zip(fig.axes, ("i2t", "t2i")):
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
            f"{plots.TITLES[direction]}: precision@K", "top K retrieved (items)", "precision@K")
        assert ax.get_xscale() == "log"  # K from 1 to 500
        for line, run in zip(ax.get_lines(), runs):
            pk = read_json(run / "curves.json")[direction]["pk"]
            np.testing.assert_allclose(line.get_xydata(), np.column_stack([pk["k"], pk["precision"]]))
    narrow = make_run(tmp_path / "narrow")
    pk = {"k": [10, 20, 50], "precision": [0.8, 0.7, 0.6]}
    curves = {d: {**c, "pk": pk} for d, c in read_json(narrow / "curves.json").items()}
    (narrow / "curves.json").write_text(json.dumps(curves))
    assert plots.precision_at_k_figure([narrow]).axes[0].get_xscale() == "linear"


def test_run_names_tell_alike_runs_apart(runs, tmp_path):
    twin = make_run(tmp_path / "elsewhere" / "prog_again")
    fig = plots.pr_curves_figure([runs[0], twin])
    label = "demo 64-bit progressive-linear seed 0"
    assert texts(fig.legends[0]) == [f"{label} (prog)", f"{label} (prog_again)"]
    assert texts(plots.pr_curves_figure([runs[1], twin]).legends[0]) == ["demo 64-bit plain seed 0", label]
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        plots.pr_curves_figure(runs, labels=["one"])


# ----- the command line: PNGs where they belong, one-line errors -----

def test_each_subcommand_writes_its_pngs(runs, tmp_path):
    prog, plain = runs
    written = plot_cli.main(["visualization", "--progressive", str(prog), "--plain", str(plain)])
    assert written == [tmp_path / "runs" / "progressive_hash_visualization.png"]
    written += plot_cli.main(["visualization", "--plain", str(plain), "--out", str(tmp_path / "one")])
    written += plot_cli.main(["scales", "--out", str(tmp_path / "figs"), "--epochs", "30"])
    assert written[-1] == tmp_path / "figs" / "scale_comparison.png"
    written += plot_cli.main(["curves", str(prog)])
    assert written[-1] == prog / "training_curves.png"
    write_summary(tmp_path / "summary.csv", summary_rows())
    written += plot_cli.main(["bits", str(tmp_path), "--metric", "map_all", "--out", str(tmp_path / "b")])
    assert written[-1] == tmp_path / "b" / "map_all_vs_bits.png"
    written += plot_cli.main(["pr", str(prog), str(plain), "--out", str(tmp_path / "pr")])
    assert written[-2:] == [tmp_path / "pr" / "pr_curves.png", tmp_path / "pr" / "precision_at_k.png"]
    for path in written:
        assert_png(path)


def test_all(tmp_path):
    root = tmp_path / "ablation"
    make_run(root / "demo_64bit_progressive-linear_seed0", curves=False)
    make_run(root / "demo_64bit_plain_seed0", progressive=False)
    cca = root / "demo" / "64bit" / "cca"  # as the ablation writes its CCA baseline: results.json only
    cca.mkdir(parents=True)
    (cca / "results.json").write_text(json.dumps({"dataset": "demo", "bits": 64, "method": "cca", "seed": 0,
                                                  "i2t_map": 0.3, "t2i_map": 0.3}))
    write_summary(root / "summary.csv", [r for r in summary_rows() if r[0] == "demo"])
    written = plot_cli.main(["all", str(root)])
    names = sorted(p.name for p in written)
    assert names.count("training_curves.png") == 2
    for name in ("map_vs_bits.png", "progressive_hash_visualization_demo_64bit.png",
                 "pr_curves_demo_64bit.png", "precision_at_k_demo_64bit.png"):
        assert name in names
    for path in written:
        assert_png(path)


def test_missing_and_invalid_inputs(runs, tmp_path, capsys):
    prog, _ = runs
    (prog / "metrics.jsonl").unlink()
    with pytest.raises(SystemExit) as exit_info:
        plot_cli.main(["curves", str(prog)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "metrics.jsonl" in err and len(err.splitlines()) == 1

    (prog / "curves.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_info:
        plot_cli.main(["pr", str(prog), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "curves.json" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        plot_cli.main(["bits", str(tmp_path / "nowhere.csv")])
    assert exit_info.value.code == 2 and "nowhere.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,bits,method\ndemo,64,plain\n")
    with pytest.raises(SystemExit):
        plot_cli.main(["bits", str(bad)])
    assert "i2t_map_mean" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))
