"""Resumable CLIP feature extraction for a list of raw image-text pairs.

Work is done in chunks of `chunk_size` items; each finished chunk is written
atomically to `<work_dir>/chunk_NNNNN.npz`, so a run that is killed and
started again skips the chunks it already has. Batches never straddle chunk
boundaries, so a resumed run computes exactly what an unbroken run computes.
An image that cannot be read or decoded is skipped and reported with the
reason; it never stops the run.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from runio.atomic import atomic_write_bytes, atomic_write_json
from runio.logs import progress

from .errors import DataError

TEXT_MODES = ("mean", "first")  # several texts per pair (COCO captions): mean of their unit features, or the first


class _ImageFiles(torch.utils.data.Dataset):
    """Decodes and preprocesses images in DataLoader workers; a failure becomes a reason string."""

    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as image:
                return i, self.preprocess(image.convert("RGB")), ""
        except Exception as err:  # unreadable, truncated or not an image: report, never stop
            return i, None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"


def _collate(batch):
    good = [(i, pixels) for i, pixels, _ in batch if pixels is not None]
    failed = [(i, reason) for i, pixels, reason in batch if pixels is None]
    pixels = torch.stack([p for _, p in good]) if good else None
    return [i for i, _ in good], pixels, failed


@dataclass
class ExtractedFeatures:
    image: np.ndarray      # (N, D) float32, unit rows; zeros where the image failed
    text: np.ndarray       # (N, D) float32, unit rows
    ok: np.ndarray         # (N,) bool: the image was read
    failures: dict         # item index -> reason
    started: str           # when the work folder was begun (kept across resumes)


def job_fingerprint(dataset, encoder_metadata, chunk_size, batch_size, text_mode) -> dict:
    """What a work folder was made from; a resume must match it exactly."""
    digest = hashlib.sha256()
    for item in dataset.items:
        digest.update(json.dumps([item.id, str(item.image), item.texts]).encode("utf-8"))
    return {"items": len(dataset.items), "items_sha256": digest.hexdigest(), "chunk_size": chunk_size,
            "batch_size": batch_size, "text_mode": text_mode,
            **{k: encoder_metadata[k] for k in ("clip_model", "pretrained", "weights_sha256", "preprocess")}}


def _open_job(work_dir: Path, fingerprint: dict) -> dict:
    """Start a work folder, or check that an existing one was made the same way."""
    job_file = work_dir / "job.json"
    if job_file.is_file():
        saved = json.loads(job_file.read_text())
        differing = [k for k in fingerprint if saved.get(k) != fingerprint[k]]
        if differing:
            raise DataError(f"{work_dir}: unfinished extraction made with other {', '.join(differing)}; "
                            f"run it with the same settings to resume, or delete the folder to start over")
        return saved
    job = {**fingerprint, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(job_file, job)
    return job


def _encode_texts(encoder, items, batch_size, text_mode) -> np.ndarray:
    """One unit-length text feature per item: the mean of its texts' unit features, or the first text's."""
    for item in items:
        if not item.texts or not all(t.strip() for t in item.texts):
            raise DataError(f"item {item.id!r}: missing text (every pair needs a non-empty text)")
    texts = [t for item in items for t in (item.texts if text_mode == "mean" else item.texts[:1])]
    owner = np.repeat(np.arange(len(items)), [len(item.texts) if text_mode == "mean" else 1 for item in items])
    features = np.concatenate([encoder.encode_texts(texts[s:s + batch_size])
                               for s in range(0, len(texts), batch_size)])
    summed = np.zeros((len(items), features.shape[1]), dtype=np.float64)
    np.add.at(summed, owner, features)
    return (summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32)


def _encode_chunk(encoder, items, batch_size, workers, text_mode, bar):
    """Image and text features of one chunk, plus the failed images."""
    loader = torch.utils.data.DataLoader(_ImageFiles([str(item.image) for item in items], encoder.preprocess),
                                         batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                                         pin_memory=encoder.device.type == "cuda")
    image, failures = None, {}
    for positions, pixels, failed in loader:
        failures.update(dict(failed))
        if pixels is not None:
            features = encoder.encode_images(pixels)
            if image is None:
                image = np.zeros((len(items), features.shape[1]), dtype=np.float32)
            image[positions] = features
        bar.update(len(positions) + len(failed))
    text = _encode_texts(encoder, items, batch_size, text_mode)
    if image is None:  # every image of the chunk failed
        image = np.zeros_like(text)
    return image, text, failures


def extract_features(dataset, encoder, work_dir, batch_size=64, workers=2, chunk_size=1024, text_mode="mean",
                     on_chunk_done=None, share=(0, 1), barrier=None) -> ExtractedFeatures:
    """Encode every item of a RawDataset, resuming from the chunks already in `work_dir`.
    `on_chunk_done(chunk_index)` is called after each chunk is saved (tests use it to stop a run).
    share = (rank, world size) of a torchrun job: this process encodes the chunks whose index
    modulo the world size is its rank, `barrier()` waits for the others, and every process then
    reads all chunks from `work_dir` (a folder all of them see). Each process resumes on its own."""
    if text_mode not in TEXT_MODES:
        raise DataError(f"--text_mode {text_mode!r} is not one of {', '.join(TEXT_MODES)}")
    if chunk_size % batch_size:
        raise DataError(f"--chunk_size {chunk_size} must be a multiple of --batch_size {batch_size}")
    rank, world_size = share
    barrier = barrier or (lambda: None)
    work_dir = Path(work_dir)
    fingerprint = job_fingerprint(dataset, encoder.metadata, chunk_size, batch_size, text_mode)
    job = _open_job(work_dir, fingerprint) if rank == 0 else None
    barrier()                                   # rank 0 has written job.json (or checked it)
    job = job or _open_job(work_dir, fingerprint)
    items = dataset.items
    starts = range(0, len(items), chunk_size)
    chunk_file = lambda index: work_dir / f"chunk_{index:05d}.npz"  # noqa: E731
    mine = [index for index in range(len(starts)) if index % world_size == rank]
    with progress(total=sum(len(items[starts[i]:starts[i] + chunk_size]) for i in mine), desc="images", unit="img",
                  smoothing=0.1) as bar:
        for index in mine:
            chunk_items = items[starts[index]:starts[index] + chunk_size]
            if chunk_file(index).is_file():  # done by an earlier, interrupted run
                bar.update(len(chunk_items))
                continue
            image, text, failures = _encode_chunk(encoder, chunk_items, batch_size, workers, text_mode, bar)
            buffer = io.BytesIO()
            np.savez(buffer, image=image, text=text, failures=np.array(json.dumps(failures)))
            atomic_write_bytes(chunk_file(index), buffer.getvalue())
            if on_chunk_done is not None:
                on_chunk_done(index)
    barrier()                                   # every chunk is on disk
    parts = []
    for index in range(len(starts)):
        with np.load(chunk_file(index), allow_pickle=False) as saved:
            parts.append((saved["image"], saved["text"], json.loads(str(saved["failures"]))))
    failures = {start + int(k): reason for start, (_, _, part) in zip(starts, parts) for k, reason in part.items()}
    ok = np.ones(len(items), dtype=bool)
    ok[list(failures)] = False
    return ExtractedFeatures(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                             ok, failures, job["started"])
