"""Every figure a grid folder allows, from the files its runs wrote (scripts/plot.py all)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from study import plots
from study.run_files import PlotInputError, describe_run


def _note(message) -> None:
    print(f"note: {message}", file=sys.stderr)


def plot_all(folder, out=None) -> list:
    """Every figure a grid folder allows (scripts/plot.py all): training curves in each run folder
    (a folder with metrics.jsonl), map_vs_bits.png from summary.csv, and per dataset and code length
    (suffix _<dataset>_<bits>bit) the hash-output visualization of the first progressive / plain
    pair of one seed with histograms.json, and the PR and precision@K figures of the runs with
    curves.json (per method its lowest seed). Summary figures go to `out` (default: the folder).
    Returns the paths written."""
    root = Path(folder)
    if not root.is_dir():
        raise PlotInputError(f"{root}: ablation folder not found")
    out = Path(out) if out else root
    runs = sorted({p.parent for p in root.rglob("metrics.jsonl")})
    if not runs and not (root / "summary.csv").is_file():
        raise PlotInputError(f"{root}: no run folder (metrics.jsonl) and no summary.csv")
    written = [plots.plot_training_curves(run, run / "training_curves.png") for run in runs]
    if (root / "summary.csv").is_file():
        written.append(plots.plot_map_vs_bits(root / "summary.csv", out / "map_vs_bits.png"))
    else:
        _note(f"{root / 'summary.csv'}: not found; no map_vs_bits.png")

    described = [(run, describe_run(run)) for run in runs]
    groups = {}
    for run, desc in described:
        groups.setdefault((str(desc["dataset"]), desc["bits"]), []).append((run, desc))
    for (dataset, bits), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or 0)):
        if dataset == "None" or bits is None:
            _note(f"{', '.join(str(r) for r, _ in members)}: dataset or code length unknown; no comparison figures")
            continue
        suffix = f"_{dataset}_{bits}bit"
        with_hist = [(r, d) for r, d in members if (r / "histograms.json").is_file()]
        pair = _visualization_pair(with_hist)
        if pair:
            written.append(plots.plot_progressive_visualization(
                pair[0], pair[1], out / f"progressive_hash_visualization{suffix}.png"))
        elif with_hist:
            _note(f"{dataset} {bits}-bit: no progressive and plain run of one seed with histograms.json")
        with_curves = {}  # one run per method (its lowest seed), so the figure stays readable
        for run, desc in sorted(members, key=lambda m: (_seed_key(m[1]), str(m[0]))):
            if (run / "curves.json").is_file():
                with_curves.setdefault(desc["method"] or str(run), run)
        with_curves = list(with_curves.values())
        if with_curves:
            written.append(plots.plot_pr_curves(with_curves, out / f"pr_curves{suffix}.png"))
            written.append(plots.plot_precision_at_k(with_curves, out / f"precision_at_k{suffix}.png"))
    return written


def _seed_key(desc):
    return desc["seed"] if isinstance(desc["seed"], int) else math.inf


def _visualization_pair(members):
    """The first (progressive, plain) pair of one seed, preferring progressive-linear and the lowest seed."""
    def order(item):
        return (item[1]["method"] != "progressive-linear", _seed_key(item[1]), str(item[0]))
    progressive = sorted([m for m in members if (m[1]["method"] or "").startswith("progressive")], key=order)
    plain = sorted([m for m in members if (m[1]["method"] or "").startswith("plain")], key=order)
    for run, desc in progressive:  # plain+balanced is the baseline of progressive-...+balanced
        base = "plain+balanced" if desc["method"].endswith("+balanced") else "plain"
        match = [r for r, d in plain if d["seed"] == desc["seed"] and d["method"] == base]
        if match:
            return run, match[0]
    return None
