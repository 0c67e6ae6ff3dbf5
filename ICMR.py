"""The Solver: UCMFH's training stages, with progressive hash learning.

Stages (`task`): train_real trains the fusion transformer alone; train_hash trains it with the two hash heads, whose
outputs are tanh(scale * x) with a scale that grows over training (schedules.py). Every `eval_every` epochs and at
the end evaluate.score_model scores both protocols (`paired`, UCMFH's, and `unimodal`), reported and never used to
pick a model. The test stages (test_real, test_hash) score a checkpoint: evaluate.score_checkpoint.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from config import AUTO, NEIGHBOUR_CANDIDATES, ConfigError, resolve_device, to_dict
from data import load_dataset
from data.splits import check_val_queries
from data.streaming import stream_epoch, streams
from evaluate import PROTOCOLS, score_model
from losses import balanced_pairwise_loss, balanced_similarity, contrastive_loss, distillation_loss, ucmfh_loss
from model import WeightAverage, build_model
from parallel import broadcast, current, gather_rows, gather_with_grad, local_part, rank_device, sum_gradients
from runio.atomic import atomic_torch_save
from runio.code_stats import EpochCodeStats
from runio.checkpoint import checkpoint_file, merge_checkpoint_config, read_checkpoint, saved_config
from runio.histograms import HistogramRecorder
from runio.logs import progress
from runio.run_folder import RunFolder, default_output_dir, results_record
from runio.solver_state import load_solver_state, solver_state
from schedules import ScaleSchedule, training_progress
from selection.branch_scale import BranchFork, branch_epoch, branch_mode
from selection.choose import choose_modality_dropout
from selection.criteria import INPUT_SPACES, fit_input_space, project_pairs
from selection.late_temperature import temperature_at
from selection.paired_fork import forks_dropout, paired_epoch


def _quiet(*_args, **_kwargs) -> None: """The log of ranks other than 0."""


class Solver:
    """Trains one model: the fusion transformer (train_real) or it and the hash heads of `bits` bits (train_hash),
    on data.train; resumes from its checkpoint with cfg.resume. Under torchrun each process trains its part of
    every global batch (parallel/ranks.py) and rank 0 alone logs and writes."""

    def __init__(self, cfg, bits: int | None = None, data=None, log=print, selection: dict | None = None):
        if cfg.task not in ("train_real", "train_hash"):
            raise ValueError(f"the Solver trains; score a checkpoint ({cfg.task}) with evaluate.score_checkpoint")
        self.hash_stage = cfg.task == "train_hash"
        if self.hash_stage and bits is None:
            raise ValueError("a hash stage needs a code length")
        self.ranks = current()
        self.bits, self.log = (bits if self.hash_stage else None), (log if self.ranks.main else _quiet)
        self.device = rank_device(resolve_device(cfg.device), self.ranks)
        self.data = data if data is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.wiki_text)
        self.checkpoint_path = checkpoint_file(cfg, self.bits)
        checkpoint = None
        if cfg.resume:
            checkpoint = read_checkpoint(self.checkpoint_path, self.device, "--resume continues a run that saved "
                                         "one; drop --resume to start afresh, or set --checkpoint_dir")
            cfg = merge_checkpoint_config(cfg, saved_config(checkpoint, self.checkpoint_path), self.checkpoint_path)
        self.cfg = cfg
        # modality_dropout auto: the choice made before (a resumed run's checkpoint), made now by separate
        # candidates, or (select_fork) by a fork of the first epochs (selection/paired_fork.py)
        self.selection = selection or (checkpoint or {}).get("selection")
        self.num_train = min(len(self.data.train), cfg.train_limit or len(self.data.train))  # UCMFH: the first 4,992
        self.streamed = streams(cfg, self.data.train, self.num_train)
        if cfg.modality_dropout == AUTO and self.hash_stage and not self.selection and not forks_dropout(self):
            self.selection = choose_modality_dropout(cfg, self.bits, self.data, type(self), self.log)
        self.modality_dropout = (self.selection or {}).get("chosen", 0.0) if cfg.modality_dropout == AUTO \
            else cfg.modality_dropout                 # the real-valued stage takes auto as 0
        self._build(cfg, checkpoint)

    # ----- construction -----
    def _build(self, cfg, checkpoint):
        torch.manual_seed(cfg.seed)
        d = self.data
        if cfg.val_queries:   # refused now, not after training
            d.require_labels("--val_queries")
            check_val_queries(cfg.val_queries, d.retrieval)
        steps = self.num_train // cfg.batch_size if cfg.train_drop_last else math.ceil(self.num_train / cfg.batch_size)
        if steps == 0:
            raise ConfigError(f"--train_drop_last: {self.num_train} training pairs make no whole batch of "
                              f"--batch_size {cfg.batch_size}")
        self.schedule = ScaleSchedule(cfg, steps, self.bits)
        self.model = build_model(cfg, d.image_dim, d.text_dim, self.bits, self.schedule.eval_scale).to(self.device)
        if self.ranks.rank:  # the same initial weights everywhere, then each rank its own dropout masks
            torch.manual_seed(cfg.seed + 7919 * self.ranks.rank)
        # the fused Adam kernel: the same update, about 3x faster than the per-tensor loop on CPUs
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        # train_precision bf16: the training passes' matrix products in bfloat16 (outputs go back to float32)
        self.autocast = lambda: torch.autocast(self.device.type, torch.bfloat16, enabled=cfg.train_precision == "bf16")
        self.optimizer_fusion = torch.optim.Adam(self.model.fusion.trainable_parameters(), lr=cfg.lr_fusion,
                                                 betas=tuple(cfg.adam_betas), **fused)
        if self.hash_stage:
            head_params = [*self.model.image_head.parameters(), *self.model.text_head.parameters()]
            self.optimizer_hash = torch.optim.Adam(head_params, lr=cfg.lr_hash, betas=tuple(cfg.adam_betas), **fused)
            # UCMFH's head schedule; milestones count epochs (lr_step epoch) or batches (batch, as UCMFH)
            self.lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(
                self.optimizer_hash, milestones=cfg.lr_milestones, gamma=cfg.lr_gamma)
        self.branch = self.model.unimodal_branch       # trained in epochs epoch+1 .. epoch+unimodal_epochs
        self.total_epochs = cfg.epoch + (cfg.unimodal_epochs if self.branch is not None else 0)
        if self.branch is not None:   # the base learning rates, held constant
            self.optimizer_branch = torch.optim.Adam(
                [{"params": self.branch.fusion.trainable_parameters(), "lr": cfg.lr_fusion},
                 {"params": [*self.branch.image_head.parameters(), *self.branch.text_head.parameters()],
                  "lr": cfg.lr_hash}], betas=tuple(cfg.adam_betas), **fused)
        # the branch is scored with the moving average of its weights over unimodal_average x its steps
        self.branch_average = WeightAverage([p for g in self.optimizer_branch.param_groups for p in g["params"]],
                                            cfg.unimodal_average * steps * cfg.unimodal_epochs) \
            if self.branch is not None and cfg.unimodal_average else None
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed)
        # the modality-dropout draws of a global batch: the same on every rank, whatever the world size
        self.modality_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.trained_parameters = [p for optimizer in self._optimizers() for group in optimizer.param_groups
                                   for p in group["params"]]
        self.epoch, self.iteration, self.train_seconds = 0, 0, 0.0
        self.last_scores, self.paired_scores = {}, {}   # the latest scores; the frozen paired network's
        self.branch_choice, self.branch_fork = None, None   # unimodal_scale auto (selection/branch_scale.py)
        self.temperature_choice, self.paired_fork = None, None   # late_temperature auto; a fork (selection/)
        self.temperature = cfg.temperature                  # the InfoNCE temperature now (late_temperature)
        self.teacher_codes = {}   # scale -> the frozen paired network's codes of every training row (_teacher)
        # where the balanced loss finds neighbours: balanced_neighbours, or auto's first candidate until it chooses
        auto_neighbours = cfg.balanced_neighbours == AUTO
        self.neighbour_source = NEIGHBOUR_CANDIDATES[0] if auto_neighbours else cfg.balanced_neighbours
        self.neighbour_choice = None               # balanced_neighbours auto's record (selection/paired_fork.py)
        train = self.data.train
        if self.streamed:   # read a window of blocks at a time by _batches
            self.train_image = self.train_text = None
        else:               # the training pairs stay on the device; lazily stored (HDF5) ones are read once
            self.train_image = torch.from_numpy(np.asarray(train.image[:self.num_train])).to(self.device)  # (N, Di)
            self.train_text = torch.from_numpy(np.asarray(train.text[:self.num_train])).to(self.device)    # (N, Dt)
        # balanced_neighbours shared, covariance: the input cosine in a space fitted on the training pairs, (mean_x
        # (Di,), mean_y (Dt,), A (Di, c), B (Dt, c)), if neighbours are used; each batch projected as it comes
        fits = self.neighbour_source in INPUT_SPACES and any((cfg.balanced_loss, cfg.infonce_mask_neighbours,
                                                                cfg.unimodal_balanced and self.branch is not None))
        sides = (train.image, train.text) if self.streamed else (self.train_image, self.train_text)   # read once
        self.input_space = None if not fits else tuple(torch.from_numpy(part).float().to(self.device) for part in
                                                       fit_input_space(self.neighbour_source, *sides, self.num_train,
                                                                       cfg.seed, cfg.balanced_directions))
        if checkpoint is not None:
            load_solver_state(self, checkpoint)
        self.run = RunFolder(broadcast(default_output_dir(cfg, self.bits), self.ranks), writable=self.ranks.main)
        self.cfg.output_dir = str(self.run.path)

    def _optimizers(self) -> list:
        """Every optimiser; one whose parameters got no gradient in a step leaves them as they are."""
        optimizers = [self.optimizer_fusion, self.optimizer_hash] if self.hash_stage else [self.optimizer_fusion]
        return optimizers + ([self.optimizer_branch] if self.branch is not None else [])

    def save_checkpoint(self) -> None:
        if self.ranks.main:
            atomic_torch_save(self.checkpoint_path, solver_state(self))

    # ----- one epoch -----
    def _batches(self):
        """Shuffled index batches over every training pair into self.train_image / train_text; the last one may be
        short (dropped with train_drop_last). Streamed (stream_train): a window of stream_window_blocks shuffled blocks
        at a time (data.streaming.stream_epoch), batches full across window edges, as many steps as in memory."""
        if not self.streamed:
            order = torch.randperm(len(self.train_image), generator=self.shuffle_generator)
            trained = self.paired_fork and self.paired_fork.rows(self)   # (N,) bool: the dropout fork's rows
            if trained is not None:
                order = order[trained[order]]                               # its held-out pairs wait
            order = order.to(self.device)
            batches = order.split(self.cfg.batch_size)
            yield from (batches[:-1] if self.cfg.train_drop_last and len(batches[-1]) < self.cfg.batch_size
                        else batches)
            return
        for (self.train_image, self.train_text), batches in stream_epoch(
                self.data.train, self.num_train, self.cfg, self.shuffle_generator, self.device):
            yield from batches
            self.train_image = self.train_text = None            # the last window goes before the next comes

    def _forward(self, idx, scale=None):
        """The model's float32 outputs for the global batch of training rows `idx` (B,), with modality dropout: each
        pair encoded one side at a time with probability self.modality_dropout (cfg's, or auto's choice; with
        modality_dropout_anneal a > 0 falling linearly to 0 at progress a), how the unimodal placeholders are
        learned. Each rank encodes its part of the batch; the outputs come back whole."""
        anneal = self.cfg.modality_dropout_anneal
        rate = self.modality_dropout * (max(0.0, 1 - training_progress(self.epoch, self.cfg.epoch) / anneal)
                                        if anneal else 1.0)
        unimodal = (torch.rand(len(idx), generator=self.modality_generator) < rate).to(self.device) \
            if rate > 0 else None                                                       # (B,) bool
        mine = local_part(idx, self.ranks)
        if unimodal is not None:
            unimodal = local_part(unimodal, self.ranks)
        with self.autocast():
            outputs = self.model(self.train_image[mine], self.train_text[mine], scale, unimodal)
        return tuple(gather_with_grad(output.float(), self.ranks) for output in outputs)

    def _step(self, loss) -> None:
        """Backward, the gradients summed over ranks, one optimiser step."""
        for optimizer in self._optimizers():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sum_gradients(self.trained_parameters, self.ranks)
        for optimizer in self._optimizers():
            optimizer.step()

    def _neighbours(self, idx, fused_image, fused_text) -> torch.Tensor:
        """(B, B) bool: the neighbour pairs of the global batch `idx` (B,) in neighbour_source's space."""
        inputs = (self.train_image[idx], self.train_text[idx])           # (B, Di), (B, Dt), or (B, c) as both sides:
        if self.input_space is not None and self.neighbour_source in INPUT_SPACES:
            inputs = (project_pairs(*inputs, self.input_space),) * 2
        return balanced_similarity(self.neighbour_source, fused_image, fused_text, *inputs,
                                   self.cfg.balanced_knn, self.cfg.balanced_feature_weight)

    def trainhash(self, scale) -> dict:
        """One epoch of the hash stage. `scale`: a float, or a function of the iteration
        (HashNet's per-iteration schedule). Returns the epoch's loss and code statistics."""
        scale_at = scale if callable(scale) else (lambda _: scale)
        self.model.train()
        stats = EpochCodeStats(balanced=self.cfg.balanced_loss)
        for idx in progress(self._batches(), desc=f"epoch {self.epoch + 1}", leave=False):
            step_scale = scale_at(self.iteration)
            fused_image, fused_text, hash_image, hash_text = self._forward(idx, step_scale)  # (B, F/2), (B, bits)
            similar = self._neighbours(idx, fused_image, fused_text) \
                if self.cfg.balanced_loss or self.cfg.infonce_mask_neighbours else None   # from features, not labels
            loss, fused_term, hash_term = ucmfh_loss(fused_image, fused_text, hash_image, hash_text,
                                                     self.temperature, self.cfg.hash_loss_weight,
                                                     similar if self.cfg.infonce_mask_neighbours else None,
                                                     self.cfg.fused_temperature, self.cfg.hash_loss_sign)
            terms = [("loss", loss), ("fused_loss", fused_term), ("hash_loss", hash_term)]
            if self.cfg.balanced_loss:  # HashNet's pairwise loss: neighbours similar, the rest not
                balanced_term = balanced_pairwise_loss(hash_image, hash_text, similar)
                loss = loss + self.cfg.balanced_weight * balanced_term
                terms = [("loss", loss), *terms[1:], ("balanced_loss", balanced_term)]
            self._step(loss)
            if self.cfg.lr_step == "batch":
                self.lr_scheduler.step()
            stats.add(terms, hash_image, hash_text, step_scale)   # code statistics, summed on the device
            self.iteration += 1
        return stats.result()

    def train_paired(self, scale) -> dict:
        """One paired epoch (hash or real-valued stage), then the LR schedule's step (lr_step batch: in trainhash)."""
        if not self.hash_stage:
            return self.trainreal()
        stats = self.trainhash(scale)
        if self.cfg.lr_step == "epoch":
            self.lr_scheduler.step()
        return stats

    def trainbranch(self, mode: str) -> dict:
        """One epoch of the unimodal branch (unimodal_epochs), the main network frozen: each pair encoded one side at
        a time by the branch, with the main network's loss + unimodal_distill x the squared gap to its paired codes
        (+ unimodal_balanced x the balanced loss), at the branch's scale (ScaleSchedule.branch_at in `mode`)."""
        weight, cfg = self.cfg.unimodal_distill, self.cfg
        scale = self.schedule.branch_at(self.epoch - cfg.epoch, cfg.unimodal_epochs, mode)
        self.model.eval()
        self.branch.train()
        sums, rows = {}, 0
        for idx in progress(self._batches(), desc=f"unimodal {self.epoch + 1 - self.cfg.epoch}", leave=False):
            mine = local_part(idx, self.ranks)
            image, text = self.train_image[mine], self.train_text[mine]
            alone = torch.ones(len(mine), dtype=torch.bool, device=self.device)
            teacher = self._teacher(idx, image, text, scale)   # the targets: the frozen paired codes, (B, bits) each
            with self.autocast():
                outputs = self.branch(image, text, scale, alone)
            fused_image, fused_text, hash_image, hash_text = (gather_with_grad(o.float(), self.ranks) for o in outputs)
            loss, fused_term, hash_term = ucmfh_loss(fused_image, fused_text, hash_image, hash_text,
                                                     self.temperature, self.cfg.hash_loss_weight)
            distill = (distillation_loss(hash_image, teacher[0]) + distillation_loss(hash_text, teacher[1])) / 2
            terms = {"fused_loss": fused_term, "hash_loss": hash_term, "distill_loss": distill}
            if cfg.unimodal_balanced:   # HashNet's loss between the one-side codes; neighbours as the paired stage's
                terms["balanced_loss"] = balanced_pairwise_loss(hash_image, hash_text,
                                                                self._neighbours(idx, fused_image, fused_text))
            loss = loss + weight * distill + cfg.unimodal_balanced * terms.get("balanced_loss", 0.0)
            self._step(loss)
            if self.branch_average is not None:
                self.branch_average.update()
            with torch.no_grad():
                for key, value in {"loss": loss, **terms}.items():
                    sums[key] = sums.get(key, 0.0) + value * len(idx)
            rows, self.iteration = rows + len(idx), self.iteration + 1
        return {**{key: float(value) / rows for key, value in sums.items()}, "scale": scale}

    def _teacher(self, idx, image, text, scale: float) -> list:
        """The frozen paired network's codes at `scale` of the global batch `idx` (B,), (B, bits) each; `image`,
        `text`: this rank's rows of it. In memory, every training row is encoded once per scale and the batch's rows
        are looked up: the network is frozen and each row its own sequence, so the codes are those a batch would get
        (bit for bit on this project's CPU; tests/test_selection.py checks them). Streamed: encoded batch by batch."""
        if self.streamed:
            with torch.no_grad(), self.autocast():
                return [gather_rows(side.float(), self.ranks) for side in self.model.encode_pair(image, text, scale)]
        if scale not in self.teacher_codes:   # at most two scales kept: unimodal_scale auto's candidates alternate
            with torch.no_grad(), self.autocast():
                parts = [self.model.encode_pair(self.train_image[start:start + self.cfg.batch_size],
                                                self.train_text[start:start + self.cfg.batch_size], scale)
                         for start in range(0, self.num_train, self.cfg.batch_size)]
            self.teacher_codes = {**dict(list(self.teacher_codes.items())[-1:]),
                                  scale: [torch.cat([part[side].float() for part in parts]) for side in (0, 1)]}
        return [codes[idx] for codes in self.teacher_codes[scale]]                      # (N, bits) -> (B, bits)

    def trainreal(self) -> dict:
        """One epoch of the real-valued stage (fusion transformer alone)."""
        self.model.train()
        total, rows = 0.0, 0
        for idx in progress(self._batches(), desc=f"epoch {self.epoch + 1}", leave=False):
            loss = contrastive_loss(*self._forward(idx), self.temperature)
            self._step(loss)
            total, rows, self.iteration = total + loss.item() * len(idx), rows + len(idx), self.iteration + 1
        return {"loss": total / rows}

    # ----- evaluation -----
    def evaluate(self, final=False) -> dict:
        """Scores on the query set (evaluate.score_model; the final one writes codes.npz, curves.json with save_codes),
        empty for a set without labels. While the branch trains, the frozen paired network is scored once."""
        if not self.data.labelled:
            return {}
        if final or self.branch is None or self.epoch < self.cfg.epoch:
            return score_model(self.model, self.data, self.cfg, final=final,
                               codes_dir=self.run.path if final and self.cfg.save_codes else None)
        self.paired_scores = self.paired_scores or score_model(self.model, self.data, self.cfg, protocols=("paired",))
        return {**self.paired_scores, **score_model(self.model, self.data, self.cfg, protocols=("unimodal",))}

    # ----- the stage -----
    def train(self) -> dict:
        cfg = self.cfg
        if self.hash_stage:
            self.log("Training Hash Function...")
            self.log(self.schedule.describe())
        if self.ranks.main:
            self.run.path.mkdir(parents=True, exist_ok=True)
        self.run.write_config(to_dict(cfg))
        self.run.open_events(cfg.tensorboard, first_step=self.epoch + 1)
        if not self.data.labelled:
            self.log(f"{self.data.name} has no labels: training without scoring (mAP needs labels)")
        last = self.total_epochs
        if self.epoch:
            self.log(f"Resuming {self.checkpoint_path} after epoch {self.epoch} of {last}")
            self.run.truncate_metrics(self.epoch)
        histograms = HistogramRecorder(self)
        for epoch in range(self.epoch, last):
            start, rates = time.time(), self.learning_rates(epoch)   # the rates the epoch starts with
            if epoch < cfg.epoch:
                # 1. the scale for this epoch (HashNet's schedule varies it per iteration)
                scale = (lambda it, e=epoch: self.schedule.at(e, it)) if self.schedule.per_iteration \
                    else self.schedule.at(epoch)
                if self.hash_stage and self.schedule.enabled:
                    self.log(f"epoch: {epoch + 1}/{cfg.epoch}\n  Progressive scale: "
                             f"{self.schedule.at(epoch, self.iteration):.2f} "
                             f"(progress: {training_progress(epoch, cfg.epoch) * 100:.1f}%)")
                # 2-3. one pass over every training pair, at the epoch's temperature (late_temperature auto:
                # every candidate's), then the learning-rate schedule
                stats = paired_epoch(self, epoch, lambda: self.train_paired(scale))
            else:
                # 1-3. the unimodal branch (unimodal_epochs), a copy of the trained network at first
                if epoch == cfg.epoch:
                    self.branch.load_state_dict({k: v for k, v in self.model.state_dict().items()
                                                 if not k.startswith("unimodal_branch.")})
                    self.model.branch_trained = True     # one-side inputs go to the branch from now on
                    if cfg.unimodal_scale == AUTO and self.schedule.enabled:   # off: every mode is scale 1
                        self.branch_fork = BranchFork.start(self)
                self.log(f"unimodal branch: epoch {epoch + 1 - cfg.epoch}/{cfg.unimodal_epochs}")
                self.temperature = temperature_at(self, epoch)
                stats = branch_epoch(self, epoch)
                if epoch + 1 == last and self.branch_average is not None:   # scored and saved: the average
                    self.branch_average.copy_to_weights()
            self.epoch = epoch + 1
            self.train_seconds += time.time() - start
            record = {"epoch": self.epoch, **stats, **rates, "temperature": self.temperature,
                      "seconds": time.time() - start,
                      **({"selection": self.selection} if self.epoch == 1 and self.selection else {})}
            # 4. score every eval_every epochs and at the end (reported, never used to pick a model)
            if self.epoch == last or (cfg.eval_every and self.epoch % cfg.eval_every == 0):
                self.last_scores = self.evaluate(final=self.epoch == last)
                record.update(self.last_scores)
            histograms.after_epoch(self, epoch)
            unlogged = ("epoch", "seconds", "selection", "branch_selection", "temperature_selection",
                        "neighbour_selection", *rates)
            self.log(f"  epoch {self.epoch}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in record.items() if k not in unlogged))
            # 5. log, then checkpoint every save_every epochs and at the end (unless save_checkpoint is false)
            self.run.append_metrics(record)
            if cfg.save_checkpoint and (self.epoch == last or (cfg.save_every and self.epoch % cfg.save_every == 0)):
                self.save_checkpoint()
            self.after_epoch()
        if not self.last_scores:  # resumed a finished run
            self.last_scores = self.evaluate(final=True)
        results = results_record(cfg, self.bits, self.last_scores, epoch=self.epoch,
                                 train_seconds=self.train_seconds, eval_scale=self.schedule.eval_scale,
                                 protocols=PROTOCOLS, output_dir=self.run.path,
                                 checkpoint=self.checkpoint_path if cfg.save_checkpoint else None,
                                 data=self.data)
        results.update(modality_dropout=self.modality_dropout, selection=self.selection,
                       unimodal_scale=branch_mode(self) if self.branch is not None else None,
                       branch_selection=self.branch_choice, temperature_selection=self.temperature_choice,
                       neighbour_selection=self.neighbour_choice)
        self.run.write_results(results)
        self.run.close_events()
        return results

    def learning_rates(self, epoch: int) -> dict:
        """lr_fusion, lr_hash: the learning rates of the network epoch `epoch` (from 0) trains."""
        groups = self.optimizer_branch.param_groups if epoch >= self.cfg.epoch else \
            [group for optimizer in self._optimizers()[:2] for group in optimizer.param_groups]
        return dict(zip(("lr_fusion", "lr_hash"), (group["lr"] for group in groups)))

    def after_epoch(self) -> None:
        """Hook run after each epoch's checkpoint (tests use it to simulate a crash)."""
