"""Readers of the files the figures draw: a run folder's config.yaml, metrics.jsonl, results.json,
histograms.json and curves.json (docs/training.md, "What a run writes") and an ablation's summary.csv.

Each reader returns plain Python data checked for the keys the figures use. A missing or malformed
file raises PlotInputError, whose message is one line naming the file, so the command line can report
it without a traceback.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml

from runio.metrics_log import read_metrics_file
from study.summary import method_label  # the ablation's method names: plain, progressive-linear, ...

DIRECTIONS = ("i2t", "t2i")  # the retrieval directions, as curves.json and summary.csv key them


class PlotInputError(ValueError):
    """A missing or malformed input file; the message names the file."""


def _read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PlotInputError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PlotInputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise PlotInputError(f"{path}: expected a JSON object")
    return data


def read_metrics(run) -> list:
    """The records of <run>/metrics.jsonl (read by runio/metrics_log.py, which leaves out a last line
    torn by a kill), sorted by epoch."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise PlotInputError(f"{path}: file not found")
    try:
        records = read_metrics_file(path)
    except ValueError as err:
        raise PlotInputError(str(err)) from None
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), (int, float)):
            raise PlotInputError(f"{path}: record {number} has no numeric 'epoch'")
    if not records:
        raise PlotInputError(f"{path}: no records")
    return sorted(records, key=lambda r: r["epoch"])


def _run_settings(run: Path) -> dict:
    """results.json, else config.yaml (a run still training), else nothing."""
    if (run / "results.json").is_file():
        return _read_json(run / "results.json")
    if not (run / "config.yaml").is_file():
        return {}
    try:
        info = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except yaml.YAMLError as err:
        raise PlotInputError(f"{run / 'config.yaml'}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(info, dict):
        raise PlotInputError(f"{run / 'config.yaml'}: expected a mapping")
    return info


def describe_run(run) -> dict:
    """dataset, bits, seed, method (summary.method_label: plain, progressive-linear, ...), map_k, folder
    and label (e.g. "demo 64-bit plain seed 0"; the folder name when nothing is known)."""
    run = Path(run)
    info = _run_settings(run)
    bits = info.get("bits", info.get("hash_lens"))
    if isinstance(bits, list):  # config.yaml lists the code lengths; a single one names the run
        bits = bits[0] if len(bits) == 1 else None
    method = method_label(info) if "use_progressive_hash" in info or info.get("method") else None
    desc = {"dataset": info.get("dataset"), "bits": bits, "seed": info.get("seed"), "method": method,
            "map_k": info.get("map_k"), "folder": run.name}
    parts = [desc["dataset"] and str(desc["dataset"]), bits and f"{bits}-bit", method,
             desc["seed"] is not None and f"seed {desc['seed']}"]
    desc["label"] = " ".join(p for p in parts if p) or run.name
    return desc


def read_histograms(run) -> dict:
    """<run>/histograms.json: bin_edges (n + 1) and snapshots, each with epoch (epochs completed),
    progress, scale and n counts per modality (image, text)."""
    path = Path(run) / "histograms.json"
    data = _read_json(path)
    edges, snaps = data.get("bin_edges"), data.get("snapshots")
    if not isinstance(edges, list) or len(edges) < 2 or not isinstance(snaps, list) or not snaps:
        raise PlotInputError(f"{path}: needs 'bin_edges' (list) and a non-empty 'snapshots' list")
    for i, snap in enumerate(snaps):
        for key in ("epoch", "progress", "scale", "image", "text"):
            if not isinstance(snap, dict) or key not in snap:
                raise PlotInputError(f"{path}: snapshot {i} has no '{key}'")
        if any(not isinstance(snap[m], list) or len(snap[m]) != len(edges) - 1 for m in ("image", "text")):
            raise PlotInputError(f"{path}: snapshot {i} needs {len(edges) - 1} counts per modality")
    return data


def read_curves(run) -> dict:
    """<run>/curves.json: per direction, pr (radius, precision, recall) and pk (k, precision) lists of
    one length each; a precision may be null (nothing retrieved within that radius)."""
    path = Path(run) / "curves.json"
    data = _read_json(path)
    for direction in DIRECTIONS:
        block = data.get(direction)
        if not isinstance(block, dict):
            raise PlotInputError(f"{path}: no '{direction}' object")
        for part, keys in (("pr", ("radius", "precision", "recall")), ("pk", ("k", "precision"))):
            sub = block.get(part)
            if not isinstance(sub, dict) or any(not isinstance(sub.get(k), list) for k in keys):
                raise PlotInputError(f"{path}: '{direction}.{part}' needs lists {', '.join(keys)}")
            if len({len(sub[k]) for k in keys}) != 1:
                raise PlotInputError(f"{path}: '{direction}.{part}' lists differ in length")
    return data


def read_summary(summary_csv, metric: str = "map") -> list:
    """Rows of an ablation summary.csv with numeric bits, means and stds (NaN when empty); rows
    without any score of `metric` yet are left out."""
    path = Path(summary_csv)
    if not path.is_file():
        raise PlotInputError(f"{path}: file not found")
    scores = [f"{d}_{metric}_{s}" for d in DIRECTIONS for s in ("mean", "std")]
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ["dataset", "bits", "method"] + scores if c not in (reader.fieldnames or [])]
        if missing:
            raise PlotInputError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = [_summary_row(path, number, row, scores) for number, row in enumerate(reader, 2)]
    rows = [r for r in rows if not all(math.isnan(r[f"{d}_{metric}_mean"]) for d in DIRECTIONS)]
    if not rows:
        raise PlotInputError(f"{path}: no rows with scores")
    return rows


def _summary_row(path, number, row, scores) -> dict:
    try:
        parsed = {"dataset": row["dataset"], "method": row["method"], "bits": int(float(row["bits"])),
                  "map_k": (row.get("map_k") or "").strip()}
        for column in scores:
            text = (row[column] or "").strip()
            parsed[column] = float(text) if text else math.nan
    except (TypeError, ValueError):
        raise PlotInputError(f"{path}: line {number} has a non-numeric value") from None
    return parsed
