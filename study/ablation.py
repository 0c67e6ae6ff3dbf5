"""The ablation grid: train every cell of datasets x code lengths x methods x seeds, then summarise.

A run goes to <out>/<dataset>/<bits>bit/<method>/seed<k>/ (with train.log,
histograms.json, codes.npz and curves.json); a run whose results.json exists is
skipped, so an interrupted grid resumes where it stopped and a finished one does
no work. The command line is scripts/ablation.py.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm

from data import load_dataset
from metrics.curves import write_curves
from runio.atomic import atomic_write_json
from study.summary import console_table, method_label, write_summary


def settings(args) -> list:
    """The method settings of the grid, each as the results.json fields that name it."""
    out = []
    for balanced in (b == "on" for b in args.balanced):
        if "off" in args.progressive:
            out.append({"use_progressive_hash": False, "balanced_loss": balanced})
        if "on" in args.progressive:
            out += [{"use_progressive_hash": True, "scale_schedule": schedule, "scale_max": scale_max,
                     "balanced_loss": balanced}
                    for schedule in args.schedules  # hashnet's scale ignores scale_max: one run
                    for scale_max in (args.scale_max if schedule != "hashnet" else args.scale_max[:1])]
    return out


def grid(args) -> list:
    """(run folder, train.py argv or None for CCA, dataset, bits) for every cell and seed."""
    runs = []
    for dataset in args.dataset:
        for bits in args.bits:
            if args.cca:
                runs.append((args.out / dataset / f"{bits}bit" / "cca", None, dataset, bits))
            for setting in settings(args):
                flags = [f"--{key}={value}" for key, value in setting.items()]
                for seed in range(args.seeds):
                    folder = args.out / dataset / f"{bits}bit" / method_label(setting) / f"seed{seed}"
                    argv = ["--dataset", dataset, "--data_root", args.data_root, "--hash_lens", str(bits),
                            "--seed", str(seed), *flags, "--output_dir", str(folder),
                            "--checkpoint_dir", str(folder / "checkpoints"), "--save_every", "0",
                            "--record_histograms", "true", "--save_codes", "true", *args.train_flags]
                    runs.append((folder, argv, dataset, bits))
    return runs


def run_one(folder, argv, dataset, bits, data_root, threads, keep_checkpoints):
    """One training (or the CCA baseline), its console output kept in <folder>/train.log."""
    import torch

    import train
    from study.baselines import cca_scores

    torch.set_num_threads(threads)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        if argv is None:
            scores = cca_scores(load_dataset(dataset, data_root), bits)
            atomic_write_json(folder / "results.json", {"dataset": dataset, "bits": bits, "method": "cca",
                                                        "seed": 0, "train_seconds": 0.0, **scores})
        else:
            train.main(argv)
    if not keep_checkpoints:
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return folder


def run_grid(args) -> list:
    """Train every missing run of the grid (args as scripts/ablation.py parses them), in --jobs
    processes; then curves.json where missing, summary.csv / summary.md and, unless args.no_plots,
    every figure of study.figures.plot_all. Returns the summary rows."""
    runs = grid(args)
    todo = [r for r in runs if not (r[0] / "results.json").is_file()]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} already done, {len(todo)} to run -> {args.out}")
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    work = [(folder, argv, dataset, bits, args.data_root, threads, args.keep_checkpoints)
            for folder, argv, dataset, bits in todo]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for _ in tqdm(pool.map(run_one, *zip(*work)) if work else [], total=len(work), desc="runs"):
                pass
    else:
        for item in tqdm(work, desc="runs", disable=None):
            run_one(*item)
    for codes in sorted(args.out.rglob("codes.npz")):  # runs made before curves were written
        if not (codes.parent / "curves.json").is_file():
            write_curves(codes.parent)
    rows = write_summary(args.out)
    print(console_table(rows))
    print(f"\nsummary: {args.out / 'summary.md'} and {args.out / 'summary.csv'}")
    if not args.no_plots and (todo or not (args.out / "map_vs_bits.png").is_file()):
        from study.figures import plot_all

        plot_all(args.out)
    return rows
