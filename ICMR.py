"""The Solver: UCMFH's training stages, evaluation and checkpoints.

Stages (`task`): train_real trains the fusion transformer alone; train_hash
trains it with the two hash heads (progressive tanh(scale*x) codes);
test_real / test_hash load a checkpoint and score it. A hash run scores
Hamming ranking of sign() codes; a real run scores cosine ranking of the fused
embeddings. Every scoring runs both protocols: `paired` (UCMFH's: an item's
codes come from its image-text pair) and `unimodal` (image codes from the
image alone, text codes from the text alone, as a real search needs); the
unimodal scores carry a `unimodal_` prefix.
"""
from __future__ import annotations

import io
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from config import ConfigError, to_dict
from data import load_dataset
from evaluate import METRICS, TIE_METRICS, retrieval_metrics
from losses import balanced_pairwise_loss, contrastive_loss, neighbour_similarity, ucmfh_loss
from metrics_curves import write_curves
from trained_model import build_model, encode_split, load_weights, read_checkpoint
from runio import RunFolder, atomic_torch_save, atomic_write_bytes
from schedules import ScaleSchedule, training_progress

# Keys that may differ between a checkpoint and the run that resumes or tests it.
RUNTIME_KEYS = {"task", "resume", "device", "output_dir", "eval_every", "save_every", "eval_batch_size",
                "data_root", "checkpoint_dir", "hash_lens", "record_histograms", "save_codes"}
HISTOGRAM_POINTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)   # shares of training at which histograms are taken
HISTOGRAM_EDGES = np.linspace(-1.0, 1.0, 51)
PROTOCOLS = {"paired": "", "unimodal": "unimodal_"}   # protocol -> prefix of its score keys


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu")
    return torch.device(name)


