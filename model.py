"""Networks: UCMFH's fusion transformer and its hash head.

Shapes: B = batch, Di/Dt = input image/text feature sizes, F = fusion width
(1024 as in UCMFH: a 512-d image half and a 512-d text half), b = code bits.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FuseTransEncoder(nn.Module):
    """Image and text features of a pair in, fused image and text embeddings out.

    The two inputs are concatenated into one F-d token and passed through a
    TransformerEncoder as a sequence of length 1, in training and evaluation
    alike, so an item's output never depends on the other items of its batch
    (UCMFH feeds (B, 1024) at test time, which PyTorch reads as one sequence).
    Inputs whose size is not F/2 get a linear projection to F/2 first.
    """

    def __init__(self, image_dim=512, text_dim=512, fusion_dim=1024, num_layers=2,
                 num_heads=4, ff_dim=2048, dropout=0.1):
        super().__init__()
        self.half = fusion_dim // 2
        self.image_proj = nn.Identity() if image_dim == self.half else nn.Linear(image_dim, self.half)
        self.text_proj = nn.Identity() if text_dim == self.half else nn.Linear(text_dim, self.half)
        layer = nn.TransformerEncoderLayer(fusion_dim, num_heads, ff_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        """(B, Di), (B, Dt) -> fused image (B, F/2) and text (B, F/2) embeddings."""
        tokens = torch.cat([self.image_proj(image), self.text_proj(text)], dim=1)  # (B, F)
        fused = self.encoder(tokens.unsqueeze(1)).squeeze(1)                       # (B, 1, F) -> (B, F)
        fused = F.normalize(fused, dim=1)
        return fused[:, :self.half], fused[:, self.half:]


class HashHead(nn.Module):
    """UCMFH's hash head: L2-normalise, Linear -> ReLU -> Dropout -> Linear to `nbits`, tanh.

    With `use_progressive` the output is tanh(scale * x), the HashNet
    continuation; without it the scale is ignored and the output is tanh(x).
    """

    def __init__(self, in_dim: int, nbits: int, hidden: int = 4096, dropout: float = 0.3,
                 use_progressive: bool = True):
        super().__init__()
        self.nbits = nbits
        self.use_progressive = use_progressive
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(hidden, nbits))

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """(B, in_dim) -> (B, nbits) in (-1, 1)."""
        logits = self.mlp(F.normalize(x, dim=1))
        return torch.tanh(scale * logits if self.use_progressive else logits)


# UCMFH's names for the two heads: one class, two instances.
ImageMlp = HashHead
TextMlp = HashHead
