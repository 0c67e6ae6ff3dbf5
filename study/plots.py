"""Figures of runs and ablations. Every figure has a builder, `<name>_figure(...)`, that returns the
matplotlib Figure (to inspect, or to save elsewhere), and a `plot_<name>(..., out)` that builds it and
writes the PNG (dpi 150) atomically, returning out's path. Inputs: a run folder's config.yaml,
metrics.jsonl, results.json, histograms.json, curves.json (docs/training.md, "What a run writes") and
an ablation's summary.csv, read by study.run_files; a missing or malformed input raises
run_files.PlotInputError, one line naming the file.

The figures are plain matplotlib.figure.Figure objects, never pyplot's: pyplot would keep every
figure a builder returns alive in its registry until someone closed it.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from config import SCALE_SCHEDULES, Config
from runio.atomic import atomic_write_bytes
from schedules import ScaleSchedule
from study.run_files import DIRECTIONS, describe_run, read_curves, read_histograms, read_metrics, read_summary

DPI = 150
TITLES = {"i2t": "I2T (image → text)", "t2i": "T2I (text → image)"}
COLOURS = matplotlib.colormaps["tab10"]  # COLOURS(i % 10): the i-th run's or method's colour


def _save(fig, out) -> Path:
    """Render `fig` to PNG in memory, then write it atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)


def _figure_legend(fig, handles, labels, ncol=3):
    """One legend for all panels, below them."""
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(ncol, len(labels)),
               frameon=False, fontsize=9)


