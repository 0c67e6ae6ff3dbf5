"""Seconds per hash-training epoch, the setting of UCMFH's speed comparison.

    python scripts/bench_epoch.py                        # 4,992 x 512-d pairs, batch 128, 64 bits, 3 epochs
    python scripts/bench_epoch.py --reference /tmp/ucmfh # and the reference code on the same pairs
    python scripts/bench_epoch.py --train_precision bf16 # the training passes' matrix products in bfloat16

Synthetic features (the timing does not depend on their values), the default
settings; with the default `--modality_dropout auto`, the epochs of each of its
candidates (a run trains with one of them; the slowest is compared with the
reference), and the selection's extra time worked out from them; the epochs of
the default unimodal branch are timed after the paired ones; with --late_temperature auto, the
temperature fork's dropped epochs are worked out from them too, and so are balanced_neighbours
auto's (the default). With --reference DIR (a checkout of
XinyuXia97/UCMFH, run unmodified in a subprocess by study.reference) the
reference's hash-training epochs are timed on the same pairs and CPU, and the
ratio is printed; without it the ratio uses the reference's fastest measured time
on this project's 2-core CPU (REFERENCE_SECONDS). The target is at least 6x.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import AUTO, ConfigError, build_config  # noqa: E402
from data import DatasetSplits, FeatureSplit  # noqa: E402
from ICMR import Solver  # noqa: E402
from selection.branch_scale import branch_mode  # noqa: E402
from selection.choose import candidate_epochs  # noqa: E402
from selection.late_temperature import candidates as late_candidates, late_epochs  # noqa: E402
from selection.paired_fork import fork_epochs, neighbour_fork_end, no_neighbour_fork  # noqa: E402
from runio.logs import add_log_flags, info, setup_logging  # noqa: E402

# the bench's flags that are train.py settings, passed on to the config when given (else its defaults)
CONFIG_FLAGS = ("modality_dropout", "train_precision", "select_fork", "late_temperature", "infonce_mask_neighbours",
                "balanced_neighbours")
REFERENCE_SECONDS = 40.8  # reference UCMFH code, same setting, this 2-core CPU: its fastest (29 Nov 2026; 57.8 s 4 Dec)
TARGET = 6.0


def synthetic_split(rows, rng, dim=512, labels=24):
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    label = (rng.random((rows, labels)) < 0.1).astype(np.float32)
    label[np.arange(rows), rng.integers(0, labels, rows)] = 1
    return FeatureSplit(unit(rng.standard_normal((rows, dim))), unit(rng.standard_normal((rows, dim))),
                        label, "synthetic")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--pairs", type=int, default=4992)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modality_dropout", default=None,
                        help="share of pairs encoded one side at a time (default: the config default; auto: "
                             "each of its candidates, and the selection's extra time)")
    parser.add_argument("--train_precision", default=None, help="fp32 or bf16 (default: the config default)")
    parser.add_argument("--select_fork", default=None,
                        help="auto as a fork of this share of the epochs: its extra time too")
    parser.add_argument("--late_temperature", default=None,
                        help="auto: the temperature fork's extra time too (its dropped candidates' epochs)")
    parser.add_argument("--infonce_mask_neighbours", default=None,
                        help="true or false: InfoNCE without the neighbours' negatives (default: the config default)")
    parser.add_argument("--balanced_neighbours", default=None,
                        help="where the balanced loss's neighbours are found (default: the config default)")
    parser.add_argument("--reference", help="a checkout of the reference UCMFH code: time it on the same pairs")
    add_log_flags(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    rng = np.random.default_rng(0)
    data = DatasetSplits("synthetic", synthetic_split(args.pairs, rng), synthetic_split(8, rng),
                         synthetic_split(8, rng))
    given = [token for key in CONFIG_FLAGS if getattr(args, key) for token in (f"--{key}", getattr(args, key))]
    try:   # a bad value of any of them: the config's one-line error, no traceback
        cfg = build_config(["--dataset", "synthetic", "--batch_size", str(args.batch_size), "--epoch", "100",
                            "--device", args.device, "--output_dir", "/tmp/bench_epoch", *given])
    except ConfigError as err:
        parser.error(str(err))
    # auto trains with one of its candidates: time each (the slowest is the default epoch's bound)
    rates = cfg.select_candidates if cfg.modality_dropout == AUTO else [cfg.modality_dropout]
    medians = {}
    for rate in rates:
        solver = Solver(dataclasses.replace(cfg, modality_dropout=rate), bits=args.bits, data=data,
                        log=lambda *_: None)
        info(f"modality_dropout {rate:g}:")
        times = timed_epochs(solver, lambda epoch: solver.trainhash(solver.schedule.at(epoch)), args.epochs, "epoch")
        medians[rate] = statistics.median(times)
    median = max(medians.values())
    if solver.branch is not None:   # the unimodal branch's epochs (config unimodal_epochs), after the paired ones
        branch_times = timed_epochs(solver, lambda _: solver.trainbranch(branch_mode(solver)), args.epochs,
                                    "unimodal branch epoch")
    info(f"\n{args.pairs} pairs x {data.image_dim}-d, batch {args.batch_size}, {args.bits} bits, "
         f"modality_dropout {cfg.modality_dropout}, train_precision {cfg.train_precision}, "
         f"infonce_mask_neighbours {cfg.infonce_mask_neighbours}, balanced_neighbours {cfg.balanced_neighbours}, "
         f"{torch.get_num_threads()} threads, {args.device}")
    for rate, seconds in medians.items():
        info(f"seconds per epoch at modality_dropout {rate:g} (median of {args.epochs}): {seconds:.2f}")
    if solver.branch is not None:
        info(f"seconds per unimodal-branch epoch (median of {args.epochs}; the defaults add "
             f"{cfg.unimodal_epochs} after the paired ones): {statistics.median(branch_times):.2f}")
    total = cfg.epoch * median + cfg.unimodal_epochs * (statistics.median(branch_times) if solver.branch else 0)
    extra = 0.0
    if cfg.modality_dropout == AUTO:
        epochs = candidate_epochs(cfg, rates)
        extra = sum(epochs * (1 - cfg.select_holdout) * seconds for seconds in medians.values())
        info(f"auto's selection for a {cfg.epoch}-epoch run: {len(rates)} candidates x {epochs} epochs on "
             f"{1 - cfg.select_holdout:.0%} of the pairs = about {extra:.0f} s (from the epoch times above), "
             f"{extra / total:.2f}x the training's {total:.0f} s at the slowest candidate")
        if cfg.select_fork:   # the kept candidate's fork epochs are the run's own: the dropped ones' are extra
            share = 1 - cfg.select_holdout     # of the pairs the candidates train on (all with select_holdout 0)
            dropped = [fork_epochs(cfg) * share * (sum(medians.values()) - seconds) for seconds in medians.values()]
            info(f"as a fork of {fork_epochs(cfg)} epochs (select_fork): the dropped candidates' epochs = about "
                 f"{min(dropped):.0f} to {max(dropped):.0f} s, {min(dropped) / total:.2f}x to "
                 f"{max(dropped) / total:.2f}x (their scoring not counted)")
    if cfg.late_temperature == AUTO:   # the fork's other candidates train every epoch after the switch again
        others, late = len(late_candidates(cfg)) - 1, late_epochs(cfg)
        dropped = others * late * min(medians.values())
        info(f"the temperature fork (late_temperature auto) of a {cfg.epoch}-epoch run: "
             f"{others} dropped candidates x {late} epochs = at least {dropped:.0f} s (at the "
             f"cheapest epoch above), {dropped / total:.2f}x the training; the run with every choice: at least "
             f"{1 + (extra + dropped) / total:.2f}x")
    if cfg.balanced_neighbours == AUTO and not no_neighbour_fork(cfg):   # its second candidate's epochs again
        low, high = (neighbour_fork_end(cfg) * seconds for seconds in (min(medians.values()), max(medians.values())))
        info(f"the neighbour fork (balanced_neighbours auto) of a {cfg.epoch}-epoch run: 1 dropped candidate x "
             f"{neighbour_fork_end(cfg)} epochs = about {low:.0f} to {high:.0f} s (the epochs above), {low / total:.2f}x "
             f"to {high / total:.2f}x the training (its scoring not counted); the run with every choice: about "
             f"{1 + (extra + low) / total:.2f}x to {1 + (extra + high) / total:.2f}x")
    reference, source = REFERENCE_SECONDS, "fastest measured"
    if args.reference:
        reference, source = time_reference(args.reference, data, args.bits, args.epochs), "measured now"
    info(f"reference UCMFH code ({source}): {reference:.1f} s -> {reference / median:.1f}x faster "
         f"(target: at least {TARGET:g}x, i.e. <= {reference / TARGET:.1f} s)")


def timed_epochs(solver, run_epoch, epochs: int, label: str) -> list:
    """Seconds of each of `epochs` calls run_epoch(epoch), printed as they come."""
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        run_epoch(epoch)
        if solver.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        info(f"{label} {epoch + 1}: {times[-1]:.2f} s")
    return times


def time_reference(checkout, data, bits, epochs) -> float:
    """Median seconds of the reference's hash-training epochs on the same training pairs (written
    as UCMFH pickles to a temporary folder), run by study.reference in a subprocess."""
    import pickle
    import tempfile

    from study.reference import check_reference, run_reference

    with tempfile.TemporaryDirectory(prefix="bench_reference_") as work:
        folder = Path(work) / "data"
        folder.mkdir()
        for name, split in (("train", data.train), ("query", data.train), ("retrieval", data.train)):
            rows = slice(None) if name == "train" else slice(0, 128)   # its scoring is not timed
            with open(folder / f"{name}.pkl", "wb") as f:
                pickle.dump({"image": split.image[rows], "text": split.text[rows],
                             "label": split.label[rows].astype(np.int64)}, f)
        result = run_reference(check_reference(checkout), folder, bits, 0, epochs, None, Path(work) / "run",
                               "synthetic")
    for epoch, seconds in enumerate(result["epoch_seconds"], 1):
        info(f"reference epoch {epoch}: {seconds:.2f} s")
    return statistics.median(result["epoch_seconds"])


if __name__ == "__main__":
    main()
