"""Summaries of many runs: mean ± std over seeds, and each setting against its baseline with a
paired test.

A cell is (dataset, bits, method). Its runs differ only in the seed. The
comparison pairs each run with the run of its baseline method (the `baseline`
of its grid.json, written by study.ablation: the previous ladder rung, or the
plain method at the same varied values; without one, `plain`, or
`plain+balanced` for a balanced method) of the same dataset, code length and
seed, and reports the mean difference and the two-sided paired t-test p-value
over seeds (scipy.stats.ttest_rel; empty with fewer than two pairs or when
every difference is the same). Validation scores (val_*, from --val_queries)
are summarised and compared the same way: choose settings on those.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from runio.atomic import atomic_write_text
from runio.tables import format_table, markdown_table

# paired protocol (UCMFH's), then unimodal (image alone / text alone); runs from before the
# unimodal protocol existed have no unimodal keys and show empty cells there
METRICS = ("i2t_map", "t2i_map", "i2t_map_all", "t2i_map_all", "unimodal_i2t_map", "unimodal_t2i_map",
           "val_i2t_map", "val_t2i_map", "val_unimodal_i2t_map", "val_unimodal_t2i_map")
COMPARED = ("i2t_map", "t2i_map", "val_i2t_map", "val_t2i_map", "unimodal_i2t_map", "unimodal_t2i_map")


def method_label(result: dict) -> str:
    """`plain`, `progressive-<schedule>` (+ `-smax<value>` off the default 10) (+ `+balanced`), or `cca`."""
    if result.get("method"):
        return result["method"]
    if not result.get("use_progressive_hash"):
        label = "plain"
    else:
        label = f"progressive-{result.get('scale_schedule', 'linear')}"
        scale_max = str(result.get("scale_max") or 10.0)             # a number, or a map like 16:10,64:15
        with contextlib.suppress(ValueError):
            scale_max = f"{float(scale_max):g}"
        if scale_max != "10":
            label += f"-smax{scale_max}"
    return label + ("+balanced" if result.get("balanced_loss") else "")


def collect_results(root) -> list:
    """Every results.json under `root`, each with its method label and folder."""
    found = []
    for path in sorted(Path(root).rglob("results.json")):
        result = json.loads(path.read_text())
        grid = path.parent / "grid.json"
        named = json.loads(grid.read_text()) if grid.is_file() else {"method": method_label(result)}
        found.append({**result, **named, "run_dir": str(path.parent)})
    return found


def mean_std(values) -> tuple:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def paired_test(a, b) -> tuple:
    """Mean of a - b and the two-sided paired t-test p-value (None when undefined)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return float(diff.mean()) if len(diff) else None, None
    p = float(stats.ttest_rel(a, b).pvalue)
    return float(diff.mean()), (None if math.isnan(p) else p)


def summarize(results: list) -> list:
    """One row per (dataset, bits, method), sorted; see the module docstring."""
    cells = {}
    for r in results:
        cells.setdefault((r["dataset"], r["bits"], r["method"]), []).append(r)
    rows = []
    # grid order (grid.json's `order`: the ladder's) within a dataset and code length, else by name
    order = lambda kv: (kv[0][0], kv[0][1], kv[1][0].get("order", 0), kv[0][2])  # noqa: E731
    for (dataset, bits, method), runs in sorted(cells.items(), key=order):
        row = {"dataset": dataset, "bits": bits, "method": method, "n_seeds": len(runs),
               "seeds": " ".join(str(r.get("seed")) for r in sorted(runs, key=lambda r: r.get("seed", 0)))}
        for metric in METRICS:
            values = [r[metric] for r in runs if r.get(metric) is not None]
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(values) if values else (None, None)
        row["train_seconds_mean"] = mean_std([r.get("train_seconds", 0.0) for r in runs])[0]
        base_method = _baseline(runs[0], method)
        row["baseline"] = base_method if base_method != method else None
        base = {r.get("seed"): r for r in cells.get((dataset, bits, base_method), [])}
        pairs = [(r, base[r.get("seed")]) for r in runs if r.get("seed") in base]
        for metric in COMPARED:
            pairs = [(a, b) for a, b in pairs if a.get(metric) is not None and b.get(metric) is not None]
            if method != base_method and method != "cca" and pairs:
                row[f"delta_{metric}"], row[f"p_{metric}"] = paired_test([a[metric] for a, _ in pairs],
                                                                          [b[metric] for _, b in pairs])
            else:
                row[f"delta_{metric}"], row[f"p_{metric}"] = None, None
        rows.append(row)
    return rows


