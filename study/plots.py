"""Figures of runs and ablations: one function per figure, each taking input paths and the output
PNG's path and returning that path. Inputs: a run folder's config.yaml, metrics.jsonl, results.json,
histograms.json, curves.json (README, "What a run writes") and an ablation's summary.csv. A missing or
malformed input raises PlotInputError, one line naming the file. PNGs (dpi 150) are written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator  # noqa: E402

from runio.atomic import atomic_write_bytes  # noqa: E402
from schedules import epoch_scale, hashnet_scale  # noqa: E402
from study.summary import method_label  # noqa: E402  (the ablation's method names: plain, progressive-linear, ...)

DPI = 150
HASHNET_DEFAULTS = {"gamma": 0.005, "power": 0.5, "step_size": 200}
DIRECTIONS = (("i2t", "I2T (image → text)"), ("t2i", "T2I (text → image)"))


class PlotInputError(ValueError):
    """A missing or malformed input file; the message names the file."""



def _read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PlotInputError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PlotInputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise PlotInputError(f"{path}: expected a JSON object")
    return data


def read_metrics(run) -> list:
    """The records of <run>/metrics.jsonl, sorted by epoch."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise PlotInputError(f"{path}: file not found")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PlotInputError(f"{path}: line {number} is not valid JSON ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), (int, float)):
            raise PlotInputError(f"{path}: line {number} has no numeric 'epoch'")
        records.append(record)
    if not records:
        raise PlotInputError(f"{path}: no records")
    return sorted(records, key=lambda r: r["epoch"])


