"""UCMFH's contrastive loss, written with one matrix product and cross_entropy.

For a batch of B pairs the 2B embeddings (images then texts) are compared by
cosine similarity / temperature. Each embedding's positive is its partner from
the other modality; its negatives are the other 2B - 2 embeddings of both
modalities (the SimCLR-style NT-Xent that UCMFH uses). Any B >= 1 works, so
the last short batch of an epoch is used too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Symmetric InfoNCE between (B, D) image and (B, D) text embeddings; mean over the 2B rows."""
    batch = image_emb.shape[0]
    z = F.normalize(torch.cat([image_emb, text_emb]), dim=1)          # (2B, D)
    logits = z @ z.T / temperature                                     # (2B, 2B) cosine / t
    self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))              # a row is not its own negative
    partner = torch.arange(2 * batch, device=z.device).roll(batch)     # row i <-> row i +/- B
    return F.cross_entropy(logits, partner)


def ucmfh_loss(fused_image, fused_text, hash_image, hash_text, temperature=0.5, hash_weight=0.5):
    """Hash-stage loss: loss(fused embeddings) + hash_weight * loss(hash outputs).
    Returns (total, fused_term, hash_term)."""
    fused_term = contrastive_loss(fused_image, fused_text, temperature)
    hash_term = contrastive_loss(hash_image, hash_text, temperature)
    return fused_term + hash_weight * hash_term, fused_term, hash_term
