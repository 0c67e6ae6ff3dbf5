"""Figures (plots.py, scripts/plot.py) on tiny fake run folders: each PNG is written and is a PNG."""
import csv
import importlib.util
import json
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 5


def _load_cli():
    spec = importlib.util.spec_from_file_location("plot_cli", ROOT / "scripts" / "plot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["plot_cli"] = module
    spec.loader.exec_module(module)
    return module


plot_cli = _load_cli()


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    """Same figures, fewer pixels: keeps the suite fast (the layout code runs all the same)."""
    monkeypatch.setattr(plot_cli.plots, "DPI", 40)


def make_run(folder, progressive=True, bits=64, seed=0, dataset="demo", histograms=True, curves=True):
    """A run folder with the files train.py writes, filled with plausible numbers."""
    rng = np.random.default_rng(seed + (0 if progressive else 100))
    folder.mkdir(parents=True)
    schedule = "linear"
    config = {"dataset": dataset, "hash_lens": [bits], "use_progressive_hash": progressive,
              "scale_schedule": schedule, "scale_min": 1.0, "scale_max": 10.0, "epoch": EPOCHS,
              "seed": seed, "map_k": 50, "eval_every": 2}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    scales = [1.0 + 9.0 * e / (EPOCHS - 1) if progressive else 1.0 for e in range(EPOCHS)]
    lines = []
    for e, scale in enumerate(scales):
        sat = min(0.95, 0.05 + 0.09 * scale) if progressive else 0.05 + 0.01 * e
        record = {"epoch": e + 1, "loss": 3.0 - 0.3 * e, "fused_loss": 2.0 - 0.2 * e, "hash_loss": 2.0 - 0.1 * e,
                  "scale": scale, "abs_h": 0.3 + 0.6 * sat, "saturated": sat, "quant_error": (1 - sat) * 0.5,
                  "bit_balance": 0.9 + 0.01 * e, "seconds": 1.2}
        if (e + 1) % 2 == 0 or e + 1 == EPOCHS:
            record.update(i2t_map=0.4 + 0.04 * e, t2i_map=0.41 + 0.04 * e, i2t_map_all=0.3 + 0.02 * e,
                          t2i_map_all=0.31 + 0.02 * e)
        lines.append(json.dumps(record))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    results = {"dataset": dataset, "hash_lens": bits, "bits": bits, "use_progressive_hash": progressive,
               "scale_schedule": schedule, "epoch": EPOCHS, "seed": seed, "map_k": 50,
               "i2t_map": 0.56, "t2i_map": 0.57, "i2t_map_all": 0.38, "t2i_map_all": 0.39}
    (folder / "results.json").write_text(json.dumps(results))
    if histograms:
        edges = np.linspace(-1, 1, 51)
        snaps = []
        for progress in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
            scale = 1.0 + 9.0 * progress if progressive else 1.0
            counts = {m: np.histogram(np.tanh(scale * rng.normal(0, 0.6, 2000)), edges)[0].tolist()
                      for m in ("image", "text")}
            snaps.append({"epoch": round(progress * EPOCHS), "progress": progress, "scale": scale, **counts})
        (folder / "histograms.json").write_text(json.dumps({"bin_edges": edges.tolist(), "snapshots": snaps}))
    if curves:
        radius = list(range(bits + 1))
        recall = np.clip(np.linspace(0, 1, bits + 1) ** 0.5, 0, 1)
        top = rng.uniform(0.7, 0.9)
        pr = {"radius": radius, "precision": [None] + (top - 0.4 * recall[1:]).tolist(), "recall": recall.tolist()}
        pk = {"k": [1, 10, 50, 100, 500], "precision": (top - np.array([0.0, 0.05, 0.1, 0.15, 0.25])).tolist()}
        (folder / "curves.json").write_text(json.dumps({"i2t": {"pr": pr, "pk": pk}, "t2i": {"pr": pr, "pk": pk}}))
    return folder


def write_summary(path, rows):
    columns = ["dataset", "bits", "method", "n_seeds", "i2t_map_mean", "i2t_map_std", "t2i_map_mean",
               "t2i_map_std", "i2t_map_all_mean", "i2t_map_all_std", "t2i_map_all_mean", "t2i_map_all_std",
               "train_seconds_mean", "extra"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def summary_rows():
    rows = []
    for dataset in ("demo", "wiki"):
        for bits in (16, 32, 64):
            for i, method in enumerate(("plain", "progressive-linear", "cca")):
                base = 0.5 + 0.02 * (bits // 16) + 0.01 * i
                std = "" if method == "cca" else 0.01
                rows.append([dataset, bits, method, 1 if method == "cca" else 3, base, std, base + 0.01, std,
                             base - 0.2, std, base - 0.19, std, 30.0, "x"])
    return rows


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), path


@pytest.fixture()
def runs(tmp_path):
    return make_run(tmp_path / "runs" / "prog"), make_run(tmp_path / "runs" / "plain", progressive=False)


def test_visualization_and_scales(runs, tmp_path):
    prog, plain = runs
    written = plot_cli.main(["visualization", "--progressive", str(prog), "--plain", str(plain)])
    assert written == [tmp_path / "runs" / "progressive_hash_visualization.png"]
    written += plot_cli.main(["visualization", "--plain", str(plain), "--out", str(tmp_path / "one")])
    written += plot_cli.main(["scales", "--out", str(tmp_path / "figs"), "--epochs", "30"])
    assert written[-1].name == "scale_comparison.png"
    for path in written:
        assert_png(path)


def test_curves_bits_pr(runs, tmp_path):
    prog, plain = runs
    written = plot_cli.main(["curves", str(prog)])
    assert written == [prog / "training_curves.png"]
    write_summary(tmp_path / "summary.csv", summary_rows())
    written += plot_cli.main(["bits", str(tmp_path), "--metric", "map_all", "--out", str(tmp_path / "b")])
    assert written[-1] == tmp_path / "b" / "map_all_vs_bits.png"
    written += plot_cli.main(["pr", str(prog), str(plain), "--out", str(tmp_path / "pr")])
    assert [p.name for p in written[-2:]] == ["pr_curves.png", "precision_at_k.png"]
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
