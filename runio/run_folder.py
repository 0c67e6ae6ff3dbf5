"""The output folder of one trained code length.

It holds `config.yaml` (the resolved config), `metrics.jsonl` (one JSON record
per epoch) and `results.json` (the final scores), all written atomically, and
with `--tensorboard` the same records as TensorBoard events (runio/tensorboard_log.py).
"""
from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from config import scale_max_for
from runio.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from runio.metrics_log import read_metrics_file
from runio.tensorboard_log import FOLDER, EventLog, wanted


class RunFolder:
    """The output folder of one trained code length. `writable` False (ranks other than 0 of a
    distributed run) makes every write a no-op; reads still work."""

    def __init__(self, path, writable: bool = True):
        self.path, self.writable = Path(path), writable
        self.events = None      # an EventLog while open_events is in force

    def open_events(self, setting, first_step: int) -> None:
        """TensorBoard events in <folder>/tensorboard/ when `setting` (config tensorboard) says so;
        `first_step`: the first epoch this run trains (a resume drops later steps logged before)."""
        if self.writable and wanted(setting):
            self.events = EventLog(self.path / FOLDER, first_step)

    def close_events(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None

    def write_config(self, config: dict) -> None:
        if not self.writable:
            return
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_metrics(self) -> list:
        """The records of metrics.jsonl (runio/metrics_log.py: a last line torn by a kill is left out)."""
        return read_metrics_file(self.path / "metrics.jsonl")

    def append_metrics(self, record: dict) -> None:
        if not self.writable:
            return
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.events is not None:      # the same record: the event file cannot drift from metrics.jsonl
            self.events.scalars(record)

    def truncate_metrics(self, last_epoch: int) -> None:
        """On resume: drop records of epochs after the checkpoint (they will be redone)."""
        if not self.writable:
            return
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= last_epoch]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def read_json(self, name: str, default=None):
        file = self.path / name
        return json.loads(file.read_text()) if file.is_file() else default

    def write_json(self, name: str, obj) -> None:
        if not self.writable:
            return
        atomic_write_json(self.path / name, obj)

    def write_histograms(self, edges: list, snapshots: list) -> None:
        """histograms.json (bin `edges`, every snapshot so far) and the newest snapshot's events."""
        self.write_json("histograms.json", {"bin_edges": edges, "snapshots": snapshots})
        if self.events is not None and snapshots:
            self.events.histograms(snapshots[-1], edges)

    def write_results(self, results: dict) -> None:
        if not self.writable:
            return
        atomic_write_json(self.path / "results.json", results)


def default_output_dir(cfg, bits: int | None) -> str:
    """cfg.output_dir, or runs/<dataset>_<bits>bit_<time>/ (runs/<dataset>_real_<time>/) when empty."""
    if cfg.output_dir:
        return cfg.output_dir
    stage = f"{bits}bit" if bits else "real"
    return f"runs/{cfg.dataset}_{stage}_{datetime.now():%Y%m%d-%H%M%S}"


def results_record(cfg, bits: int | None, scores: dict, *, epoch: int, train_seconds: float,
                   eval_scale: float, protocols, checkpoint, output_dir, data) -> dict:
    """The results.json of a trained or scored model: what it is, how it was scored, the scores
    (paired keys unprefixed, unimodal keys prefixed unimodal_), timing and split sizes."""
    scored = (lambda n: n // cfg.eval_batch_size * cfg.eval_batch_size) if cfg.eval_drop_last else (lambda n: n)  # noqa: E731
    return {"dataset": cfg.dataset, "task": cfg.task, "bits": bits,
            "use_progressive_hash": cfg.use_progressive_hash, "scale_schedule": cfg.scale_schedule,
            "modality_dropout": cfg.modality_dropout, "unimodal_epochs": cfg.unimodal_epochs,
            "protocols": list(protocols),
            "balanced_loss": cfg.balanced_loss, "scale_min": cfg.scale_min,
            "scale_max": scale_max_for(cfg.scale_max, bits) if bits else cfg.scale_max, "preset": cfg.preset,
            "eval_scale": eval_scale, "epoch": epoch, "seed": cfg.seed, "map_k": cfg.map_k or None, **scores,
            "train_seconds": train_seconds, "checkpoint": checkpoint and str(checkpoint), "output_dir": str(output_dir),
            # the sizes used: train_limit cuts training, eval_drop_last the scored sets to whole batches
            "num_train": min(len(data.train), cfg.train_limit or len(data.train)),
            "num_query": scored(len(data.query)), "num_retrieval": scored(len(data.retrieval))}


def write_codes(folder, codes: dict, query_labels, database_labels) -> None:
    """<folder>/codes.npz, atomically: the continuous outputs by name and the labels (uint8)."""
    buffer = io.BytesIO()
    np.savez(buffer, **codes, query_label=np.asarray(query_labels).astype(np.uint8),
             database_label=np.asarray(database_labels).astype(np.uint8))
    atomic_write_bytes(f"{folder}/codes.npz", buffer.getvalue())