class Solver:
    def __init__(self, cfg, bits: int | None = None, data=None, log=print, checkpoint_path=None):
        self.cfg, self.bits, self.log = cfg, bits, log
        self.hash_stage = cfg.task in ("train_hash", "test_hash")
        if self.hash_stage and bits is None:
            raise ValueError("a hash stage needs a code length")
        self.device = resolve_device(cfg.device)
        self.data = data if data is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.wiki_text)
        self.checkpoint_path = Path(checkpoint_path or Path(cfg.checkpoint_dir) / (
            f"hash/{cfg.dataset}_hash_{bits}.pth" if self.hash_stage else f"real/{cfg.dataset}_fusion.pth"))
        if cfg.task.startswith("test_") or cfg.resume:
            self.checkpoint = self._read_checkpoint()
            self.cfg = cfg = self._merge_checkpoint_config(cfg, self.checkpoint["config"])
        else:
            self.checkpoint = None
        self._build(cfg)

    # ----- construction -----
    def _build(self, cfg):
        torch.manual_seed(cfg.seed)
        d = self.data
        self.schedule = ScaleSchedule(cfg)
        self.model = build_model(cfg, d.image_dim, d.text_dim, self.bits if self.hash_stage else None,
                                 self.schedule.eval_scale).to(self.device)
        self.optimizer_fusion = torch.optim.Adam(self.model.fusion.parameters(), lr=cfg.lr_fusion,
                                                 betas=tuple(cfg.adam_betas))
        if self.hash_stage:
            head_params = [*self.model.image_head.parameters(), *self.model.text_head.parameters()]
            self.optimizer_hash = torch.optim.Adam(head_params, lr=cfg.lr_hash, betas=tuple(cfg.adam_betas))
            # UCMFH's head schedule, stepped once per epoch so milestones are epochs
            self.lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(
                self.optimizer_hash, milestones=cfg.lr_milestones, gamma=cfg.lr_gamma)
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch, self.iteration, self.train_seconds = 0, 0, 0.0
        self.last_scores: dict = {}
        train = self.data.train
        # the training pairs stay on the device; np.asarray reads lazily stored (HDF5) features once
        self.train_image = torch.from_numpy(np.asarray(train.image)).to(self.device)   # (N, Di)
        self.train_text = torch.from_numpy(np.asarray(train.text)).to(self.device)     # (N, Dt)
        if self.checkpoint is not None:
            self._load_state(self.checkpoint)
        out = cfg.output_dir or f"runs/{cfg.dataset}_{self.bits or 'real'}{'bit' if self.bits else ''}_" \
                                f"{datetime.now():%Y%m%d-%H%M%S}"
        self.cfg.output_dir = out
        self.run = RunFolder(out)

    def _read_checkpoint(self) -> dict:
        path = self.checkpoint_path
        if not path.is_file():
            how = "train it first with --task " + ("train_hash" if self.hash_stage else "train_real")
            raise ConfigError(f"{path}: checkpoint not found ({how}, or set --checkpoint_dir)")
        return read_checkpoint(path, self.device)

    def _merge_checkpoint_config(self, cfg, saved: dict):
        """Model and training keys come from the checkpoint; a resume must not change them."""
        current = to_dict(cfg)
        differing = sorted(k for k in saved if k not in RUNTIME_KEYS and saved[k] != current.get(k))
        if cfg.resume and cfg.task.startswith("train_") and differing:
            raise ConfigError(f"--resume: {self.checkpoint_path} was trained with other values of "
                              f"{', '.join('--' + k for k in differing)}; pass the same values or drop --resume")
        merged = {k: (current[k] if k in RUNTIME_KEYS else saved.get(k, current[k])) for k in current}
        if not cfg.output_dir and cfg.resume:
            merged["output_dir"] = saved.get("output_dir", "")
        return type(cfg)(**merged)

    def _state(self) -> dict:
        """Everything needed to continue: models, optimisers, counters, RNG, config, scores."""
        state = {"fusion": self.model.fusion.state_dict(), "optimizer_fusion": self.optimizer_fusion.state_dict(),
                 "epoch": self.epoch, "iteration": self.iteration, "train_seconds": self.train_seconds,
                 "config": to_dict(self.cfg), "metrics": self.last_scores, "bits": self.bits,
                 "rng_torch": torch.get_rng_state(), "rng_shuffle": self.shuffle_generator.get_state()}
        if self.hash_stage:
            state.update(image_head=self.model.image_head.state_dict(), text_head=self.model.text_head.state_dict(),
                         optimizer_hash=self.optimizer_hash.state_dict(),
                         lr_scheduler=self.lr_scheduler.state_dict())
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_state(self, state: dict) -> None:
        load_weights(self.model, state, str(self.checkpoint_path), self.log)
        self.optimizer_fusion.load_state_dict(state["optimizer_fusion"])
        if self.hash_stage:
            self.optimizer_hash.load_state_dict(state["optimizer_hash"])
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.train_seconds, self.last_scores = state["train_seconds"], dict(state["metrics"])
        torch.set_rng_state(state["rng_torch"].cpu())
        self.shuffle_generator.set_state(state["rng_shuffle"].cpu())
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)

    def save_checkpoint(self) -> None:
        atomic_torch_save(self.checkpoint_path, self._state())

    # ----- one epoch -----
    def _batches(self):
        """Shuffled index batches over every training pair; the last one may be short."""
        order = torch.randperm(len(self.train_image), generator=self.shuffle_generator).to(self.device)
        return order.split(self.cfg.batch_size)

    def _forward(self, idx, scale=None):
        """The model on training rows `idx`, with modality dropout: each pair is encoded one side
        at a time (image alone, text alone) with probability cfg.modality_dropout, which is how
        the placeholders of the unimodal protocol are learned."""
        rate = self.cfg.modality_dropout
        unimodal = torch.rand(len(idx), device=self.device) < rate if rate > 0 else None   # (B,) bool
        return self.model(self.train_image[idx], self.train_text[idx], scale, unimodal)

    def trainhash(self, scale) -> dict:
        """One epoch of the hash stage. `scale`: a float, or a function of the iteration
        (HashNet's per-iteration schedule). Returns the epoch's loss and code statistics."""
        scale_at = scale if callable(scale) else (lambda _: scale)
        self.model.train()
        sums = dict.fromkeys(("loss", "fused_loss", "hash_loss", "scale", "abs_h", "saturated", "quant_error"), 0.0)
        if self.cfg.balanced_loss:
            sums["balanced_loss"] = 0.0
        sign_sum, rows, steps = 0.0, 0, 0
        for idx in tqdm(self._batches(), desc=f"epoch {self.epoch + 1}", leave=False, disable=None):
            step_scale = scale_at(self.iteration)
            fused_image, fused_text, hash_image, hash_text = self._forward(idx, step_scale)  # (B, F/2), (B, bits)
            loss, fused_term, hash_term = ucmfh_loss(fused_image, fused_text, hash_image, hash_text,
                                                     self.cfg.temperature, self.cfg.hash_loss_weight)
            terms = [("loss", loss), ("fused_loss", fused_term), ("hash_loss", hash_term)]
            if self.cfg.balanced_loss:  # neighbours come from the features, never from labels
                similar = neighbour_similarity(fused_image, fused_text, self.cfg.balanced_knn)
                balanced_term = balanced_pairwise_loss(hash_image, hash_text, similar)
                loss = loss + self.cfg.balanced_weight * balanced_term
                terms = [("loss", loss), *terms[1:], ("balanced_loss", balanced_term)]
            self.optimizer_fusion.zero_grad(set_to_none=True)
            self.optimizer_hash.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_fusion.step()
            self.optimizer_hash.step()
            with torch.no_grad():  # code statistics over both modalities
                h = torch.cat([hash_image, hash_text]).abs()
                for key, value in terms:
                    sums[key] += value.item() * len(idx)
                sums["scale"] += step_scale * len(idx)
                sums["abs_h"] += h.mean(1).sum().item() / 2
                sums["saturated"] += (h > 0.95).float().mean(1).sum().item() / 2
                sums["quant_error"] += ((h - 1) ** 2).mean(1).sum().item() / 2
                sign_sum = sign_sum + torch.cat([hash_image, hash_text]).sign().sum(0)
            rows, steps, self.iteration = rows + len(idx), steps + 1, self.iteration + 1
        stats = {key: value / rows for key, value in sums.items()}
        stats["bit_balance"] = 1.0 - (sign_sum / (2 * rows)).abs().mean().item()  # 1 = every bit split 50/50
        return stats

    def trainreal(self) -> dict:
        """One epoch of the real-valued stage (fusion transformer alone)."""
        self.model.train()
        total, rows = 0.0, 0
        for idx in tqdm(self._batches(), desc=f"epoch {self.epoch + 1}", leave=False, disable=None):
            loss = contrastive_loss(*self._forward(idx), self.cfg.temperature)
            self.optimizer_fusion.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_fusion.step()
            total, rows, self.iteration = total + loss.item() * len(idx), rows + len(idx), self.iteration + 1
        return {"loss": total / rows}

    # ----- evaluation -----
    def encode(self, split, scale=None, protocol="paired") -> tuple:
        """Image-side and text-side outputs for every row of a split: codes in a hash stage
        (before sign) at `scale` (default: the test-time scale), fused embeddings in a real stage."""
        return encode_split(self.model, split, protocol, self.cfg.eval_batch_size, self.device, scale)

    def evaluate(self, final=False) -> dict:
        """I2T (query images vs database texts) and T2I scores on the query set. The final scoring
        of a hash stage adds the mAP of the continuous outputs (cosine ranking before sign), so the
        quantisation gap shows, and writes codes.npz when save_codes is set."""
        query, database = self.data.query, self.data.retrieval
        distance = "hamming" if self.hash_stage else "cosine"
        k = self.cfg.map_k or None
        scores, codes = {}, {}
        want = METRICS + TIE_METRICS if final and self.hash_stage else METRICS  # one call per direction
        for protocol, prefix in PROTOCOLS.items():
            query_image, query_text = self.encode(query, protocol=protocol)
            db_image, db_text = self.encode(database, protocol=protocol)
            codes.update({f"{prefix}query_image": query_image.numpy(), f"{prefix}query_text": query_text.numpy(),
                          f"{prefix}database_image": db_image.numpy(), f"{prefix}database_text": db_text.numpy()})
            for direction, q, db in (("i2t", query_image, db_text), ("t2i", query_text, db_image)):
                name = prefix + direction
                m = retrieval_metrics(q, db, query.label, database.label, k=k, distance=distance, want=want)
                scores.update({f"{name}_map": m["map_k"], f"{name}_map_all": m["map_all"],
                               f"{name}_precision_k": m["precision_k"]})
                if final and self.hash_stage:
                    continuous = retrieval_metrics(q, db, query.label, database.label, k=k, distance="cosine",
                                                   want=("map_k",))
                    scores.update({f"{name}_map_tie": m["map_k_tie"], f"{name}_map_all_tie": m["map_all_tie"],
                                   f"{name}_map_continuous": continuous["map_k"]})
        if final and self.hash_stage and self.cfg.save_codes:
            buffer = io.BytesIO()
            np.savez(buffer, **codes, query_label=query.label.astype(np.uint8),
                     database_label=database.label.astype(np.uint8))
            atomic_write_bytes(self.run.path / "codes.npz", buffer.getvalue())
            write_curves(self.run.path)
        return scores

    def record_histogram(self, scale: float) -> None:
        """Histogram of the hash outputs on the query set at the current training scale."""
        image, text = self.encode(self.data.query, scale)
        count = lambda h: np.histogram(h.numpy(), HISTOGRAM_EDGES)[0].tolist()
        self.histograms.append({"epoch": self.epoch, "progress": self.epoch / self.cfg.epoch, "scale": scale,
                                "image": count(image), "text": count(text)})
        self.run.write_json("histograms.json", {"bin_edges": HISTOGRAM_EDGES.tolist(),
                                                "snapshots": self.histograms})

    # ----- stages -----
    def train(self) -> dict:
        cfg = self.cfg
        if self.hash_stage:
            self.log(self.schedule.describe())
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.run.write_config(to_dict(cfg))
        if self.epoch:
            self.log(f"Resuming {self.checkpoint_path} after epoch {self.epoch} of {cfg.epoch}")
            self.run.truncate_metrics(self.epoch)
        histogram_epochs = {round(p * cfg.epoch) for p in HISTOGRAM_POINTS} \
            if cfg.record_histograms and self.hash_stage else set()
        self.histograms = [h for h in self.run.read_json("histograms.json", {}).get("snapshots", [])
                           if h["epoch"] <= self.epoch]
        if 0 in histogram_epochs and self.epoch == 0:
            self.record_histogram(self.schedule.at(0))
        for epoch in range(self.epoch, cfg.epoch):
            start = time.time()
            # 1. the scale for this epoch (HashNet's schedule varies it per iteration)
            scale = (lambda it, e=epoch: self.schedule.at(e, it)) if self.schedule.per_iteration \
                else self.schedule.at(epoch)
            if self.hash_stage and self.schedule.enabled:
                shown = self.schedule.at(epoch, self.iteration)
                progress = training_progress(epoch, cfg.epoch)
                self.log(f"epoch: {epoch + 1}/{cfg.epoch}\n  Progressive scale: {shown:.2f} "
                         f"(progress: {progress * 100:.1f}%)")
            # 2. one pass over every training pair
            stats = self.trainhash(scale) if self.hash_stage else self.trainreal()
            # 3. learning-rate schedule, once per epoch
            if self.hash_stage:
                self.lr_scheduler.step()
            self.epoch = epoch + 1
            self.train_seconds += time.time() - start
            record = {"epoch": self.epoch, **stats, "seconds": time.time() - start}
            # 4. score every eval_every epochs and at the end (reported, never used to pick a model)
            if self.epoch == cfg.epoch or (cfg.eval_every and self.epoch % cfg.eval_every == 0):
                self.last_scores = self.evaluate(final=self.epoch == cfg.epoch)
                record.update(self.last_scores)
            if self.epoch in histogram_epochs:
                self.record_histogram(self.schedule.at(epoch, self.iteration - 1))
            self.log(f"  epoch {self.epoch}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds")))
            # 5. log, then checkpoint every save_every epochs and at the end
            self.run.append_metrics(record)
            if self.epoch == cfg.epoch or (cfg.save_every and self.epoch % cfg.save_every == 0):
                self.save_checkpoint()
            self.after_epoch()
        if not self.last_scores:  # resumed a finished run
            self.last_scores = self.evaluate(final=True)
        return self.finish(self.last_scores)

    def after_epoch(self) -> None:
        """Hook run after each epoch's checkpoint (tests use it to simulate a crash)."""

    def test(self) -> dict:
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.run.write_config(to_dict(self.cfg))
        self.log(f"Scoring {self.checkpoint_path} (trained {self.epoch} epochs)")
        return self.finish(self.evaluate(final=True))

    def finish(self, scores: dict) -> dict:
        cfg = self.cfg
        results = {"dataset": cfg.dataset, "task": cfg.task, "hash_lens": self.bits, "bits": self.bits,
                   "use_progressive_hash": cfg.use_progressive_hash, "scale_schedule": cfg.scale_schedule,
                   "modality_dropout": cfg.modality_dropout, "protocols": list(PROTOCOLS),
                   "balanced_loss": cfg.balanced_loss,
                   "scale_min": cfg.scale_min, "scale_max": cfg.scale_max, "eval_scale": self.schedule.eval_scale,
                   "epoch": self.epoch, "seed": cfg.seed, "map_k": cfg.map_k or None, **scores,
                   "train_seconds": self.train_seconds, "checkpoint": str(self.checkpoint_path),
                   "output_dir": str(self.run.path), "num_train": len(self.data.train),
                   "num_query": len(self.data.query), "num_retrieval": len(self.data.retrieval)}
        self.run.write_results(results)
        return results

    def run_task(self) -> dict:
        return self.train() if self.cfg.task.startswith("train_") else self.test()
