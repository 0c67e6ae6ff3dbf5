"""Networks: UCMFH's fusion transformer and its hash head.

Shapes: B = batch, Di/Dt = input image/text feature sizes, F = fusion width
(1024 as in UCMFH: a 512-d image half and a 512-d text half), b = code bits. WeightAverage: the
moving average of a network's weights that the unimodal branch is scored with.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PROTOCOLS = ("paired", "unimodal")   # how an item's codes are computed; see CrossModalHasher


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout from 16-bit uniform draws, four to each 64-bit draw of the generator: a
    quarter of the generator calls of rand_like, about twice as fast on CPUs as nn.Dropout. An
    element is dropped with probability round(p * 65536) / 65536 (p to within 1e-5) and the kept
    ones are scaled by the inverse of the keep rate, so the expectation is exactly x."""
    if not training or p == 0:
        return x
    cut = round(p * 65536)
    if cut >= 65536:
        return torch.zeros_like(x)
    bits = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-2 ** 63, None)
    keep = bits.view(torch.int16)[:x.numel()].view(x.shape) >= cut - 32768     # int16 is uniform on [-32768, 32767]
    return x * keep.to(x.dtype).mul_(65536 / (65536 - cut))


def _length_one_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, value=None) -> torch.Tensor:
    """One post-norm TransformerEncoderLayer (ReLU) on (B, F) tokens that are sequences of length 1.

    Over a single token the attention softmax is exactly 1, so self-attention equals
    out_proj(v_proj(x)): the query and key projections (2/3 of in_proj) can be skipped and no
    score matrix is formed. Same weights, so checkpoints load either way. In training, dropout
    on the attention weights becomes a keep-or-drop of each head's value, as in PyTorch.
    `value`: the (weight, bias) of the value rows to use (FuseTransEncoder.trainable_parameters'
    views); by default slices of in_proj."""
    attn = layer.self_attn
    width, heads = attn.embed_dim, attn.num_heads
    weight, bias = value or (attn.in_proj_weight[2 * width:], attn.in_proj_bias[2 * width:])
    value = F.linear(x, weight, bias)                                                         # (B, F)
    if layer.training and attn.dropout > 0:
        keep = (torch.rand(len(x), heads, 1, device=x.device) >= attn.dropout) / (1 - attn.dropout)
        value = (value.view(len(x), heads, -1) * keep).view(len(x), width)                   # (B, H, F/H)
    attended = attn.out_proj(value)
    x = layer.norm1(x + _dropout(attended, layer.dropout1.p, layer.training))
    hidden = _dropout(F.relu(layer.linear1(x)), layer.dropout.p, layer.training)                # (B, ff)
    return layer.norm2(x + _dropout(layer.linear2(hidden), layer.dropout2.p, layer.training))


