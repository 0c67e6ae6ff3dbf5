"""An epoch's training statistics: its losses and how binary its codes are, summed step by step.

Each step adds its loss terms and its hash outputs h = tanh(scale * x) of both sides, weighted by
the batch's rows; the sums stay on the device (no host sync per step). `result` gives per-pair
means: the losses, the scale, mean |h|, the share of |h| > 0.95 (saturated), the quantisation
error mean (|h| - 1)^2, the bit balance (1 = every bit splits the codes 50/50) and the spread of
the per-step loss (loss_step_std).
"""
from __future__ import annotations

import torch


class EpochCodeStats:
    def __init__(self, balanced: bool):
        """balanced: the steps' terms include the balanced loss (its sum comes last)."""
        self.sums = dict.fromkeys(("loss", "fused_loss", "hash_loss", "scale", "abs_h", "saturated", "quant_error",
                                   *(("balanced_loss",) if balanced else ())), 0.0)
        self.sign_sum, self.rows, self.step_losses = 0.0, 0, []

    @torch.no_grad()
    def add(self, terms, hash_image: torch.Tensor, hash_text: torch.Tensor, scale: float) -> None:
        """One step: `terms` [(key, loss)], the first the step's total; hash outputs (B, bits) each."""
        rows = len(hash_image)
        h = torch.cat([hash_image, hash_text]).abs()                                # (2B, bits)
        for key, value in terms:
            self.sums[key] += value * rows
        self.sums["scale"] += scale * rows
        self.sums["abs_h"] += h.mean(1).sum() / 2
        self.sums["saturated"] += (h > 0.95).float().mean(1).sum() / 2
        self.sums["quant_error"] += ((h - 1) ** 2).mean(1).sum() / 2
        self.sign_sum = self.sign_sum + torch.cat([hash_image, hash_text]).sign().sum(0)     # (bits,)
        self.step_losses.append(terms[0][1].detach())
        self.rows += rows

    def result(self) -> dict:
        stats = {key: float(value) / self.rows for key, value in self.sums.items()}
        stats["bit_balance"] = 1.0 - (self.sign_sum / (2 * self.rows)).abs().mean().item()
        stats["loss_step_std"] = float(torch.stack(self.step_losses).std()) if len(self.step_losses) > 1 else 0.0
        return stats