def _floats(values):
    """A JSON list as floats, null as NaN (matplotlib leaves a gap there)."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


# ----- hash-output histograms during training -----

def progressive_visualization_figure(progressive_run, plain_run) -> Figure:
    """Histograms of the hash outputs h at each snapshot of histograms.json: one row per run (either
    may be None), one column per snapshot, the image head filled and the text head outlined."""
    rows = [(name, run) for name, run in (("progressive", progressive_run), ("plain", plain_run)) if run]
    if not rows:
        raise ValueError("give a progressive run, a plain run or both")
    data = [(name, describe_run(run), read_histograms(run)) for name, run in rows]
    ncols = max(len(hist["snapshots"]) for _, _, hist in data)
    fig = Figure(figsize=(2.6 * ncols, 2.6 * len(data) + 0.6))
    axes = fig.subplots(len(data), ncols, sharex=True, sharey=True, squeeze=False)
    for row, (name, desc, hist) in enumerate(data):
        edges = np.asarray(hist["bin_edges"], dtype=float)
        for col, ax in enumerate(axes[row]):
            if col >= len(hist["snapshots"]):  # a run with fewer snapshots than the other
                ax.set_axis_off()
                continue
            _histogram_panel(ax, hist["snapshots"][col], edges)
            if row == len(data) - 1:
                ax.set_xlabel("hash output h")
        axes[row, 0].set_ylabel(f"{desc['method'] or name}\nshare of outputs")
    axes[0, 0].set_xlim(-1.05, 1.05)
    _figure_legend(fig, *axes[0, 0].get_legend_handles_labels())
    names = " vs ".join(desc["label"] for _, desc, _ in data)
    fig.suptitle(f"Hash-head outputs h on the query set during training\n{names}", fontsize=11)
    fig.tight_layout()
    return fig


def _histogram_panel(ax, snap, edges) -> None:
    """One snapshot: the share of outputs per bin (counts / total), so runs of any size compare."""
    for modality, colour, fill in (("image", "tab:blue", True), ("text", "tab:orange", False)):
        counts = np.asarray(snap[modality], dtype=float)
        share = counts / counts.sum() if counts.sum() > 0 else counts
        ax.stairs(share, edges, fill=fill, alpha=0.45 if fill else 1.0, color=colour, linewidth=1.2,
                  label=f"{modality} head")
    # "epoch" counts the epochs completed; "progress" is the schedule's e / (E - 1) of that epoch
    ax.set_title(f"after epoch {snap['epoch']} · {float(snap['progress']):.0%} · "
                 f"scale {float(snap['scale']):.2f}", fontsize=9)
    ax.grid(alpha=0.3)


def plot_progressive_visualization(progressive_run, plain_run, out) -> Path:
    return _save(progressive_visualization_figure(progressive_run, plain_run), out)


# ----- scale schedules -----

def scale_comparison_figure(epochs=100, iters_per_epoch=40, scale_min=1.0, scale_max=10.0) -> Figure:
    """Left: scale against epoch for every schedule of config.SCALE_SCHEDULES, computed by the
    training's own ScaleSchedule (HashNet's gamma, power and step size are Config's defaults).
    Right: tanh(scale * x) at several scales."""
    if epochs < 1 or iters_per_epoch < 1:
        raise ValueError("epochs and iters_per_epoch must be at least 1")
    fig = Figure(figsize=(12, 4.6))
    left, right = fig.subplots(1, 2)
    for name in SCALE_SCHEDULES:
        cfg = Config(epoch=epochs, scale_min=scale_min, scale_max=scale_max, scale_schedule=name,
                     use_progressive_hash=True)
        _schedule_curve(left, ScaleSchedule(cfg, iters_per_epoch))
    left.set(title=f"Scale schedules ({epochs} epochs, scale {scale_min:g} → {scale_max:g})",
             xlabel="epochs of training elapsed (epoch)", ylabel="scale", xlim=(0, epochs))
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    _tanh_panel(right)
    fig.tight_layout()
    return fig


def _schedule_curve(ax, schedule: ScaleSchedule) -> None:
    """x = epochs elapsed. An epoch schedule holds its value for the whole epoch [e, e + 1), hence
    steps; a per-iteration one (hashnet) is drawn at every iteration."""
    epochs, iters = schedule.total_epochs, schedule.iters_per_epoch
    if schedule.per_iteration:
        its = np.arange(epochs * iters + 1)
        gamma, power, step = schedule.hashnet
        ax.plot(its / iters, [schedule.at(int(it) // iters, int(it)) for it in its], linewidth=1.8,
                label=f"{schedule.name} (γ={gamma:g}, power {power:g}, updated every {step} it; "
                      f"{iters} it/epoch)")
        return
    values = [schedule.at(e) for e in range(epochs)]
    ax.plot(np.arange(epochs + 1), values + values[-1:], drawstyle="steps-post", label=schedule.name,
            linewidth=1.8, linestyle="--" if schedule.name == "constant" else "-")


def _tanh_panel(ax) -> None:
    x = np.linspace(-1.5, 1.5, 600)  # an even count: no sample at exactly 0
    for scale in (1, 2, 5, 10, 20):
        ax.plot(x, np.tanh(scale * x), label=f"scale {scale}", linewidth=1.5)
    ax.plot(x, np.sign(x), color="black", linestyle=":", linewidth=1.5, label="sign(x)")
    ax.set(title="h = tanh(scale · x): larger scales approach sign(x)", xlabel="head pre-activation x",
           ylabel="hash output h")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def plot_scale_comparison(out, epochs=100, iters_per_epoch=40, scale_min=1.0, scale_max=10.0) -> Path:
    return _save(scale_comparison_figure(epochs, iters_per_epoch, scale_min, scale_max), out)


# ----- training curves -----

def training_curves_figure(run) -> Figure:
    """Loss terms, scale, code saturation, quantisation error, bit balance and mAP against epoch
    (2 x 3 panels); a key the run did not record leaves its panel saying so."""
    records = read_metrics(run)
    desc = describe_run(run)
    k = f"mAP@{desc['map_k']}" if desc["map_k"] else "mAP@all"
    fig = Figure(figsize=(15, 8))
    axes = fig.subplots(2, 3)
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
    return fig


def _series(records, key):
    """(epochs, values) of the records that hold a numeric `key`."""
    pairs = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _panel(ax, records, keys, title, ylabel) -> None:
    """One line per (key, label, style) the records hold."""
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
    return _save(training_curves_figure(run), out)


# ----- mAP against code length -----

def map_vs_bits_figure(summary_csv, metric="map") -> Figure:
    """One row per dataset, I2T and T2I side by side, one line per method with std error bars."""
    if metric not in ("map", "map_all"):
        raise ValueError("metric must be 'map' or 'map_all'")
    rows = read_summary(summary_csv, metric)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = sorted(dict.fromkeys(r["method"] for r in rows),  # plain first, then progressive, then others
                     key=lambda m: 0 if m.startswith("plain") else 1 if m.startswith("progressive") else 2)
    ylabel = _metric_label(rows, metric)
    fig = Figure(figsize=(12, 3.9 * len(datasets)))
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for row, dataset in enumerate(datasets):
        cells = [r for r in rows if r["dataset"] == dataset]
        for ax, direction in zip(axes[row], DIRECTIONS):
            _bits_panel(ax, cells, f"{direction}_{metric}", methods)
            ax.set(title=f"{dataset}: {TITLES[direction]}", xlabel="code length (bits)", ylabel=ylabel)
    handles = [Line2D([], [], color=COLOURS(i % 10), marker="o", label=m) for i, m in enumerate(methods)]
    _figure_legend(fig, handles, methods, ncol=4)
    fig.suptitle(f"{ylabel} against code length (mean ± std over seeds)", fontsize=12)
    fig.tight_layout()
    return fig


def _metric_label(rows, metric) -> str:
    """mAP@all, or mAP@<K> when the summary's optional map_k column names one K, else mAP@K."""
    if metric == "map_all":
        return "mAP@all"
    ks = {r["map_k"] for r in rows}
    return f"mAP@{ks.pop()}" if len(ks) == 1 and "" not in ks else "mAP@K"


