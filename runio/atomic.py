"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every checkpoint, result, index and figure of the project is written through
these (temporary file in the same folder, fsync, then rename).
"""
from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import torch


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