def describe_run(run) -> dict:
    """dataset, bits, seed, method (summary.method_label: plain, progressive-linear, ...), map_k, label; from
    results.json, else config.yaml (a run still training), else the folder name only."""
    run = Path(run)
    info = {}
    if (run / "results.json").is_file():
        info = _read_json(run / "results.json")
    elif (run / "config.yaml").is_file():
        try:
            info = yaml.safe_load((run / "config.yaml").read_text()) or {}
        except yaml.YAMLError as err:
            raise PlotInputError(f"{run / 'config.yaml'}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(info, dict):
            raise PlotInputError(f"{run / 'config.yaml'}: expected a mapping")
    bits = info.get("bits", info.get("hash_lens"))
    if isinstance(bits, list):
        bits = bits[0] if len(bits) == 1 else None
    method = method_label(info) if "use_progressive_hash" in info or info.get("method") else None
    desc = {"dataset": info.get("dataset"), "bits": bits, "seed": info.get("seed"), "method": method,
            "map_k": info.get("map_k"), "folder": run.name}
    parts = [desc["dataset"] and str(desc["dataset"]), bits and f"{bits}-bit", method,
             desc["seed"] is not None and f"seed {desc['seed']}"]
    desc["label"] = " ".join(p for p in parts if p) or run.name
    return desc


def read_histograms(run) -> dict:
    path = Path(run) / "histograms.json"
    data = _read_json(path)
    edges, snaps = data.get("bin_edges"), data.get("snapshots")
    if not isinstance(edges, list) or len(edges) < 2 or not isinstance(snaps, list) or not snaps:
        raise PlotInputError(f"{path}: needs 'bin_edges' (list) and a non-empty 'snapshots' list")
    for i, snap in enumerate(snaps):
        for key in ("epoch", "progress", "scale", "image", "text"):
            if not isinstance(snap, dict) or key not in snap:
                raise PlotInputError(f"{path}: snapshot {i} has no '{key}'")
        if any(not isinstance(snap[m], list) or len(snap[m]) != len(edges) - 1 for m in ("image", "text")):
            raise PlotInputError(f"{path}: snapshot {i} needs {len(edges) - 1} counts per modality")
    return data


def read_curves(run) -> dict:
    path = Path(run) / "curves.json"
    data = _read_json(path)
    for direction, _ in DIRECTIONS:
        block = data.get(direction)
        if not isinstance(block, dict):
            raise PlotInputError(f"{path}: no '{direction}' object")
        for part, keys in (("pr", ("radius", "precision", "recall")), ("pk", ("k", "precision"))):
            sub = block.get(part)
            if not isinstance(sub, dict) or any(not isinstance(sub.get(k), list) for k in keys):
                raise PlotInputError(f"{path}: '{direction}.{part}' needs lists {', '.join(keys)}")
            if len({len(sub[k]) for k in keys}) != 1:
                raise PlotInputError(f"{path}: '{direction}.{part}' lists differ in length")
    return data


def read_summary(summary_csv, metric: str = "map") -> list:
    """Rows of an ablation summary.csv with numeric bits, means and stds (NaN when empty)."""
    path = Path(summary_csv)
    if not path.is_file():
        raise PlotInputError(f"{path}: file not found")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        needed = ["dataset", "bits", "method"] + [f"{d}_{metric}_{s}" for d, _ in DIRECTIONS for s in ("mean", "std")]
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise PlotInputError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = []
        for number, row in enumerate(reader, 2):
            try:
                parsed = {"dataset": row["dataset"], "method": row["method"], "bits": int(float(row["bits"])),
                          "map_k": (row.get("map_k") or "").strip()}
                for column in needed[3:]:
                    text = (row[column] or "").strip()
                    parsed[column] = float(text) if text else math.nan
            except (TypeError, ValueError):
                raise PlotInputError(f"{path}: line {number} has a non-numeric value") from None
            if math.isnan(parsed[f"i2t_{metric}_mean"]) and math.isnan(parsed[f"t2i_{metric}_mean"]):
                continue  # a cell without scores yet
            rows.append(parsed)
    if not rows:
        raise PlotInputError(f"{path}: no rows with scores")
    return rows



def _save(fig, out) -> Path:
    """Render `fig` to PNG in memory, then write it atomically."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)


def _series(records, key):
    """(epochs, values) of the records that hold a numeric `key`."""
    pairs = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _run_labels(runs, labels):
    if labels is not None:
        if len(labels) != len(runs):
            raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
        return list(labels)
    labels = [describe_run(run)["label"] for run in runs]
    return [f"{lab} ({Path(run).name})" if labels.count(lab) > 1 else lab for lab, run in zip(labels, runs)]


def _curves_and_names(runs, labels):
    """The curves.json of each run and the legend name of each."""
    runs = list(runs)
    return [read_curves(run) for run in runs], _run_labels(runs, labels)


def _figure_legend(fig, handles, labels, ncol=3):
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(ncol, len(labels)),
               frameon=False, fontsize=9)


def _floats(values):
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)



def plot_progressive_visualization(progressive_run, plain_run, out) -> Path:
    """Histograms of the hash outputs h at each snapshot: one row per run (either may be None)."""
    rows = [(name, run) for name, run in (("progressive", progressive_run), ("plain", plain_run)) if run]
    if not rows:
        raise ValueError("give a progressive run, a plain run or both")
    data = [(name, describe_run(run), read_histograms(run)) for name, run in rows]
    ncols = max(len(hist["snapshots"]) for _, _, hist in data)
    fig, axes = plt.subplots(len(data), ncols, figsize=(2.6 * ncols, 2.6 * len(data) + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    for row, (name, desc, hist) in enumerate(data):
        edges = np.asarray(hist["bin_edges"], dtype=float)
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(hist["snapshots"]):
                ax.set_axis_off()
                continue
            snap = hist["snapshots"][col]
            for modality, colour, fill in (("image", "tab:blue", True), ("text", "tab:orange", False)):
                counts = np.asarray(snap[modality], dtype=float)
                share = counts / counts.sum() if counts.sum() > 0 else counts
                ax.stairs(share, edges, fill=fill, alpha=0.45 if fill else 1.0, color=colour,
                          linewidth=1.2, label=f"{modality} head")
            ax.set_title(f"epoch {snap['epoch']} · {100 * float(snap['progress']):.0f}% · "
                         f"scale {float(snap['scale']):.2f}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(data) - 1:
                ax.set_xlabel("hash output h")
            if col == 0:
                ax.set_ylabel(f"{desc['method'] or name}\nshare of outputs")
    axes[0, 0].set_xlim(-1.05, 1.05)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    _figure_legend(fig, handles, labels)
    names = " vs ".join(desc["label"] for _, desc, _ in data)
    fig.suptitle(f"Hash-head outputs h on the query set during training\n{names}", fontsize=11)
    fig.tight_layout()
    return _save(fig, out)



def plot_scale_comparison(out, epochs=100, iters_per_epoch=40, scale_min=1.0, scale_max=10.0) -> Path:
    """Left: scale against epoch for every schedule. Right: tanh(scale * x) at several scales."""
    if epochs < 1 or iters_per_epoch < 1:
        raise ValueError("epochs and iters_per_epoch must be at least 1")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    # x = epochs elapsed: an epoch schedule holds its value for the whole epoch [e, e + 1)
    elapsed = np.arange(epochs + 1)
    for name in ("linear", "exponential", "step", "constant"):
        values = [epoch_scale(name, e / max(epochs - 1, 1), scale_min, scale_max) for e in range(epochs)]
        left.plot(elapsed, values + values[-1:], drawstyle="steps-post", label=name, linewidth=1.8,
                  linestyle="--" if name == "constant" else "-")
    its = np.arange(epochs * iters_per_epoch + 1)
    hashnet = [hashnet_scale(int(it), scale_min, HASHNET_DEFAULTS["gamma"], HASHNET_DEFAULTS["power"],
                             HASHNET_DEFAULTS["step_size"]) for it in its]
    left.plot(its / iters_per_epoch, hashnet, linewidth=1.8,
              label=f"hashnet (γ={HASHNET_DEFAULTS['gamma']}, power {HASHNET_DEFAULTS['power']}, "
                    f"updated every {HASHNET_DEFAULTS['step_size']} it; {iters_per_epoch} it/epoch)")
    left.set(title=f"Scale schedules ({epochs} epochs, scale {scale_min:g} → {scale_max:g})",
             xlabel="epochs of training elapsed (epoch)", ylabel="scale", xlim=(0, epochs))
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)

    x = np.linspace(-1.5, 1.5, 600)  # an even count: no sample at exactly 0
    for scale in (1, 2, 5, 10, 20):
        right.plot(x, np.tanh(scale * x), label=f"scale {scale}", linewidth=1.5)
    right.plot(x, np.sign(x), color="black", linestyle=":", linewidth=1.5, label="sign(x)")
    right.set(title="h = tanh(scale · x): larger scales approach sign(x)", xlabel="head pre-activation x",
              ylabel="hash output h")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, out)



def _panel(ax, records, keys, title, ylabel):
    drawn = False
    for key, label, style in keys:
        epochs, values = _series(records, key)
        if epochs:
            ax.plot(epochs, values, style, label=label, linewidth=1.5, markersize=4)
            drawn = True
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")


def plot_training_curves(run, out) -> Path:
    """Loss terms, scale, code saturation, quantisation error, bit balance and mAP against epoch."""
    records = read_metrics(run)
    desc = describe_run(run)
    k = f"mAP@{desc['map_k']}" if desc["map_k"] else "mAP@all"
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    _panel(axes[0, 0], records, [("loss", "total loss", "-"), ("fused_loss", "fused-embedding loss", "-"),
                                 ("hash_loss", "hash-output loss", "-")], "Loss terms", "loss (per step, mean)")
    _panel(axes[0, 1], records, [("scale", "scale (epoch mean)", "-o")], "Progressive scale", "scale")
    _panel(axes[0, 2], records, [("saturated", "share of |h| > 0.95", "-"), ("abs_h", "mean |h|", "--")],
           "Code saturation", "share of |h| > 0.95 / mean |h|")
    _panel(axes[1, 0], records, [("quant_error", "mean (|h| − 1)²", "-")], "Quantisation error",
           "mean (|h| − 1)²")
    _panel(axes[1, 1], records, [("bit_balance", "bit balance", "-")], "Bit balance (1 = every bit 50/50)",
           "1 − mean |mean sign| per bit")
    _panel(axes[1, 2], records, [("i2t_map", f"I2T {k}", "-o"), ("t2i_map", f"T2I {k}", "-s"),
                                 ("i2t_map_all", "I2T mAP@all", "--o"), ("t2i_map_all", "T2I mAP@all", "--s")],
           "Retrieval on the query set (scored epochs)", "mAP")
    first, last = records[0]["epoch"], records[-1]["epoch"]
    pad = max(0.02 * (last - first), 0.1)
    for ax in axes.flat:  # one epoch range for all panels (mAP is only at the scored epochs)
        ax.set_xlim(first - pad, last + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 1].set_ylim(bottom=0)
    fig.suptitle(f"Training curves: {desc['label']}", fontsize=12)
    fig.tight_layout()
    return _save(fig, out)



def plot_map_vs_bits(summary_csv, out, metric="map") -> Path:
    """One row per dataset, I2T and T2I side by side, one line per method with std error bars."""
    if metric not in ("map", "map_all"):
        raise ValueError("metric must be 'map' or 'map_all'")
    rows = read_summary(summary_csv, metric)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = sorted(dict.fromkeys(r["method"] for r in rows),  # plain first, then progressive, then others
                     key=lambda m: 0 if m.startswith("plain") else 1 if m.startswith("progressive") else 2)
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    offsets = {m: 0.06 * (i - (len(methods) - 1) / 2) for i, m in enumerate(methods)}  # log2 jitter
    ks = {r["map_k"] for r in rows}  # an optional map_k column names K
    ylabel = "mAP@all" if metric == "map_all" else (f"mAP@{ks.pop()}" if len(ks) == 1 and "" not in ks else "mAP@K")
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 3.9 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        cells = [r for r in rows if r["dataset"] == dataset]
        bits = sorted({r["bits"] for r in cells})
        for col, (direction, title) in enumerate(DIRECTIONS):
            ax = axes[row, col]
            for method in methods:
                points = sorted((r["bits"], r[f"{direction}_{metric}_mean"], r[f"{direction}_{metric}_std"])
                                for r in cells if r["method"] == method)
                points = [p for p in points if not math.isnan(p[1])]
                if not points:
                    continue
                x = [b * 2 ** offsets[method] for b, _, _ in points]
                y = [m for _, m, _ in points]
                err = [0.0 if math.isnan(s) else s for _, _, s in points]
                ax.errorbar(x, y, yerr=err, marker="o", markersize=5, capsize=3, linewidth=1.5,
                            color=colours[method], label=method)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(bits))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(b) for b in bits])
            ax.set_xlim(min(bits) / 1.4, max(bits) * 1.4)
            ax.set(title=f"{dataset}: {title}", xlabel="code length (bits)", ylabel=ylabel)
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[m], marker="o", label=m) for m in methods]
    _figure_legend(fig, handles, methods, ncol=4)
    fig.suptitle(f"{ylabel} against code length (mean ± std over seeds)", fontsize=12)
    fig.tight_layout()
    return _save(fig, out)


def plot_pr_curves(runs, out, labels=None) -> Path:
    """Top: precision against recall, one point per Hamming radius. Bottom: both against the radius."""
    curves, names = _curves_and_names(runs, labels)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for i, (curve, name) in enumerate(zip(curves, names)):
        colour = plt.cm.tab10(i % 10)
        for col, (direction, _) in enumerate(DIRECTIONS):
            pr = curve[direction]["pr"]
            radius, precision, recall = _floats(pr["radius"]), _floats(pr["precision"]), _floats(pr["recall"])
            axes[0, col].plot(recall, precision, "-o", color=colour, markersize=3, linewidth=1.5, label=name)
            axes[1, col].plot(radius, precision, "-", color=colour, linewidth=1.5)
            axes[1, col].plot(radius, recall, "--", color=colour, linewidth=1.5)
    for col, (_, title) in enumerate(DIRECTIONS):
        axes[0, col].set(title=f"{title}: precision-recall", xlabel="recall (one point per Hamming radius)",
                         ylabel="precision", xlim=(-0.02, 1.02))
        axes[1, col].set(title=f"{title}: within Hamming radius", xlabel="Hamming radius",
                         ylabel="precision / recall")
        styles = [Line2D([], [], color="gray", linestyle="-", label="precision"),
                  Line2D([], [], color="gray", linestyle="--", label="recall")]
        axes[1, col].legend(handles=styles, fontsize=8, loc="best")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    handles, labs = axes[0, 0].get_legend_handles_labels()
    _figure_legend(fig, handles, labs, ncol=2)
    fig.suptitle("Hamming-radius retrieval: precision and recall", fontsize=12)
    fig.tight_layout()
    return _save(fig, out)


def plot_precision_at_k(runs, out, labels=None) -> Path:
    """Precision of the top K retrieved items against K, I2T and T2I panels."""
    curves, names = _curves_and_names(runs, labels)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, (curve, name) in enumerate(zip(curves, names)):
        for ax, (direction, _) in zip(axes, DIRECTIONS):
            pk = curve[direction]["pk"]
            ax.plot(_floats(pk["k"]), _floats(pk["precision"]), "-o", color=plt.cm.tab10(i % 10),
                    markersize=3, linewidth=1.5, label=name)
    ks = np.concatenate([_floats(c[d]["pk"]["k"]) for c in curves for d, _ in DIRECTIONS])
    ks = ks[np.isfinite(ks)]
    for ax, (_, title) in zip(axes, DIRECTIONS):
        if ks.size and ks.min() >= 1 and ks.max() / ks.min() >= 100:  # K spread over decades
            ax.set_xscale("log")
        ax.set(title=f"{title}: precision@K", xlabel="top K retrieved (items)", ylabel="precision@K")
        ax.grid(alpha=0.3)
    handles, labs = axes[0].get_legend_handles_labels()
    _figure_legend(fig, handles, labs, ncol=2)
    fig.suptitle("Precision of the top K retrieved items", fontsize=12)
    fig.tight_layout()
    return _save(fig, out)
