"""The ablation grid: train every cell of datasets x code lengths x settings x seeds, then summarise.

A run goes to <out>/<dataset>/<bits>bit/<label>/seed<k>/ (with train.log, grid.json naming
its setting and the setting it is compared with, histograms.json, codes.npz and curves.json);
a run whose results.json exists is skipped, so an interrupted grid resumes where it stopped and
a finished one does no work. A run whose trained model would equal an earlier run's (same
config.CHECKPOINT_KEYS values: it differs only in how it is scored) re-scores that run's
checkpoint instead of training. The command line is scripts/ablation.py.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil

import yaml

from config import CHECKPOINT_KEYS, ConfigError, build_config, to_dict
from data import load_dataset
from metrics.curves import write_curves
from runio.atomic import atomic_write_json
from runio.logs import info, logging_kept
from study.claims import write_claims
from study.ladder import rung_settings
from study.summary import console_table, method_label, write_summary
from study.workers import run_in_processes, torch_threads


def _method_settings(args) -> list:
    """(label, settings, label compared with) of the progressive x schedule x balanced axes."""
    out = []
    # no --balanced: train.py's default, unset (a fixed False here once overrode the default when it turned on)
    for balanced in ([None] if args.balanced is None else [b == "on" for b in args.balanced]):
        loss = {} if balanced is None else {"balanced_loss": balanced}
        if "off" in args.progressive:
            out.append({"use_progressive_hash": False, **loss})
        if "on" in args.progressive:
            out += [{"use_progressive_hash": True, "scale_schedule": schedule, **loss,
                     **({"scale_max": scale_max} if scale_max else {})}   # None: the config's (per length)
                    for schedule in args.schedules for scale_max in args.scale_max]
    return [(method_label(s), s, None if not s["use_progressive_hash"] else method_label(
        {"use_progressive_hash": False, "balanced_loss": s.get("balanced_loss")})) for s in out]


def settings(args) -> list:
    """(label, settings, label compared with or None) of every setting of the grid: the ladder's
    rungs (args.ladder) or the method axes, crossed with every --vary axis (KEY=V1,V2); a varied
    setting is compared with its baseline at the same varied values."""
    if getattr(args, "zoo", False):   # the defaults, and each --vary value as a one-key change of them
        return [("default", {}, None)] + [(f"{key}={value}", {key: value}, "default")
                                           for key, values in args.vary for value in values]
    base = rung_settings(args.ladder) if args.ladder else _method_settings(args)
    axes = [[(key, value) for value in values] for key, values in args.vary]
    out = []
    for combo in itertools.product(*axes):
        suffix = "".join(f" {key}={value}" for key, value in combo)
        for label, setting, baseline in base:
            out.append((label + suffix, {**setting, **dict(combo)}, baseline and baseline + suffix))
    return out


def data_root_of(args, dataset: str) -> str:
    """The data root of `dataset`: --wiki_root for wiki in a zoo grid, else --data_root (--wiki_root has a
    default, so outside a zoo grid it must not win: it did, and `--dataset wiki --data_root X` ignored X)."""
    if dataset == "wiki" and getattr(args, "zoo", False) and getattr(args, "wiki_root", None):
        return args.wiki_root
    return args.data_root


def report_roots(args) -> dict:
    """{set: its data root} for the zoo report: every set with a folder in --out, not only this call's
    --dataset (a grid added to a folder with wiki from an earlier call read wiki from data/ and failed)."""
    found = {path.name for path in args.out.iterdir() if path.is_dir()} if args.out.is_dir() else set()
    return {dataset: data_root_of(args, dataset) for dataset in sorted(found | set(args.dataset))}


def grid(args) -> list:
    """(run folder, train.py argv or None for CCA, dataset, bits, grid.json record) for every run."""
    runs = []
    for dataset in args.dataset:
        for bits in args.bits:
            if args.cca:
                runs.append((args.out / dataset / f"{bits}bit" / "cca", None, dataset, bits, None))
            for order, (label, setting, baseline) in enumerate(settings(args)):
                flags = [f"--{key}={value}" for key, value in setting.items()]
                for seed in range(args.seeds):
                    folder = args.out / dataset / f"{bits}bit" / label.replace(" ", "_") / f"seed{seed}"
                    data_root = data_root_of(args, dataset)
                    argv = ["--dataset", dataset, "--data_root", data_root, "--hash_lens", str(bits),
                            *getattr(args, "grid_flags", []), *flags, "--seed", str(seed),   # later flags win
                            "--output_dir", str(folder),
                            "--checkpoint_dir", str(folder / "checkpoints"), "--save_every", "0",
                            "--record_histograms", "true", "--save_codes", "true", *args.train_flags]
                    runs.append((folder, argv, dataset, bits, {"method": label, "baseline": baseline,
                                                                "order": order, "data_root": data_root}))
    return runs


def check_done_runs(runs) -> None:
    """ConfigError (one line, naming the run and the setting) where a run already done in the grid's
    folder trained with a setting (one that decides the model) other than its command line now asks:
    resumed by another version or other flags, the grid would compare unlike runs."""
    for folder, argv, *_ in runs:
        saved = folder / "config.yaml"
        if argv is None or not (folder / "results.json").is_file() or not saved.is_file():
            continue
        done, asked = yaml.safe_load(saved.read_text()) or {}, to_dict(build_config(argv))
        for key in sorted(CHECKPOINT_KEYS & done.keys()):   # a key newer than the run: nothing to compare
            if done[key] != asked[key]:
                raise ConfigError(f"{folder}: done with {key} {done[key]!r}, but the grid now asks {asked[key]!r} "
                                 "(made by another version or with other flags: give a new --out, or the same flags)")


def share_trainings(runs) -> list:
    """The runs with, for each whose model equals an earlier run's (same checkpoint settings), the
    argv that re-scores that run's checkpoint (task test_hash) in place of training."""
    trained, out = {}, []
    for folder, argv, dataset, bits, record in runs:
        if argv is not None:
            cfg = to_dict(build_config(argv))
            key = (bits, repr(sorted((k, v) for k, v in cfg.items() if k in CHECKPOINT_KEYS)))
            source = trained.get(key)
            if source is not None and (source / "results.json").is_file() and not (source / "checkpoints").is_dir():
                source = None                  # its checkpoint was cleaned up: train this one afresh
            if source is not None:
                argv = [*argv, "--task", "test_hash", "--checkpoint_dir", str(source / "checkpoints")]
                record = {**record, "scored_checkpoint_of": str(source)}
            else:
                trained[key] = folder
        out.append((folder, argv, dataset, bits, record))
    return out