def _bits_panel(ax, cells, score, methods) -> None:
    """`score` (e.g. i2t_map) of every method against bits on a log2 axis; the methods are shifted
    a little sideways so that their error bars do not hide each other."""
    bits = sorted({r["bits"] for r in cells})
    for i, method in enumerate(methods):
        points = sorted((r["bits"], r[f"{score}_mean"], r[f"{score}_std"]) for r in cells if r["method"] == method)
        points = [p for p in points if not math.isnan(p[1])]
        if not points:
            continue
        shift = 2 ** (0.06 * (i - (len(methods) - 1) / 2))
        ax.errorbar([b * shift for b, _, _ in points], [m for _, m, _ in points],
                    yerr=[0.0 if math.isnan(s) else s for _, _, s in points],  # one seed: no std
                    marker="o", markersize=5, capsize=3, linewidth=1.5, color=COLOURS(i % 10), label=method)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(bits))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in bits])
    ax.set_xlim(min(bits) / 1.4, max(bits) * 1.4)
    ax.grid(alpha=0.3)


def plot_map_vs_bits(summary_csv, out, metric="map") -> Path:
    return _save(map_vs_bits_figure(summary_csv, metric), out)


# ----- retrieval curves of runs (curves.json) -----

def _run_labels(runs, labels):
    """The legend name of each run: `labels`, else describe_run's label (plus the folder name where
    two runs would read alike)."""
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


def pr_curves_figure(runs, labels=None) -> Figure:
    """Top: precision against recall, one point per Hamming radius. Bottom: both against the radius.
    I2T on the left, T2I on the right; one colour per run."""
    curves, names = _curves_and_names(runs, labels)
    fig = Figure(figsize=(12, 8.5))
    axes = fig.subplots(2, 2)
    for i, (curve, name) in enumerate(zip(curves, names)):
        for col, direction in enumerate(DIRECTIONS):
            pr = curve[direction]["pr"]
            radius, precision, recall = _floats(pr["radius"]), _floats(pr["precision"]), _floats(pr["recall"])
            axes[0, col].plot(recall, precision, "-o", color=COLOURS(i % 10), markersize=3, linewidth=1.5,
                              label=name)
            axes[1, col].plot(radius, precision, "-", color=COLOURS(i % 10), linewidth=1.5)
            axes[1, col].plot(radius, recall, "--", color=COLOURS(i % 10), linewidth=1.5)
    styles = [Line2D([], [], color="gray", linestyle="-", label="precision"),
              Line2D([], [], color="gray", linestyle="--", label="recall")]
    for col, direction in enumerate(DIRECTIONS):
        axes[0, col].set(title=f"{TITLES[direction]}: precision-recall",
                         xlabel="recall (one point per Hamming radius)", ylabel="precision", xlim=(-0.02, 1.02))
        axes[1, col].set(title=f"{TITLES[direction]}: within Hamming radius", xlabel="Hamming radius",
                         ylabel="precision / recall")
        axes[1, col].legend(handles=styles, fontsize=8, loc="best")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    _figure_legend(fig, *axes[0, 0].get_legend_handles_labels(), ncol=2)
    fig.suptitle("Hamming-radius retrieval: precision and recall", fontsize=12)
    fig.tight_layout()
    return fig


def plot_pr_curves(runs, out, labels=None) -> Path:
    return _save(pr_curves_figure(runs, labels), out)


def precision_at_k_figure(runs, labels=None) -> Figure:
    """Precision of the top K retrieved items against K, I2T and T2I panels; K on a log axis when it
    spreads over two decades or more."""
    curves, names = _curves_and_names(runs, labels)
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 2)
    for i, (curve, name) in enumerate(zip(curves, names)):
        for ax, direction in zip(axes, DIRECTIONS):
            pk = curve[direction]["pk"]
            ax.plot(_floats(pk["k"]), _floats(pk["precision"]), "-o", color=COLOURS(i % 10),
                    markersize=3, linewidth=1.5, label=name)
    ks = np.concatenate([_floats(c[d]["pk"]["k"]) for c in curves for d in DIRECTIONS])
    ks = ks[np.isfinite(ks)]
    for ax, direction in zip(axes, DIRECTIONS):
        if ks.size and ks.min() >= 1 and ks.max() / ks.min() >= 100:
            ax.set_xscale("log")
        ax.set(title=f"{TITLES[direction]}: precision@K", xlabel="top K retrieved (items)", ylabel="precision@K")
        ax.grid(alpha=0.3)
    _figure_legend(fig, *axes[0].get_legend_handles_labels(), ncol=2)
    fig.suptitle("Precision of the top K retrieved items", fontsize=12)
    fig.tight_layout()
    return fig


def plot_precision_at_k(runs, out, labels=None) -> Path:
    return _save(precision_at_k_figure(runs, labels), out)
