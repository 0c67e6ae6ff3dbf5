"""Run a grid of trainings and summarise it: does progressive hashing help, by how much, where?

    python scripts/ablation.py --dataset demo --bits 16 32 --seeds 3
    python scripts/ablation.py --dataset wiki --data_root ../shared/data --bits 16 32 64 \\
        --schedules linear hashnet --seeds 3 --cca

Axes: datasets x code lengths x {plain, progressive with each schedule and scale_max}
x balanced loss off/on x seeds (0..seeds-1). Each run goes to
<out>/<dataset>/<bits>bit/<method>/seed<k>/ (with histograms.json and codes.npz);
a run whose results.json exists is skipped, so an interrupted grid resumes where it
stopped and a finished one does no work. Then summary.csv and summary.md are
written to <out>, and the plots of `scripts/plot.py all` (unless --no_plots).
Flags after `--` go to train.py (e.g. `-- --epoch 10`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import SCALE_SCHEDULES, ConfigError, build_config  # noqa: E402
from data import DataError, canonical_dataset_name, load_dataset  # noqa: E402
from metrics_curves import write_curves  # noqa: E402
from runio import atomic_write_json  # noqa: E402
from summary import console_table, method_label, write_summary  # noqa: E402


def parse_args(argv):
    argv, train_flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", nargs="+", default=["demo"])
    p.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--progressive", nargs="+", choices=("on", "off"), default=["on", "off"])
    p.add_argument("--schedules", nargs="+", choices=SCALE_SCHEDULES, default=["linear"])
    p.add_argument("--scale_max", nargs="+", type=float, default=[10.0])
    p.add_argument("--balanced", nargs="+", choices=("on", "off"), default=["off"])
    p.add_argument("--cca", action="store_true", help="add the CCA sign-code baseline (deterministic: one run)")
    p.add_argument("--data_root", default="data")
    p.add_argument("--out", help="grid folder (default runs/ablation_<datasets>)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (threads are shared out)")
    p.add_argument("--keep_checkpoints", action="store_true")
    p.add_argument("--no_plots", action="store_true", help="skip `scripts/plot.py all` at the end")
    args = p.parse_args(argv)
    args.train_flags = train_flags
    args.dataset = [canonical_dataset_name(d) for d in args.dataset]
    args.out = Path(args.out or f"runs/ablation_{'_'.join(args.dataset)}")
    return args


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
    from baselines import cca_scores

    torch.set_num_threads(threads)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        if argv is None:
            scores = cca_scores(load_dataset(dataset, data_root), bits)
            atomic_write_json(folder / "results.json", {"dataset": dataset, "bits": bits, "hash_lens": bits,
                                                        "method": "cca", "seed": 0, "train_seconds": 0.0, **scores})
        else:
            train.main(argv)
    if not keep_checkpoints:
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return folder


def plot_all(folder) -> list:
    """`python scripts/plot.py all <folder>`: training curves, mAP vs bits, histograms, PR and P@K."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_cli", Path(__file__).with_name("plot.py"))
    plot_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_cli)
    return plot_cli.main(["all", str(folder)])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        for dataset in args.dataset:  # fail fast on a bad dataset or flag, before hours of runs
            load_dataset(dataset, args.data_root)
        build_config(["--dataset", args.dataset[0], *args.train_flags])
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
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
        plot_all(args.out)
    return rows


if __name__ == "__main__":
    main()
