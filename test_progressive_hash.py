"""See progressive hash learning at work in a few seconds on a CPU (not a test suite: a demo).

    python test_progressive_hash.py                          # the default config (configs/demo.yaml)
    python test_progressive_hash.py --epochs 100 --schedule exponential --scale_max 15
    python test_progressive_hash.py --histograms runs/demo_64bit_<time>/histograms.json

Hash outputs are h = tanh(scale * x) with a scale that grows during training
(schedules.py), so codes start continuous and end nearly binary. This command

1. prints the scale and training progress of every epoch for the chosen
   schedule, and every schedule of config.SCALE_SCHEDULES side by side at the
   progress points where training records histograms (0, 20, ..., 100%);
2. writes progressive_hash_visualization.png: histograms of h at those points,
   from a toy model trained here (two hash heads on synthetic paired features,
   with the scale following the schedule; outputs of held-out rows), or with
   --histograms from a run's histograms.json (train.py --record_histograms true);
3. writes scale_comparison.png: the scale of every schedule over training, and
   tanh(scale * x) at several scales.

--epochs, --scale_min, --scale_max and --schedule go through config.build_config,
so a bad value is the project's one-line error (exit status 2), as in train.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from config import SCALE_SCHEDULES, ConfigError, build_config
from runio.histograms import HISTOGRAM_EDGES, HISTOGRAM_POINTS
from losses import contrastive_loss
from model import HashHead
from schedules import ScaleSchedule, training_progress
from study import plots
from study.run_files import PlotInputError, read_histograms
from study.workers import torch_threads

SATURATED = 0.95   # the training log's threshold ('saturated' in metrics.jsonl: share of |h| > 0.95)
SEED = 0
# the toy problem: two noisy random linear views (image, text) of one shared latent per pair
TOY_LATENT, TOY_IMAGE_DIM, TOY_TEXT_DIM = 8, 32, 24
TOY_TRAIN, TOY_HELD_OUT, TOY_BATCH, TOY_HIDDEN = 1024, 256, 64, 256


def stage_epochs(total_epochs: int) -> list:
    """The epoch indices (from 0) whose progress is nearest 0, 20, ..., 100%: the epochs after which
    training records histograms (ICMR.Solver.train); fewer than six when there are fewer epochs."""
    return sorted({round(p * (total_epochs - 1)) for p in HISTOGRAM_POINTS})


def first_step_scale(schedule: ScaleSchedule, epoch: int) -> float:
    """The scale of an epoch's first step, as train.py logs it (hashnet changes it every step)."""
    return schedule.at(epoch, epoch * schedule.iters_per_epoch)


def print_simulation(cfg, schedule: ScaleSchedule, bits: int) -> None:
    """Every epoch's scale and progress under `schedule` (cfg's), then every schedule at the stages."""
    total, width = cfg.epoch, len(str(cfg.epoch))
    print(schedule.describe())
    if schedule.per_iteration:
        print(f"  (scale at each epoch's first step, {schedule.iters_per_epoch} steps per epoch)")
    for epoch in range(total):
        print(f"epoch {epoch + 1:>{width}}/{total}  scale {first_step_scale(schedule, epoch):6.2f}  "
              f"progress {training_progress(epoch, total):6.1%}")
    print(f"test-time scale: {schedule.eval_scale:.2f} (sign() codes do not depend on it)\n")
    epochs = stage_epochs(total)
    print(f"Every schedule, scale {schedule.scale_min:g} -> {schedule.scale_max:g} over {total} epochs "
          f"(hashnet: {schedule.iters_per_epoch} steps per epoch):")
    print(f"{'epoch':<12}" + "".join(f"{e + 1:>8}" for e in epochs))
    print(f"{'progress':<12}" + "".join(f"{training_progress(e, total):>8.0%}" for e in epochs))
    for name in SCALE_SCHEDULES:
        other = ScaleSchedule(dataclasses.replace(cfg, scale_schedule=name), schedule.iters_per_epoch, bits=bits)
        print(f"{name:<12}" + "".join(f"{first_step_scale(other, e):>8.2f}" for e in epochs))
    print()