def _baseline(result: dict, method: str) -> str | None:
    """The method a run is compared with: its grid.json's baseline when it has one, else plain."""
    if "baseline" in result:
        return result["baseline"]
    return "plain+balanced" if method.endswith("+balanced") else "plain"


def _cell(mean, std):
    if mean is None:
        return ""
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


NAMES = {"i2t_map": "I2T mAP@K", "t2i_map": "T2I mAP@K", "i2t_map_all": "I2T mAP@all", "t2i_map_all": "T2I mAP@all",
         "unimodal_i2t_map": "unimodal I2T mAP@K", "unimodal_t2i_map": "unimodal T2I mAP@K",
         "val_i2t_map": "val I2T mAP@K", "val_t2i_map": "val T2I mAP@K",
         "val_unimodal_i2t_map": "val unimodal I2T", "val_unimodal_t2i_map": "val unimodal T2I"}


def to_markdown(rows: list) -> str:
    """mean ± std of every metric some row has, then Δ (p) against the baseline for each compared one."""
    shown = [m for m in METRICS if any(r[f"{m}_mean"] is not None for r in rows)]
    compared = [m for m in COMPARED if any(r[f"delta_{m}"] is not None for r in rows)]
    header = ["dataset", "bits", "method", "seeds", *(NAMES[m] for m in shown), "vs",
              *(f"Δ {NAMES[m]} (p)" for m in compared), "train s"]

    def delta(r, m):   # "+0.0123 (p=0.045)", or blank without a baseline
        if r[f"delta_{m}"] is None:
            return ""
        return f"{r[f'delta_{m}']:+.4f}" + (f" (p={r[f'p_{m}']:.3f})" if r[f"p_{m}"] is not None else "")
    return markdown_table(header, [[r["dataset"], str(r["bits"]), r["method"], str(r["n_seeds"]),
                                    *(_cell(r[f"{m}_mean"], r[f"{m}_std"]) for m in shown),
                                    r.get("baseline") or "", *(delta(r, m) for m in compared),
                                    f"{r['train_seconds_mean']:.0f}"] for r in rows]) + "\n"


def to_csv(rows: list) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["dataset"], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buffer.getvalue()


def write_summary(root) -> list:
    """Collect the runs under `root`; write summary.csv and summary.md there; return the rows."""
    rows = summarize(collect_results(root))
    atomic_write_text(Path(root) / "summary.csv", to_csv(rows))
    atomic_write_text(Path(root) / "summary.md", to_markdown(rows))
    return rows


def console_table(rows: list) -> str:
    columns = [("dataset", "dataset", "{}"), ("bits", "bits", "{}"), ("method", "method", "{}"),
               ("n", "n_seeds", "{}"), ("I2T mAP@K", "i2t_map_mean", "{:.4f}"), ("±", "i2t_map_std", "{:.4f}"),
               ("T2I mAP@K", "t2i_map_mean", "{:.4f}"), ("±", "t2i_map_std", "{:.4f}"),
               ("ΔI2T", "delta_i2t_map", "{:+.4f}"), ("p", "p_i2t_map", "{:.3f}"),
               ("ΔT2I", "delta_t2i_map", "{:+.4f}"), ("p", "p_t2i_map", "{:.3f}"),
               ("uni I2T", "unimodal_i2t_map_mean", "{:.4f}"), ("uni T2I", "unimodal_t2i_map_mean", "{:.4f}")]
    return format_table(rows, columns)