def run_one(folder, argv, dataset, bits, record, data_root, threads, keep_checkpoint=True):
    """One training, re-scoring or CCA baseline, its console output kept in <folder>/train.log.
    keep_checkpoint False (no other run re-scores it): the training writes no checkpoint (a zoo
    model's is 0.5 GB, about 3 s to write), and one left by an earlier version is deleted."""
    import train
    from study.baselines import cca_scores

    folder.mkdir(parents=True, exist_ok=True)
    if record:
        atomic_write_json(folder / "grid.json", record)
    with open(folder / "train.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
            torch_threads(threads):
        if argv is None:
            scores = cca_scores(load_dataset(dataset, data_root), bits)
            atomic_write_json(folder / "results.json", {"dataset": dataset, "bits": bits, "method": "cca",
                                                        "seed": 0, "train_seconds": 0.0, **scores})
        else:
            with logging_kept():             # train.main sets its own level (to log whole into train.log)
                train.main(argv if keep_checkpoint else [*argv, "--save_checkpoint", "false"])
    if not keep_checkpoint:
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return folder


def run_grid(args) -> list:
    """Train every missing run of the grid (args as scripts/ablation.py parses them), in --jobs
    processes, trainings first, then the re-scorings of their checkpoints; then curves.json where
    missing, summary.csv / summary.md, claims.md / claims.json (study.claims) and, unless
    args.no_plots, every figure of study.figures.plot_all. Returns the summary rows."""
    runs = share_trainings(grid(args))
    todo = [r for r in runs if not (r[0] / "results.json").is_file()]
    info(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} already done, {len(todo)} to run -> {args.out}")
    # spawned runs share the cores out; with one job the runs are made here, at this process's count
    threads = getattr(args, "threads", None) or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None)
    # a checkpoint is kept only while a re-scoring run needs it (or with --keep_checkpoints): a zoo
    # model's is 0.5 GB, and a grid that kept them all to its end filled the disk (docs/zoo.md)
    sources = {record["scored_checkpoint_of"] for *_, record in runs if record and "scored_checkpoint_of" in record}
    work = [(folder, argv, dataset, bits, record, data_root_of(args, dataset), threads,
             args.keep_checkpoints or str(folder) in sources) for folder, argv, dataset, bits, record in todo]
    rescoring = [w for w in work if w[4] and "scored_checkpoint_of" in w[4]]
    run_in_processes([w for w in work if w not in rescoring], args.jobs, run_one)
    run_in_processes(rescoring, args.jobs, run_one)
    if not args.keep_checkpoints:
        for folder, *_ in runs:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    for codes in sorted(args.out.rglob("codes.npz")):  # runs made before curves were written
        if not (codes.parent / "curves.json").is_file():
            write_curves(codes.parent)
    rows = write_summary(args.out)
    if getattr(args, "zoo", False):
        from study.zoo import write_zoo_report

        write_zoo_report(args.out, report_roots(args))
        info(f"zoo report: {args.out / 'zoo.md'} and {args.out / 'zoo.json'}")
    info(console_table(rows))
    write_claims(args.out)
    info(f"\nsummary: {args.out / 'summary.md'} and {args.out / 'summary.csv'}; the design note's claims "
         f"(loss spread, quantisation gap, saturation): {args.out / 'claims.md'}")
    if not args.no_plots and (todo or not (args.out / "map_vs_bits.png").is_file()):
        from study.figures import plot_all

        plot_all(args.out)
    return rows