def toy_histograms(cfg, bits: int) -> dict:
    """Train two small hash heads (model.HashHead) with UCMFH's contrastive loss on synthetic paired
    features for cfg.epoch epochs, the scale following cfg's schedule, and histogram the held-out
    outputs after the stage epochs at that epoch's last scale. Returns histograms.json's format."""
    with torch_threads(1):  # a model this small only waits on more threads (ten times slower on a busy CPU)
        return _train_toy(cfg, bits)


def _train_toy(cfg, bits: int) -> dict:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    latent = torch.randn(TOY_TRAIN + TOY_HELD_OUT, TOY_LATENT, generator=generator)

    def view(dim):  # a random linear view of the latent plus noise: the two views share only it
        return latent @ torch.randn(TOY_LATENT, dim, generator=generator) \
            + 0.3 * torch.randn(len(latent), dim, generator=generator)

    image, text = view(TOY_IMAGE_DIM), view(TOY_TEXT_DIM)
    heads = [HashHead(dim, bits, TOY_HIDDEN, dropout=0.1) for dim in (TOY_IMAGE_DIM, TOY_TEXT_DIM)]
    optimizer = torch.optim.Adam([p for head in heads for p in head.parameters()], lr=cfg.lr_hash)
    steps = math.ceil(TOY_TRAIN / TOY_BATCH)
    schedule = ScaleSchedule(cfg, steps, bits=bits)
    stages, snapshots = set(stage_epochs(cfg.epoch)), []
    for epoch in range(cfg.epoch):
        for head in heads:
            head.train()
        order = torch.randperm(TOY_TRAIN, generator=generator)
        for step in range(steps):
            rows = order[step * TOY_BATCH:(step + 1) * TOY_BATCH]
            scale = schedule.at(epoch, epoch * steps + step)
            loss = contrastive_loss(heads[0](image[rows], scale), heads[1](text[rows], scale), cfg.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch in stages:
            scale = schedule.at(epoch, (epoch + 1) * steps - 1)
            with torch.no_grad():
                outputs = [head.eval()(x[TOY_TRAIN:], scale) for head, x in zip(heads, (image, text))]
            counts = [np.histogram(h.numpy(), HISTOGRAM_EDGES)[0].tolist() for h in outputs]
            snapshots.append({"epoch": epoch + 1, "progress": training_progress(epoch, cfg.epoch),
                              "scale": scale, "image": counts[0], "text": counts[1]})
    return {"bin_edges": HISTOGRAM_EDGES.tolist(), "snapshots": snapshots}


def read_histogram_file(path) -> dict:
    """A run's histograms.json, given as the file or its run folder (study.run_files checks it)."""
    path = Path(path)
    if path.is_dir():
        return read_histograms(path)
    if not path.exists():
        raise PlotInputError(f"{path}: file not found")
    if path.name != "histograms.json":  # run_files reads <folder>/histograms.json, so a renamed copy would be missed
        raise PlotInputError(f"{path}: expected a run folder or a file named histograms.json")
    return read_histograms(path.parent)


def saturated_share(counts, edges) -> float:
    """Share of the outputs in the bins lying wholly beyond +-SATURATED (a histogram only counts whole
    bins: with histograms.json's 0.04-wide bins that is |h| >= 0.96)."""
    counts, edges = np.asarray(counts, dtype=float), np.asarray(edges, dtype=float)
    outer = (edges[:-1] >= SATURATED) | (edges[1:] <= -SATURATED)
    return float(counts[outer].sum() / counts.sum()) if counts.sum() > 0 else 0.0


def histogram_figure(hist: dict, source: str) -> Figure:
    """One panel per snapshot (three per row): the share of outputs per bin, image head filled and
    text head outlined, titled with its epoch, progress, scale and saturated share."""
    edges, snaps = np.asarray(hist["bin_edges"], dtype=float), hist["snapshots"]
    ncols = min(3, len(snaps))
    nrows = math.ceil(len(snaps) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows + 0.9))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).flatten()
    for ax, snap in zip(axes, snaps):
        for modality, colour, fill in (("image", "tab:blue", True), ("text", "tab:orange", False)):
            counts = np.asarray(snap[modality], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1.0), edges, fill=fill, alpha=0.45 if fill else 1.0,
                      color=colour, linewidth=1.2, label=f"{modality} head")
        sat = [saturated_share(snap[m], edges) for m in ("image", "text")]
        ax.set_title(f"after epoch {snap['epoch']} · {float(snap['progress']):.0%} · scale {float(snap['scale']):.2f}\n"
                     f"saturated: image {sat[0]:.0%}, text {sat[1]:.0%}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(snaps):]:
        ax.set_axis_off()
    for ax in axes[:len(snaps)][-ncols:]:
        ax.set_xlabel("hash output h")
    axes[0].set_xlim(-1.05, 1.05)
    axes[0].legend(fontsize=8, loc="upper left")  # the first stage is the narrowest: its corners are empty
    beyond = edges[:-1][edges[:-1] >= SATURATED]   # lower edges of the bins counted as saturated
    rule = f"|h| ≥ {beyond.min():.2f}" if beyond.size else f"|h| > {SATURATED:g}: no bin lies wholly there"
    fig.suptitle(f"Hash outputs h = tanh(scale · x) during training: {source}\n"
                 f"(share of outputs per bin; saturated = share with {rule})", fontsize=11)
    fig.tight_layout()
    return fig


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    # strings, so that config.build_config parses and checks them (one-line ConfigError)
    parser.add_argument("--epochs", help="training epochs to simulate (default: the config's, 20 from configs/demo.yaml)")
    parser.add_argument("--scale_min", help="scale at the start (default: the config's, 1.0)")
    parser.add_argument("--scale_max", help="scale at the end: a number, or one per code length such as "
                                            "16:10,32:12,64:15 (default: the config's for --bits; demo: 20 at 64 bits)")
    parser.add_argument("--schedule", help=f"one of {', '.join(SCALE_SCHEDULES)} (default: the config's, linear)")
    parser.add_argument("--bits", type=positive_int, default=64, help="code length (default 64)")
    parser.add_argument("--iters_per_epoch", type=positive_int, default=40,
                        help="training steps per epoch; only hashnet counts steps (default 40: about 5,000 "
                             "pairs in batches of 128)")
    parser.add_argument("--histograms", metavar="PATH",
                        help="draw a run's histograms.json (or its run folder) instead of training the toy model")
    parser.add_argument("--out_dir", default=".", help="where the two PNGs go (default: the current folder)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Print the simulation, write the two PNGs; returns their paths by name. Bad options or a bad
    --histograms file exit with status 2 and a one-line message."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # hash_lens too, so that a per-code-length scale_max is checked for --bits
    settings = {"epoch": args.epochs, "scale_min": args.scale_min, "scale_max": args.scale_max,
                "scale_schedule": args.schedule, "hash_lens": str(args.bits)}
    flags = [token for key, value in settings.items() if value is not None for token in (f"--{key}", value)]
    try:
        cfg = build_config(flags)
        hist = read_histogram_file(args.histograms) if args.histograms else None
    except (ConfigError, PlotInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    schedule = ScaleSchedule(cfg, args.iters_per_epoch, bits=args.bits)
    print_simulation(cfg, schedule, args.bits)
    if hist is None:
        hist = toy_histograms(cfg, args.bits)
        source = (f"toy model, {args.bits} bits, {cfg.epoch} epochs, {cfg.scale_schedule} "
                  f"{schedule.scale_min:g} → {schedule.scale_max:g}, held-out rows")
    else:
        source = str(args.histograms)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"visualization": out_dir / "progressive_hash_visualization.png",
               "scale_comparison": out_dir / "scale_comparison.png"}
    histogram_figure(hist, source).savefig(written["visualization"], dpi=plots.DPI, bbox_inches="tight")
    plots.plot_scale_comparison(written["scale_comparison"], epochs=cfg.epoch, iters_per_epoch=args.iters_per_epoch,
                                scale_min=schedule.scale_min, scale_max=schedule.scale_max)
    for path in written.values():
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