class FuseTransEncoder(nn.Module):
    """Image and text features of a pair (or one side alone) in, fused image and text embeddings out.

    The two inputs are concatenated into one F-d token and passed through a
    TransformerEncoder as a sequence of length 1, in training and evaluation
    alike, so an item's output never depends on the other items of its batch
    (UCMFH feeds (B, 1024) at test time, which PyTorch reads as one sequence;
    `batch_as_sequence = True` reproduces that, for the UCMFH-compatible preset only).
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
        # Learned stand-ins for an absent side, in the projected (F/2) space: an image alone is
        # encoded as (image, text_placeholder), a text alone as (image_placeholder, text).
        self.image_placeholder = nn.Parameter(torch.zeros(self.half))
        self.text_placeholder = nn.Parameter(torch.zeros(self.half))
        # True only to reproduce UCMFH's evaluation flaw (config eval_sequence "batch"); not a weight
        self.batch_as_sequence = False
        self._value_views: list = []     # per layer (weight, bias): see trainable_parameters

    def trainable_parameters(self) -> list:
        """The parameters an optimiser should update: all of them, except that each attention's
        in_proj (query, key and value rows) is replaced by leaf views of its value rows.

        Every item is a length-1 sequence in training, so the query and key rows get no gradient
        and never change (they matter only to eval_sequence "batch"). Training the value rows
        through views that share in_proj's storage gives the same updates without a zero-filled
        (3F, F) gradient and without Adam passing over the idle 2/3 each step; the state dict is
        unchanged. The views are made once and returned again on later calls. Call it after the
        model is on its device: moving it breaks the sharing, which the forward pass refuses."""
        if not self._value_views:
            for layer in self.encoder.layers:
                attn, width = layer.self_attn, layer.self_attn.embed_dim
                self._value_views.append((nn.Parameter(attn.in_proj_weight.data[2 * width:]),
                                          nn.Parameter(attn.in_proj_bias.data[2 * width:])))
        views = {}
        for index, layer in enumerate(self.encoder.layers):
            attn = layer.self_attn
            views[id(attn.in_proj_weight)], views[id(attn.in_proj_bias)] = self._value_rows(index, layer)
        return [views.get(id(param), param) for param in self.parameters()]

    def _value_rows(self, index: int, layer) -> tuple | None:
        """Layer `index`'s value views, checked to still share in_proj's storage; None without views."""
        if not self._value_views:
            return None
        weight, bias = self._value_views[index]
        attn = layer.self_attn
        offset = 2 * attn.embed_dim * attn.in_proj_weight.element_size()
        if weight.data_ptr() != attn.in_proj_weight.data_ptr() + offset * attn.embed_dim or \
                bias.data_ptr() != attn.in_proj_bias.data_ptr() + offset:
            raise RuntimeError("FuseTransEncoder was moved after trainable_parameters(): its optimiser no "
                               "longer holds the weights; build the model on its device first")
        return weight, bias

    def _side(self, features, proj, placeholder, absent, batch):
        """(B, D) features -> (B, F/2) projected tokens; rows where `absent` (B,) bool is set, or all
        rows when `features` is None, become the placeholder."""
        if features is None:
            return placeholder.expand(batch, -1)
        tokens = proj(features)
        return tokens if absent is None else torch.where(absent.unsqueeze(1), placeholder, tokens)

    def forward(self, image: torch.Tensor | None, text: torch.Tensor | None,
                image_absent: torch.Tensor | None = None, text_absent: torch.Tensor | None = None):
        """(B, Di), (B, Dt) -> fused image (B, F/2) and text (B, F/2) embeddings.

        A side passed as None, or the rows of it marked in `image_absent` / `text_absent` ((B,) bool),
        is replaced by that side's learned placeholder, so the output depends on the other side only."""
        if image is None and text is None:
            raise ValueError("FuseTransEncoder needs image or text features (or both)")
        # .shape[0], not len(): traced as a size, so an ONNX export keeps its batch dimension dynamic
        batch = (image if image is not None else text).shape[0]
        tokens = torch.cat([self._side(image, self.image_proj, self.image_placeholder, image_absent, batch),
                            self._side(text, self.text_proj, self.text_placeholder, text_absent, batch)],
                           dim=1)                                                    # (B, F)
        if self.batch_as_sequence:   # UCMFH's evaluation: the (B, F) batch is ONE sequence of length B
            fused = self.encoder(tokens.unsqueeze(0)).squeeze(0)
        else:                        # every item its own length-1 sequence
            fused = tokens
            for index, layer in enumerate(self.encoder.layers):
                fused = _length_one_layer(layer, fused, self._value_rows(index, layer))  # (B, F)
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
        linear1, _, dropout, linear2 = self.mlp
        hidden = _dropout(F.relu(linear1(F.normalize(x, dim=1))), dropout.p, self.training)   # (B, hidden)
        logits = linear2(hidden)                                                               # (B, nbits)
        return torch.tanh(scale * logits if self.use_progressive else logits)


# UCMFH's names for the two heads: one class, two instances.
ImageMlp = HashHead
TextMlp = HashHead


