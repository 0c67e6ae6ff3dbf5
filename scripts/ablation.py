"""Run a grid of trainings and summarise it: which setting helps, by how much, where?

    python scripts/ablation.py --dataset demo --bits 16 32 --seeds 3
    python scripts/ablation.py --dataset wiki --data_root ../shared/data --bits 16 32 64 \\
        --schedules linear hashnet --seeds 3 --cca
    python scripts/ablation.py --dataset demo --vary modality_dropout=0,0.5,0.75 -- --val_queries 400
    python scripts/ablation.py --ladder ucmfh --dataset demo --bits 16 64 --seeds 3 -- --val_queries 400
    python scripts/ablation.py --zoo --jobs 2 --vary modality_dropout=0,0.25,0.5,0.75 --vary preset=ucmfh

With --zoo: every set of the development zoo (data/zoo.py, demo, wiki) x the defaults and each
--vary value as a one-key change of them x seeds, 16 bits, 10 epochs, validation queries held
out and their pairs left out of training (--val_unseen true; `-- --val_unseen false` keeps
them); then zoo.md / zoo.json: the default's regret per set, the leave-one-set-out table and
the label-free criteria's correlation with validation mAP (docs/zoo.md).

Axes: datasets x code lengths x {plain, progressive with each schedule and scale_max}
x balanced loss off/on x seeds (0..seeds-1); or, with --ladder, the rungs of that
ladder (study/ladder.py) in place of the method axes. Every --vary KEY=V1,V2,...
adds an axis over any train.py setting; a varied setting is compared with its
baseline (plain, or the previous rung) at the same varied values. Each run goes
to <out>/<dataset>/<bits>bit/<label>/seed<k>/ (with histograms.json and
codes.npz); a run whose results.json exists is skipped, so an interrupted grid
resumes where it stopped and a finished one does no work. Then summary.csv and
summary.md are written to <out>, and the plots of `scripts/plot.py all` (unless
--no_plots). Flags after `--` go to train.py (e.g. `-- --epoch 10`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import SCALE_SCHEDULES, ConfigError, build_config, coerce  # noqa: E402
from data import DataError, canonical_dataset_name, load_dataset  # noqa: E402
from data.zoo import ZOO  # noqa: E402
from study.ablation import check_done_runs, data_root_of, grid, run_grid  # noqa: E402
from study.ladder import LADDERS  # noqa: E402
from runio.logs import LOGGER, add_log_flags, info, setup_logging  # noqa: E402


ZOO_VARY = ("modality_dropout", ["0", "0.25", "0.5", "0.75"])   # the zoo grid's axis when no --vary is given


def vary_axis(text):
    """KEY=V1,V2,... -> (KEY, [V1, V2, ...]), each value checked as train.py would read it."""
    key, equals, values = text.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not equals or not items:
        raise argparse.ArgumentTypeError(f"expected KEY=V1,V2,... such as modality_dropout=0,0.5, got {text!r}")
    try:
        for item in items:
            coerce(key, item)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return key, items


def parse_args(argv):
    argv, train_flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--dataset", nargs="+", help="default: demo; with --zoo, the zoo sets, demo and wiki")
    p.add_argument("--bits", nargs="+", type=int, help="default: 16 32 64; with --zoo, 16")
    p.add_argument("--zoo", action="store_true",
                   help="the development zoo (docs/zoo.md): the defaults and each --vary value as a one-key change "
                        f"of them (no --vary: {ZOO_VARY[0]}={','.join(ZOO_VARY[1])}), on every zoo set, 10 epochs, "
                        "the validation queries' pairs left out of training; then the regret and leave-one-set-out "
                        "tables (zoo.md)")
    p.add_argument("--wiki_root", default="../shared/data",
                   help="with --zoo: the folder holding wiki/ (skipped where it is absent)")
    p.add_argument("--val_queries", type=int, default=300, help="with --zoo: validation queries per set")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--progressive", nargs="+", choices=("on", "off"), default=["on", "off"])
    p.add_argument("--schedules", nargs="+", choices=SCALE_SCHEDULES, default=["linear"])
    p.add_argument("--scale_max", nargs="+", default=[None],
                   help="values, or per-length maps like 16:10,64:15 (default: the config's per-length map)")
    p.add_argument("--balanced", nargs="+", choices=("on", "off"),
                   help="the balanced loss off, on or both (default: train.py's default, on; labels then say nothing)")
    p.add_argument("--vary", action="append", type=vary_axis, default=[], metavar="KEY=V1,V2",
                   help="an axis over any train.py setting (repeatable)")
    p.add_argument("--ladder", choices=sorted(LADDERS), help="run this ladder's rungs instead of the method axes")
    p.add_argument("--cca", action="store_true", help="add the CCA sign-code baseline (deterministic: one run)")
    p.add_argument("--data_root", default="data")
    p.add_argument("--out", help="grid folder (default runs/ablation_<datasets>)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (threads are shared out)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: CPU cores / jobs; with --jobs 1, this process's)")
    p.add_argument("--keep_checkpoints", action="store_true")
    p.add_argument("--no_plots", action="store_true", help="skip `scripts/plot.py all` at the end")
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    fixed = {flag[2:].partition("=")[0].replace("-", "_") for flag in train_flags if flag.startswith("--")}
    for key in sorted(fixed & {key for key, _ in args.vary}):   # a run's flags after -- come last and win
        p.error(f"--vary {key}: --{key} is also set after --, which would override every varied value")
    args.train_flags, args.grid_flags = train_flags, []
    if args.zoo:
        if args.ladder:
            p.error("--zoo and --ladder do not go together")
        wiki_here = (Path(args.wiki_root) / "wiki").is_dir()
        if args.dataset is None and not wiki_here:
            info(f"note: {Path(args.wiki_root) / 'wiki'} not found: the zoo runs without wiki")
        args.dataset = args.dataset or [*ZOO, "demo", *(["wiki"] if wiki_here else [])]
        args.bits = args.bits or [16]
        args.vary = args.vary or [ZOO_VARY]
        # every set trains 10 epochs and holds out validation queries to choose on, their pairs left out
        # of training so that no choice reads a score of pairs the run has seen (docs/zoo.md, stop 61).
        # Before each setting's flags: a --vary value wins over them, and so does a flag after --
        args.grid_flags = ["--epoch", "10", "--val_queries", str(args.val_queries), "--val_unseen", "true"]
    args.dataset = [canonical_dataset_name(d) for d in args.dataset or ["demo"]]
    args.bits = args.bits or [16, 32, 64]
    args.out = Path(args.out or f"runs/ablation_{'_'.join(args.dataset)}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    LOGGER.debug("arguments: %s", vars(args))
    try:
        for dataset in args.dataset:  # fail fast on a bad dataset or flag, before hours of runs
            load_dataset(dataset, data_root_of(args, dataset))
        build_config(["--dataset", args.dataset[0], *args.grid_flags, *args.train_flags])
        for scale_max in filter(None, args.scale_max):
            coerce("scale_max", scale_max)
        check_done_runs(grid(args))   # a resumed grid: its finished runs trained as it asks now
    except (ConfigError, DataError) as err:
        LOGGER.error(f"error: {err}")
        raise SystemExit(2) from None
    return run_grid(args)


if __name__ == "__main__":
    main()
