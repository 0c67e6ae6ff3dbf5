"""The reference UCMFH code (XinyuXia97/UCMFH) and this project's UCMFH-compatible mode, side by
side on the same data and seeds: are their mAP@50 scores the same within seed noise?

The reference is run unmodified, from a checkout the user names, in a subprocess per run (its
global state, its `./checkpoints/` folder and its DataLoader workers stay there). The subprocess
(`reference_child`, sent as source code to `python -c`) puts the checkout first on sys.path,
works in a temporary folder holding `checkpoints/hash/` and `checkpoints/real/`, seeds torch and
numpy, points the data path the reference hard-codes (whatever folder a checkout names) at the
dataset's folder (a module-level `open` in its load_dataset module that redirects train.pkl,
query.pkl and retrieval.pkl by file name; no file of the checkout is changed), trains the hash stage of
its Solver on the CPU under the dataset's own name for mirflickr, nus-wide and mscoco (the only
names it builds LR schedulers for, each its own, as the dataset configs here) and under `mirflickr`
for any other data (x1.2 at steps 30 and 80, also this project's default schedule),
and prints its scores and seconds per epoch (its trainhash calls, timed) as one JSON line. The
compatible side is `train.main` with `--preset ucmfh --device cpu`, in this process.

Runs go to <out>/<side>/<bits>bit/seed<k>/results.json (side: reference or compatible); a run
whose results.json exists is skipped. The summary compares, per code length, the two sides'
mean I2T and T2I over seeds with Welch's t-test (scipy.stats.ttest_ind, equal_var=False).
The command line is scripts/compare_reference.py.
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm import tqdm

from config import ConfigError, build_config
from data import canonical_dataset_name, load_dataset
from runio.atomic import atomic_write_json, atomic_write_text
from runio.tables import format_table, markdown_table
from study.summary import mean_std
from study.workers import torch_threads

SIDES = ("reference", "compatible")
REFERENCE_FILES = ("ICMR.py", "load_dataset.py")
SPLIT_FILES = ("train.pkl", "query.pkl", "retrieval.pkl")   # what load_dataset.py opens, from a hard-coded
                                                    # folder (the release's: /home/summer/data/Dataset/<name>/)
REFERENCE_SCHEDULED = ("mirflickr", "nus-wide", "mscoco")   # the names its Solver builds LR schedulers for
REFERENCE_NAME = "mirflickr"                        # the name it runs under for any other dataset
FEATURE_DIM = 512                                   # the reference reads 512-d image and text features
BATCH = 128                                         # its batch size; drop_last keeps whole batches only
RESULT_MARK = "COMPARE_REFERENCE_RESULT "           # prefix of the child's result line
ALPHA = 0.05                                        # "same mean" unless Welch's p is below this
COMPATIBLE_FLAGS = ["--preset", "ucmfh", "--device", "cpu"]


class CompareError(Exception):
    """A bad checkout, dataset or output folder: the message is one line for the user."""


class RunFailed(CompareError):
    """A run that failed: the message is one line naming its log."""


def reference_dataset_name(dataset: str) -> str:
    """The dataset name the reference runs under: the dataset's own where the reference knows its LR
    schedule, so both sides train with the same one; REFERENCE_NAME (the defaults' schedule) otherwise."""
    return dataset if dataset in REFERENCE_SCHEDULED else REFERENCE_NAME


def check_reference(path) -> Path:
    """The checkout folder, after checking it holds the files the runner uses."""
    folder = Path(path).resolve()
    missing = [name for name in REFERENCE_FILES if not (folder / name).is_file()]
    if missing:
        raise CompareError(f"--reference {path}: not a checkout of XinyuXia97/UCMFH "
                           f"({' and '.join(missing)} not found in it)")
    loader = folder / "load_dataset.py"
    if not _opens_pickles(loader.read_text(errors="replace")):
        raise CompareError(f"--reference {path}: {loader} calls no open() on a .pkl file, so its data cannot "
                           f"be redirected (expected it to open {', '.join(SPLIT_FILES[:-1])} and "
                           f"{SPLIT_FILES[-1]} with the builtin open, from any folder)")
    return folder


def _opens_pickles(source: str) -> bool:
    """Whether a load_dataset.py calls the builtin open by name (which the child can replace)
    and names a .pkl file; its folder may be any (the child redirects by file name)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    calls_open = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open"
                     for n in nodes)
    return calls_open and any(isinstance(n, ast.Constant) and isinstance(n.value, str) and ".pkl" in n.value
                              for n in nodes)


def check_dataset(name: str, data_root) -> Path:
    """The dataset's folder, after loading it (the demo set is generated on first use) and checking
    that the reference can read it: train/query/retrieval.pkl of 512-d features, at least one
    batch of 128 in each split."""
    data = load_dataset(name, data_root)      # DataError: a one-line message
    folder = Path(data_root) / canonical_dataset_name(name)
    missing = [f"{split}.pkl" for split in ("train", "query", "retrieval") if not (folder / f"{split}.pkl").is_file()]
    if missing:
        raise CompareError(f"dataset {name}: the reference reads UCMFH's pickles only, and "
                           f"{', '.join(missing)} are not in {folder}/")
    if (data.image_dim, data.text_dim) != (FEATURE_DIM, FEATURE_DIM):
        raise CompareError(f"dataset {name}: the reference needs {FEATURE_DIM}-d image and text features, "
                           f"these are {data.image_dim}-d and {data.text_dim}-d")
    short = [s for s in ("train", "query", "retrieval") if len(getattr(data, s)) < BATCH]
    if short:
        raise CompareError(f"dataset {name}: the reference drops incomplete batches of {BATCH}, and "
                           f"{', '.join(short)} have fewer items than that")
    return folder.resolve()


def reference_child(spec_json: str) -> None:
    """Runs in the subprocess: one training of the reference's hash stage (see the module docstring).
    Imports only the reference and third-party packages, so this project's modules of the same
    names (ICMR, model, evaluate) never shadow the reference's."""
    import argparse
    import builtins
    import json
    import os
    import sys
    import time

    import numpy as np
    import torch

    spec = json.loads(spec_json)
    sys.path.insert(0, spec["reference"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    for stage in ("hash", "real"):                      # it saves its checkpoint under ./checkpoints/
        os.makedirs(os.path.join("checkpoints", stage), exist_ok=True)
    import load_dataset as loader                        # the reference's module

    def redirected_open(file, *args, **kwargs):
        # by file name, whatever folder this checkout's loader was pointed at
        if isinstance(file, (str, os.PathLike)) and os.path.basename(os.fspath(file)) in spec["split_files"]:
            file = os.path.join(spec["data"], os.path.basename(os.fspath(file)))
        return builtins.open(file, *args, **kwargs)

    loader.open = redirected_open                       # found before builtins.open by its functions
    torch.manual_seed(spec["seed"])
    np.random.seed(spec["seed"])
    from ICMR import Solver

    solver = Solver(argparse.Namespace(dataset=spec["name"], epoch=spec["epoch"], hash_lens=spec["bits"],
                                       device="cpu", task=1))
    epoch_seconds, train_epoch = [], solver.trainhash

    def timed_epoch():
        start = time.perf_counter()
        loss = train_epoch()
        epoch_seconds.append(time.perf_counter() - start)
        return loss

    solver.trainhash = timed_epoch
    _, i2t, t2i = solver.train()
    print(spec["mark"] + json.dumps({"i2t_map": float(i2t), "t2i_map": float(t2i),
                                     "epoch_seconds": epoch_seconds}), flush=True)


def run_reference(reference: Path, data_folder: Path, bits: int, seed: int, epoch: int, threads, folder: Path,
                  dataset: str) -> dict:
    """One reference run in a subprocess, its output in <folder>/reference.log; writes and returns
    its results.json. CompareError (naming the log) when it fails."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "reference.log"
    spec = {"reference": str(reference), "data": str(data_folder), "split_files": SPLIT_FILES,
            "name": reference_dataset_name(dataset), "bits": bits, "seed": seed, "epoch": epoch, "threads": threads,
            "mark": RESULT_MARK}
    code = inspect.getsource(reference_child) + "\nimport sys\nreference_child(sys.argv[1])\n"
    with tempfile.TemporaryDirectory(prefix="ucmfh_reference_") as work, open(log_path, "w") as log:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        raise RunFailed(f"the reference run ({bits} bits, seed {seed}) failed "
                           f"({f'exit status {done.returncode}' if done.returncode else 'no result line'}): "
                           f"see {log_path}")
    scores = json.loads(lines[-1][len(RESULT_MARK):])
    result = {"side": "reference", "dataset": dataset, "bits": bits, "seed": seed, "epoch": epoch,
              "i2t_map": scores["i2t_map"], "t2i_map": scores["t2i_map"],
              "train_seconds": float(sum(scores["epoch_seconds"])), "epoch_seconds": scores["epoch_seconds"],
              "reference": str(reference)}
    atomic_write_json(folder / "results.json", result)
    return result


def compatible_argv(dataset: str, data_root, bits: int, seed: int, epoch: int, folder: Path) -> list:
    """train.py's argv for one run of the compatible mode (flags after the preset win over it)."""
    return [*COMPATIBLE_FLAGS, "--dataset", dataset, "--data_root", str(data_root), "--hash_lens", str(bits),
            "--seed", str(seed), "--epoch", str(epoch), "--output_dir", str(folder),
            "--checkpoint_dir", str(folder / "checkpoints"), "--save_checkpoint", "false", "--eval_every", "0"]


def run_compatible(dataset: str, data_root, bits: int, seed: int, epoch: int, threads, folder: Path) -> dict:
    """One training of this project in UCMFH-compatible mode, its output in <folder>/train.log
    (train.py writes results.json there, and no checkpoint: 0.2 GB at UCMFH's size, never read).
    RunFailed (naming the log) when train.py exits."""
    import train

    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "train.log"
    try:
        with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
                torch_threads(threads):
            train.main(compatible_argv(dataset, data_root, bits, seed, epoch, folder))
    except SystemExit as err:   # train.py's one-line errors (bad option or data) exit
        raise RunFailed(f"the compatible run ({bits} bits, seed {seed}) failed (exit status {err.code}): "
                        f"see {log_path}") from None
    return read_result(folder, epoch, seed)


def plan(out: Path, bits_list, seeds) -> list:
    """(side, bits, seed, folder) for every run, the reference's first at each (bits, seed)."""
    return [(side, bits, seed, out / side / f"{bits}bit" / f"seed{seed}")
            for bits in bits_list for seed in seeds for side in SIDES]


def read_result(folder: Path, epoch: int, seed: int) -> dict | None:
    """A finished run's results.json, or None; CompareError when it trained another number of
    epochs or with another seed."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("epoch") != epoch:
        raise CompareError(f"{path}: a run of {result.get('epoch')} epochs, not {epoch}; "
                           f"pass --epoch {result.get('epoch')} or another --out")
    if result.get("seed") != seed:
        raise CompareError(f"{path}: a run with seed {result.get('seed')}, not {seed} "
                           f"(did a preset override --seed?); delete it or pass another --out")
    return result


def welch_p(a, b):
    """Two-sided p-value of Welch's t-test for equal means (None with fewer than two values a side
    or no spread at all)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if np.isnan(p) else p


def summarize(results: list, bits_list) -> list:
    """One row per code length: each side's mean ± std and values over seeds, the difference
    (compatible - reference), Welch's p and verdict per direction, and seconds per epoch."""
    rows = []
    for bits in bits_list:
        side = {s: sorted((r for r in results if r["side"] == s and r["bits"] == bits), key=lambda r: r["seed"])
                for s in SIDES}
        row = {"bits": bits, "seeds": [r["seed"] for r in side["reference"]]}
        for metric in ("i2t_map", "t2i_map"):
            values = {s: [r[metric] for r in side[s]] for s in SIDES}
            for s in SIDES:
                row[f"{s}_{metric}"] = values[s]
                row[f"{s}_{metric}_mean"], row[f"{s}_{metric}_std"] = mean_std(values[s])
            row[f"delta_{metric}"] = row[f"compatible_{metric}_mean"] - row[f"reference_{metric}_mean"]
            row[f"p_{metric}"] = welch_p(values["reference"], values["compatible"])
            row[f"same_{metric}"] = None if row[f"p_{metric}"] is None else row[f"p_{metric}"] >= ALPHA
        for s in SIDES:
            row[f"{s}_seconds_per_epoch"] = sum(r["train_seconds"] for r in side[s]) / sum(r["epoch"] for r in side[s])
        rows.append(row)
    return rows


def _mean_std(row, key):
    std = row[f"{key}_std"]
    return f"{row[f'{key}_mean']:.4f}" + ("" if std is None else f" ± {std:.4f}")


def _same(row, metric):
    return {None: "-", True: "yes", False: "NO"}[row[f"same_{metric}"]]


COLUMNS = [("bits", "bits"),
           ("reference I2T", "ref_i2t"), ("compatible I2T", "cmp_i2t"), ("Δ I2T", "d_i2t"), ("p", "p_i2t"),
           ("same", "s_i2t"),
           ("reference T2I", "ref_t2i"), ("compatible T2I", "cmp_t2i"), ("Δ T2I", "d_t2i"), ("p", "p_t2i"),
           ("same", "s_t2i"),
           ("reference s/epoch", "ref_s"), ("compatible s/epoch", "cmp_s")]


def _display(row) -> dict:
    p = lambda m: "-" if row[f"p_{m}"] is None else f"{row[f'p_{m}']:.3f}"  # noqa: E731
    cells = {"bits": str(row["bits"]), "ref_s": f"{row['reference_seconds_per_epoch']:.1f}",
             "cmp_s": f"{row['compatible_seconds_per_epoch']:.1f}"}
    for m, short in (("i2t_map", "i2t"), ("t2i_map", "t2i")):
        cells.update({f"ref_{short}": _mean_std(row, f"reference_{m}"), f"cmp_{short}": _mean_std(row, f"compatible_{m}"),
                      f"d_{short}": f"{row[f'delta_{m}']:+.4f}", f"p_{short}": p(m), f"s_{short}": _same(row, m)})
    return cells


def console_table(rows: list) -> str:
    return format_table([_display(r) for r in rows], [(h, k, "{}") for h, k in COLUMNS])


def to_markdown(rows: list, header: dict) -> str:
    lines = [f"# Reference UCMFH vs UCMFH-compatible mode: {header['dataset']}", "",
             f"mAP@50 (paired), {header['epoch']} epochs, seeds {' '.join(map(str, header['seeds']))}, "
             f"reference checkout `{header['reference']}`, compatible mode `train.py {' '.join(COMPATIBLE_FLAGS)}`.",
             "Mean ± sample std over seeds; Δ = compatible − reference; p: Welch's t-test for the same mean; "
             f"same: p ≥ {ALPHA} (with few seeds the test has little power: `yes` means no difference "
             "was detected, not that none exists).", "",
             markdown_table([h for h, _ in COLUMNS], [[_display(r)[k] for _, k in COLUMNS] for r in rows])]
    return "\n".join(lines) + "\n"


def compare(reference, dataset: str, data_root, bits_list, seeds, epoch: int, out: Path, threads=None) -> list:
    """Run every missing run of both sides, then write summary.json and summary.md to `out`, print
    the table and return its rows. CompareError (one line) for a bad checkout or dataset, RunFailed
    for a run that fails."""
    reference = check_reference(reference)
    data_folder = check_dataset(dataset, data_root)
    try:   # the compatible mode's flags, checked before hours of runs
        build_config(compatible_argv(dataset, data_root, bits_list[0], seeds[0], epoch, out))
    except ConfigError as err:
        raise CompareError(f"train.py {' '.join(COMPATIBLE_FLAGS)}: {err}") from None
    runs = plan(out, bits_list, seeds)
    results = {folder: read_result(folder, epoch, seed) for _, _, seed, folder in runs}
    todo = [run for run in runs if results[run[3]] is None]
    print(f"{len(runs)} runs ({len(bits_list)} code lengths x {len(seeds)} seeds x 2 sides), "
          f"{len(runs) - len(todo)} already done, {len(todo)} to run -> {out}")
    for side, bits, seed, folder in tqdm(todo, desc="runs", disable=None):
        if side == "reference":
            results[folder] = run_reference(reference, data_folder, bits, seed, epoch, threads, folder, dataset)
        else:
            results[folder] = run_compatible(dataset, data_root, bits, seed, epoch, threads, folder)
    found = [{**results[folder], "side": side} for side, _, _, folder in runs]
    rows = summarize(found, bits_list)
    header = {"dataset": dataset, "epoch": epoch, "seeds": list(seeds), "bits": list(bits_list),
              "reference": str(reference), "compatible_flags": COMPATIBLE_FLAGS, "alpha": ALPHA}
    atomic_write_json(out / "summary.json", {**header, "rows": rows})
    atomic_write_text(out / "summary.md", to_markdown(rows, header))
    print(console_table(rows))
    print(f"\nsummary: {out / 'summary.md'} and {out / 'summary.json'}")
    return rows