class CrossModalHasher(nn.Module):
    """The fusion transformer and, in a hash stage, the image and text hash heads: the model a
    checkpoint holds, with the encoding API that evaluation, indexing and search use.

    encode_pair(image, text)  UCMFH's protocol ("paired"): both codes of an item come from its pair.
    encode_image(image)       an image alone (text side = placeholder): a real image query.
    encode_text(text)         a text alone (image side = placeholder): a real text query.
    Without heads (the real-valued stage) they return the fused embeddings instead of hash outputs.
    Hash outputs are tanh(scale * x) in (-1, 1); `default_scale` is the test-time scale; sign()
    of them gives the binary codes.
    """

    def __init__(self, fusion: FuseTransEncoder, image_head: HashHead | None = None,
                 text_head: HashHead | None = None, default_scale: float = 1.0,
                 unimodal_branch: CrossModalHasher | None = None):
        super().__init__()
        if (image_head is None) != (text_head is None):
            raise ValueError("CrossModalHasher needs both hash heads or neither")
        self.fusion, self.image_head, self.text_head = fusion, image_head, text_head
        self.default_scale = default_scale
        # with config unimodal_epochs: a second network of the same shape for one-side inputs
        # (encode_image, encode_text), trained after this one is frozen
        self.unimodal_branch = unimodal_branch
        # whether the branch encodes one-side inputs: not before its training starts (its weights are
        # random until then), when this network with its placeholders does; not a weight (set by the
        # Solver and by runio.checkpoint.load_weights)
        self.branch_trained = False

    @property
    def hashing(self) -> bool:
        return self.image_head is not None

    def _out(self, head, fused, scale):
        """A side's output: its hash head's at `scale` (default: the test-time scale), or the fused
        embedding itself when there are no heads."""
        return head(fused, self.default_scale if scale is None else scale) if self.hashing else fused

    @torch.no_grad()
    def encode_split(self, split, protocol: str, batch_size: int, scale: float | None = None) -> tuple:
        """(N, b) image-side and (N, b) text-side outputs for every row of `split` (features with .image
        and .text, numpy or lazily read HDF5), on the CPU. protocol "paired": both from the pair (UCMFH);
        "unimodal": image side from the image alone, text side from the text alone. Batching cannot
        change them: every item is its own length-1 sequence."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        self.eval()
        device = next(self.parameters()).device
        image_out, text_out = [], []
        for start in range(0, len(split), batch_size):
            rows = slice(start, start + batch_size)
            image = torch.from_numpy(np.asarray(split.image[rows])).to(device)
            text = torch.from_numpy(np.asarray(split.text[rows])).to(device)
            if protocol == "paired":
                image_codes, text_codes = self.encode_pair(image, text, scale)
            else:
                image_codes, text_codes = self.encode_image(image, scale), self.encode_text(text, scale)
            image_out.append(image_codes.cpu())
            text_out.append(text_codes.cpu())
        return torch.cat(image_out), torch.cat(text_out)

    def encode_protocols(self, split, batch_size: int, sequence: str = "item", protocols=None) -> dict:
        """protocol -> encode_split(split, protocol, batch_size) for each of `protocols` (None: every
        one). sequence "batch" feeds each batch as ONE sequence (UCMFH's evaluation; config
        eval_sequence) to every network that encodes it, the unimodal branch's included; "item" does not."""
        fusions = [module for module in self.modules() if isinstance(module, FuseTransEncoder)]
        for fusion in fusions:
            fusion.batch_as_sequence = sequence == "batch"
        try:
            return {protocol: self.encode_split(split, protocol, batch_size)
                    for protocol in protocols or PROTOCOLS}
        finally:
            for fusion in fusions:
                fusion.batch_as_sequence = False

    def encode_pair(self, image: torch.Tensor, text: torch.Tensor, scale: float | None = None):
        """(B, Di), (B, Dt) -> image-side and text-side outputs, (B, b) each (b = bits, or F/2)."""
        fused_image, fused_text = self.fusion(image, text)
        return self._out(self.image_head, fused_image, scale), self._out(self.text_head, fused_text, scale)

    def encode_image(self, image: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """(B, Di) image features alone -> (B, b) image-side outputs (by the unimodal branch once trained)."""
        if self.unimodal_branch is not None and self.branch_trained:
            return self.unimodal_branch.encode_image(image, self.default_scale if scale is None else scale)
        return self._out(self.image_head, self.fusion(image, None)[0], scale)

    def encode_text(self, text: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """(B, Dt) text features alone -> (B, b) text-side outputs (by the unimodal branch once trained)."""
        if self.unimodal_branch is not None and self.branch_trained:
            return self.unimodal_branch.encode_text(text, self.default_scale if scale is None else scale)
        return self._out(self.text_head, self.fusion(None, text)[1], scale)

    def forward(self, image: torch.Tensor, text: torch.Tensor, scale: float | None = None,
                unimodal: torch.Tensor | None = None):
        """Training pass with modality dropout. (B, Di), (B, Dt), `unimodal` (B,) bool -> fused image,
        fused text (B, F/2) and, with heads, hash image, hash text (B, bits).

        Row i is encoded as a pair, or, where unimodal[i] is set, one side at a time: its image half
        from (image_i, text placeholder) and its text half from (image placeholder, text_i). The
        extra text-alone rows ride in the same forward pass: B + (number of unimodal rows) tokens.
        """
        if unimodal is None or not bool(unimodal.any()):
            fused_image, fused_text = self.fusion(image, text)
        else:
            alone = unimodal.nonzero().squeeze(1)                                  # (U,)
            batch, extra = len(image), len(alone)
            no = torch.zeros(batch, dtype=torch.bool, device=image.device)
            yes = torch.ones(extra, dtype=torch.bool, device=image.device)
            fused_image_all, fused_text_all = self.fusion(
                torch.cat([image, image[alone]]), torch.cat([text, text[alone]]),
                image_absent=torch.cat([no, yes]), text_absent=torch.cat([unimodal, ~yes]))  # (B+U, F/2)
            text_rows = torch.arange(batch, device=image.device)
            text_rows[alone] = batch + torch.arange(extra, device=image.device)
            fused_image, fused_text = fused_image_all[:batch], fused_text_all[text_rows]
        if not self.hashing:
            return fused_image, fused_text
        return (fused_image, fused_text, self._out(self.image_head, fused_image, scale),
                self._out(self.text_head, fused_text, scale))


def build_model(cfg, image_dim: int, text_dim: int, bits: int | None, default_scale: float,
                branch: bool | None = None) -> CrossModalHasher:
    """A CrossModalHasher with the sizes of a Config `cfg`; hash heads when `bits`; a unimodal
    branch of the same shape when `branch` (default: a hash model with cfg.unimodal_epochs > 0)."""
    def network():
        fusion = FuseTransEncoder(image_dim, text_dim, cfg.fusion_dim, cfg.fusion_layers, cfg.fusion_heads,
                                  cfg.fusion_ff_dim, cfg.fusion_dropout)
        heads = (None, None)
        if bits:
            make = lambda: HashHead(cfg.fusion_dim // 2, bits, cfg.hash_hidden, cfg.hash_dropout,  # noqa: E731
                                    cfg.use_progressive_hash)
            heads = (make(), make())                                   # ImageMlp, TextMlp
        return CrossModalHasher(fusion, *heads, default_scale=default_scale)
    model = network()
    if bool(bits and cfg.unimodal_epochs > 0) if branch is None else branch:
        with torch.random.fork_rng(devices=[]):    # the main network and what follows draw as without it
            model.unimodal_branch = network()       # (its weights are the main one's when stage 2 starts)
    return model


class WeightAverage:
    """A moving average of a network's weights over its last training steps (the unimodal branch's,
    config unimodal_average). After each optimiser step, `update()` moves it towards the weights:

        average <- decay * average + (1 - decay) * weights,   decay = min(1 - 1/horizon, (n - 1) / n)

    with n counting the updates from 1: the plain mean of the weights after each step while
    n <= horizon, then an exponential average whose weight on a step halves every 0.7 * horizon steps. The network
    is scored with the average (`copy_to_weights`), not its last weights: the last steps wander
    around a minimum and their mean sits nearer it (docs/zoo.md, "Averaging the branch's weights")."""

    def __init__(self, parameters, horizon_steps: float):
        self.parameters = list(parameters)
        self.horizon = max(1.0, float(horizon_steps))   # 1: the average is the last weights
        self.updates = 0
        self.average: list[torch.Tensor] | None = None  # copies of the parameters, made at the first update

    def update(self) -> None:
        """Fold the present weights in (call after each optimiser step)."""
        with torch.no_grad():
            weights = [p.detach() for p in self.parameters]
            if self.average is None:
                self.average = [w.clone() for w in weights]
            self.updates += 1
            decay = min(1.0 - 1.0 / self.horizon, (self.updates - 1) / self.updates)   # 0 at the first update
            for average, weight in zip(self.average, weights):
                average.lerp_(weight, 1.0 - decay)

    def copy_to_weights(self) -> None:
        """Replace the parameters by their average (nothing to do before the first update)."""
        if self.average is not None:
            with torch.no_grad():
                for parameter, average in zip(self.parameters, self.average):
                    parameter.copy_(average)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "average": None if self.average is None
                else [a.clone() for a in self.average]}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.average = None if state["average"] is None else \
            [a.to(p.device, p.dtype).clone() for a, p in zip(state["average"], self.parameters)]
