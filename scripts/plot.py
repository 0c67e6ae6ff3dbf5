"""Figures of runs and ablations (PNG, written atomically). The library is study/plots.py (its file
readers: study/run_files.py).

    python scripts/plot.py visualization --progressive runs/demo_prog --plain runs/demo_plain
    python scripts/plot.py scales [--out DIR] [--epochs 100]
    python scripts/plot.py curves RUN [RUN ...]         # training_curves.png in each run folder
    python scripts/plot.py bits ablation/summary.csv    # map_vs_bits.png next to the CSV
    python scripts/plot.py pr RUN [RUN ...] --out DIR   # pr_curves.png and precision_at_k.png
    python scripts/plot.py all ABLATION_DIR             # everything the folder's files allow

Without --out each figure goes next to its inputs: a run's folder, the CSV's
folder, the folder holding the runs (scales: the current folder). `all` writes
training curves into every run folder under ABLATION_DIR (a folder with a
metrics.jsonl), map_vs_bits.png from summary.csv, and per dataset and code
length (suffix _<dataset>_<bits>bit) the hash-output visualization of the
first progressive/plain pair of one seed with histograms.json, and the PR and
precision@K figures of the runs with curves.json (per method its lowest seed).
A missing or malformed input stops with exit status 2 and a one-line error
naming the file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from study import plots  # noqa: E402
from study.figures import plot_all  # noqa: E402
from study.run_files import PlotInputError  # noqa: E402


def _run_dir(path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise PlotInputError(f"{path}: run folder not found")
    return path


def _common_parent(paths) -> Path:
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))


def cmd_visualization(args) -> list:
    if not args.progressive and not args.plain:
        raise PlotInputError("visualization needs --progressive RUN, --plain RUN or both")
    runs = [_run_dir(r) if r else None for r in (args.progressive, args.plain)]
    out = Path(args.out) if args.out else _common_parent([r for r in runs if r])
    return [plots.plot_progressive_visualization(runs[0], runs[1], out / "progressive_hash_visualization.png")]


def cmd_scales(args) -> list:
    out = Path(args.out or ".") / "scale_comparison.png"
    return [plots.plot_scale_comparison(out, epochs=args.epochs, iters_per_epoch=args.iters_per_epoch,
                                        scale_min=args.scale_min, scale_max=args.scale_max)]


def cmd_curves(args) -> list:
    written = []
    for run in map(_run_dir, args.runs):
        if args.out:  # several runs into one folder: keep their names apart
            name = f"training_curves_{run.resolve().name}.png" if len(args.runs) > 1 else "training_curves.png"
            written.append(plots.plot_training_curves(run, Path(args.out) / name))
        else:
            written.append(plots.plot_training_curves(run, run / "training_curves.png"))
    return written


def cmd_bits(args) -> list:
    summary = Path(args.summary)
    if summary.is_dir():
        summary = summary / "summary.csv"
    out = Path(args.out) if args.out else summary.parent
    name = "map_vs_bits.png" if args.metric == "map" else "map_all_vs_bits.png"
    return [plots.plot_map_vs_bits(summary, out / name, metric=args.metric)]


def cmd_pr(args) -> list:
    runs = [_run_dir(r) for r in args.runs]
    out = Path(args.out) if args.out else _common_parent(runs)
    return [plots.plot_pr_curves(runs, out / "pr_curves.png", labels=args.labels),
            plots.plot_precision_at_k(runs, out / "precision_at_k.png", labels=args.labels)]


def cmd_all(args) -> list:
    return plot_all(args.ablation_dir, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("visualization", help="histograms of the hash outputs during training")
    p.add_argument("--progressive", help="run folder of a progressive run (with histograms.json)")
    p.add_argument("--plain", help="run folder of a plain-tanh run (with histograms.json)")
    p.add_argument("--out", help="output folder (default: the folder holding the runs)")
    p.set_defaults(func=cmd_visualization)
    p = sub.add_parser("scales", help="scale schedules and tanh(scale * x)")
    p.add_argument("--out", help="output folder (default: the current folder)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--iters_per_epoch", type=int, default=40, help="for the per-iteration hashnet schedule")
    p.add_argument("--scale_min", type=float, default=1.0)
    p.add_argument("--scale_max", type=float, default=10.0)
    p.set_defaults(func=cmd_scales)
    p = sub.add_parser("curves", help="training curves of runs")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", help="output folder (default: each run's folder)")
    p.set_defaults(func=cmd_curves)
    p = sub.add_parser("bits", help="mAP against code length from an ablation summary.csv")
    p.add_argument("summary", metavar="SUMMARY_CSV", help="summary.csv, or the folder that holds it")
    p.add_argument("--out", help="output folder (default: the CSV's folder)")
    p.add_argument("--metric", choices=("map", "map_all"), default="map")
    p.set_defaults(func=cmd_bits)
    p = sub.add_parser("pr", help="precision-recall and precision@K of runs with curves.json")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", help="output folder (default: the folder holding the runs)")
    p.add_argument("--labels", nargs="+", help="one legend label per run (default: from results.json)")
    p.set_defaults(func=cmd_pr)
    p = sub.add_parser("all", help="every figure an ablation folder allows")
    p.add_argument("ablation_dir", metavar="ABLATION_DIR")
    p.add_argument("--out", help="folder for the summary figures (default: ABLATION_DIR)")
    p.set_defaults(func=cmd_all)
    return parser


def main(argv=None) -> list:
    """Command-line entry point; returns the paths of the PNGs written."""
    args = build_parser().parse_args(argv)
    try:
        written = args.func(args)
    except (PlotInputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
