"""UCMFH's contrastive loss, written with one matrix product and cross_entropy.

For a batch of B pairs the 2B embeddings (images then texts) are compared by
cosine similarity / temperature. Each embedding's positive is its partner from
the other modality; its negatives are the other 2B - 2 embeddings of both
modalities (the SimCLR-style NT-Xent that UCMFH uses), or, with `not_negative`,
those of the pairs it does not rule out (infonce_mask_neighbours: the balanced
loss's neighbours, likely false negatives). Any B >= 1 works, so the last
short batch of an epoch is used too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature: float = 0.5,
                     not_negative: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between (B, D) image and (B, D) text embeddings; mean over the 2B rows.
    not_negative: an optional (B, B) bool, true where pair j is no negative of pair i (a likely
    false negative, such as a feature neighbour): both of j's embeddings leave both of i's rows'
    denominators. Its diagonal is ignored: a pair's partner stays its positive."""
    batch = image_emb.shape[0]
    z = F.normalize(torch.cat([image_emb, text_emb]), dim=1)          # (2B, D)
    logits = z @ z.T / temperature                                     # (2B, 2B) cosine / t
    self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    if not_negative is not None:   # (B, B) -> (2B, 2B): the same pairs in all four image/text blocks
        self_mask = self_mask | (not_negative & ~self_mask[:batch, :batch]).repeat(2, 2)
    logits = logits.masked_fill(self_mask, float("-inf"))              # a row is not its own negative
    partner = torch.arange(2 * batch, device=z.device).roll(batch)     # row i <-> row i +/- B
    return F.cross_entropy(logits, partner)


def straight_through_sign(h: torch.Tensor) -> torch.Tensor:
    """The codes retrieval ranks (h >= 0 -> +1, else -1, as metrics/inputs.signs) in the forward pass,
    h's gradient unchanged in the backward pass (straight-through)."""
    return h + (torch.where(h >= 0, 1.0, -1.0).to(h.dtype) - h).detach()


def ucmfh_loss(fused_image, fused_text, hash_image, hash_text, temperature=0.5, hash_weight=0.5, not_negative=None,
               fused_temperature=0.0, sign_codes=False):
    """Hash-stage loss: loss(fused embeddings) + hash_weight * loss(hash outputs), both without the
    negatives that `not_negative` (B, B) rules out (contrastive_loss). fused_temperature > 0: the fused
    term's temperature (0: `temperature`). sign_codes: the hash term compares sign(h), the codes that
    retrieval ranks, with a straight-through gradient. Returns (total, fused_term, hash_term)."""
    fused_term = contrastive_loss(fused_image, fused_text, fused_temperature or temperature, not_negative)
    if sign_codes:
        hash_image, hash_text = straight_through_sign(hash_image), straight_through_sign(hash_text)
    hash_term = contrastive_loss(hash_image, hash_text, temperature, not_negative)
    return fused_term + hash_weight * hash_term, fused_term, hash_term


def neighbour_similarity(fused_image: torch.Tensor, fused_text: torch.Tensor, k: int) -> torch.Tensor:
    """Unsupervised similarity S for the balanced loss, from the features, never labels: pairs i, j
    are similar when one is among the other's k nearest fused pair embeddings (cosine) in the batch.
    (B, F/2), (B, F/2) -> (B, B) bool, symmetric, with a true diagonal."""
    pair = F.normalize(torch.cat([fused_image, fused_text], dim=1).detach(), dim=1)   # (B, F)
    nearest = (pair @ pair.T).topk(min(k, len(pair) - 1) + 1, dim=1).indices          # self + k others
    similar = torch.zeros(len(pair), len(pair), dtype=torch.bool, device=pair.device)
    similar.scatter_(1, nearest, True)
    return similar | similar.T


def neighbour_space(source: str, fused_image, fused_text, image_features, text_features,
                    feature_weight: float = 0.5) -> tuple:
    """The two halves that neighbour_similarity concatenates and compares, for balanced_neighbours
    `source`: the fused pair embeddings, (B, F/2) each, which move as the network trains; the input
    features, (B, Di) and (B, Dt), each side scaled to unit length, which the data fixes; or both, each
    as one unit vector scaled by the square root of its weight, so that a pair's cosine is
    (1 - feature_weight) x its fused cosine + feature_weight x its input cosine (0.5: the mean). shared
    and covariance: as both, the caller passing the pairs projected on a space fitted on the training
    pairs (criteria.fit_input_space) as both sides, (B, c) each (c: balanced_directions or fewer), so the
    input cosine is theirs."""
    fused = (fused_image, fused_text)
    if source == "fused":   # the features are not needed: no work on them in every training step
        return fused
    features = (F.normalize(image_features.float(), dim=1), F.normalize(text_features.float(), dim=1))
    if source == "features":
        return features
    halves = tuple(F.normalize(torch.cat(pair, dim=1).detach(), dim=1) for pair in (fused, features))
    if feature_weight == 0.5:   # the plain mean: the halves as they are (the same bits as before the weight)
        return halves
    return halves[0] * (1 - feature_weight) ** 0.5, halves[1] * feature_weight ** 0.5


def balanced_similarity(source: str, fused_image, fused_text, image_features, text_features, k: int,
                        feature_weight: float = 0.5) -> torch.Tensor:
    """neighbour_similarity (B, B) in the space that balanced_neighbours `source` names (neighbour_space)."""
    return neighbour_similarity(*neighbour_space(source, fused_image, fused_text, image_features, text_features,
                                                 feature_weight), k)


def balanced_pairwise_loss(hash_image: torch.Tensor, hash_text: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """HashNet's weighted pairwise loss between image codes and text codes.

    theta_ij = (10 / bits) <h_i^img, h_j^txt>; l_ij = log(1 + exp(theta_ij)) - s_ij theta_ij.
    HashNet weights similar pairs by S/S1 and dissimilar ones by S/S0 (S1, S0: their counts in the
    batch, S = S1 + S0); averaged over the S pairs this is
        L = mean over similar pairs of l_ij + mean over dissimilar pairs of l_ij,
    so the few similar pairs weigh as much as the many dissimilar ones."""
    theta = (10.0 / hash_image.shape[1]) * hash_image @ hash_text.T      # (B, B)
    pair_loss = F.softplus(theta) - similar.float() * theta
    loss = pair_loss[similar].mean()
    if (~similar).any():
        loss = loss + pair_loss[~similar].mean()
    return loss


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the unimodal branch's outputs and the frozen paired ones, (B, b)
    each: the branch learns codes in the paired codes' space (the teacher gets no gradient)."""
    return (student - teacher.detach()).pow(2).mean()
