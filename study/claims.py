"""The progressive-hashing design note's claims, measured on a grid's runs (study.ablation).

For every method of a grid folder, over its seeds (mean, and the spread across seeds):
  * stability: the per-step loss spread within an epoch (metrics.jsonl `loss_step_std`, divided
    by that epoch's mean loss so runs at different loss levels compare), averaged over the last
    third of the epochs; and the spread of the final loss across seeds;
  * the quantisation gap: mAP@K of the continuous outputs (cosine) minus mAP@K of their sign codes
    (Hamming), mean of I2T and T2I, paired protocol; small = sign() loses little;
  * saturation: the share of |h| > 0.95 in the last epoch, and the mean |h|;
  * the spread of paired mAP@K across seeds.
Written to <grid>/claims.md and claims.json by scripts/ablation.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from runio.atomic import atomic_write_text
from runio.tables import format_table, markdown_table
from study.run_files import read_metrics
from study.summary import collect_results

COLUMNS = (("step loss spread / loss (last third)", "step_loss_cv", "{:.4f}"),
           ("final loss std over seeds", "final_loss_seed_std", "{:.4f}"),
           ("quantisation gap (mAP@K)", "quantisation_gap", "{:+.4f}"),
           ("saturated (last epoch)", "saturated", "{:.3f}"),
           ("mean |h|", "abs_h", "{:.3f}"),
           ("mAP@K std over seeds", "map_seed_std", "{:.4f}"))


def run_claims(run: dict) -> dict | None:
    """The per-run quantities from a results.json record (with run_dir) and its metrics.jsonl;
    None for a run without training records (a re-scored checkpoint's folder has none)."""
    epochs = [r for r in read_metrics(run["run_dir"]) if "loss_step_std" in r] \
        if (Path(run["run_dir"]) / "metrics.jsonl").is_file() else []
    if not epochs or "i2t_map_continuous" not in run:
        return None
    last_third = epochs[-max(1, math.ceil(len(epochs) / 3)):]
    return {"step_loss_cv": float(np.mean([e["loss_step_std"] / e["loss"] for e in last_third])),
            "final_loss": epochs[-1]["loss"], "saturated": epochs[-1]["saturated"], "abs_h": epochs[-1]["abs_h"],
            "quantisation_gap": ((run["i2t_map_continuous"] - run["i2t_map"])
                                 + (run["t2i_map_continuous"] - run["t2i_map"])) / 2,
            "map": (run["i2t_map"] + run["t2i_map"]) / 2}


def measure(root) -> list:
    """One row per (dataset, bits, method) of the grid under `root` that has training records."""
    cells = {}
    for run in collect_results(root):
        found = run_claims(run)
        if found is not None:
            cells.setdefault((run["dataset"], run["bits"], run.get("order", 0), run["method"]), []).append(found)
    rows = []
    for (dataset, bits, _, method), runs in sorted(cells.items()):
        std = (lambda key: float(np.std([r[key] for r in runs], ddof=1)) if len(runs) > 1 else None)  # noqa: E731
        rows.append({"dataset": dataset, "bits": bits, "method": method, "n_seeds": len(runs),
                     **{key: float(np.mean([r[key] for r in runs]))
                        for key in ("step_loss_cv", "quantisation_gap", "saturated", "abs_h")},
                     "final_loss_seed_std": std("final_loss"), "map_seed_std": std("map")})
    return rows


def write_claims(root) -> list:
    """Measure the grid under `root`; write claims.json and claims.md there; return the rows."""
    rows = measure(root)
    atomic_write_text(Path(root) / "claims.json", json.dumps(rows, indent=2) + "\n")
    table = markdown_table(["dataset", "bits", "method", "seeds", *(name for name, _, _ in COLUMNS)],
                           [[r["dataset"], str(r["bits"]), r["method"], str(r["n_seeds"]),
                             *(None if r[key] is None else fmt.format(r[key]) for _, key, fmt in COLUMNS)]
                            for r in rows])
    atomic_write_text(Path(root) / "claims.md", table + "\n")
    return rows


def console_table(rows: list) -> str:
    return format_table(rows, [("dataset", "dataset", "{}"), ("bits", "bits", "{}"), ("method", "method", "{}"),
                               *((name, key, fmt) for name, key, fmt in COLUMNS)])
