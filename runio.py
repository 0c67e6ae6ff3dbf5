"""What a run leaves on disk, always written atomically (temporary file, then rename).

A run folder holds `config.yaml` (the resolved config), `metrics.jsonl` (one
JSON record per epoch) and `results.json` (the final scores).
"""
from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import torch
import yaml


def atomic_write_bytes(path, payload: bytes) -> None:
    """Write `payload` to `path` so that readers see the old file or the new one, never half.

    The temporary name is unique per process and call, so concurrent writers of
    the same file just replace each other; open(..., "xb") keeps the usual
    umask permissions (tempfile.mkstemp would make the file private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class RunFolder:
    """The output folder of one trained code length."""

    def __init__(self, path):
        self.path = Path(path)

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_metrics(self) -> list:
        file = self.path / "metrics.jsonl"
        if not file.is_file():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def append_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_metrics(self, last_epoch: int) -> None:
        """On resume: drop records of epochs after the checkpoint (they will be redone)."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= last_epoch]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def read_json(self, name: str, default=None):
        file = self.path / name
        return json.loads(file.read_text()) if file.is_file() else default

    def write_json(self, name: str, obj) -> None:
        atomic_write_json(self.path / name, obj)

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.path / "results.json", results)


def format_table(rows: list, columns: list) -> str:
    """A plain-text table; `columns` are (header, key, format) triples."""
    cells = [[header for header, _, _ in columns]]
    for row in rows:
        cells.append([("-" if row.get(key) is None else fmt.format(row[key])) for _, key, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# paired = UCMFH's protocol (codes from the pair); unimodal = image alone / text alone
SCORE_COLUMNS = [("dataset", "dataset", "{}"), ("bits", "bits", "{}"),
                 ("progressive", "scale_schedule_label", "{}"),
                 ("I2T mAP@K", "i2t_map", "{:.4f}"), ("T2I mAP@K", "t2i_map", "{:.4f}"),
                 ("I2T mAP@all", "i2t_map_all", "{:.4f}"), ("T2I mAP@all", "t2i_map_all", "{:.4f}"),
                 ("unimodal I2T mAP@K", "unimodal_i2t_map", "{:.4f}"),
                 ("unimodal T2I mAP@K", "unimodal_t2i_map", "{:.4f}"),
                 ("train s", "train_seconds", "{:.0f}")]


def score_table(results: list) -> str:
    """The table of scores that train.py and the scripts print at the end."""
    k = results[0].get("map_k") if results else None
    columns = [(h.replace("@K", f"@{k}" if k else "@all"), key, fmt) for h, key, fmt in SCORE_COLUMNS]
    rows = [dict(r, scale_schedule_label=(r["scale_schedule"] if r.get("use_progressive_hash") else "off"))
            for r in results]
    return format_table(rows, columns)
