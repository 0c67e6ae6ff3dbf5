"""A trained model outside the training loop: build it from a config, load a checkpoint's
weights into it, and encode whole splits under either evaluation protocol.

The Solver, scripts/build_index.py and search.py all go through these functions,
so a code computed at evaluation, at indexing and at search time is the same.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from config import FIELDS, Config, ConfigError
from model import CrossModalHasher, FuseTransEncoder, HashHead
from schedules import ScaleSchedule

PLACEHOLDER_KEYS = ("image_placeholder", "text_placeholder")


def read_checkpoint(path, device="cpu") -> dict:
    """A checkpoint file written by the Solver, loaded with weights_only=True (no code from the file
    runs). Raises ConfigError (one line naming the file) when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated, foreign or not a checkpoint at all
        raise ConfigError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None


def build_model(cfg: Config, image_dim: int, text_dim: int, bits: int | None,
                default_scale: float) -> CrossModalHasher:
    """A CrossModalHasher with the sizes in `cfg`; hash heads when `bits`."""
    fusion = FuseTransEncoder(image_dim, text_dim, cfg.fusion_dim, cfg.fusion_layers, cfg.fusion_heads,
                              cfg.fusion_ff_dim, cfg.fusion_dropout)
    heads = (None, None)
    if bits:
        make = lambda: HashHead(cfg.fusion_dim // 2, bits, cfg.hash_hidden, cfg.hash_dropout,
                                cfg.use_progressive_hash)
        heads = (make(), make())                                   # ImageMlp, TextMlp
    return CrossModalHasher(fusion, *heads, default_scale=default_scale)


def load_weights(model: CrossModalHasher, state: dict, source: str, log=print) -> None:
    """Checkpoint weights (keys fusion, image_head, text_head) into `model`. A checkpoint from
    before the unimodal placeholders existed loads with them at their initial value (a note says
    the unimodal scores of such a model mean little); any other mismatch is an error."""
    missing = model.fusion.load_state_dict(state["fusion"], strict=False).missing_keys
    unexpected = [k for k in state["fusion"] if k not in model.fusion.state_dict()]
    if unexpected or set(missing) - set(PLACEHOLDER_KEYS):
        raise ConfigError(f"{source}: fusion weights do not fit this model "
                         f"(missing {sorted(set(missing) - set(PLACEHOLDER_KEYS))}, unexpected {unexpected})")
    if missing:
        log(f"note: {source} predates the unimodal placeholders; its unimodal codes use untrained ones")
    if model.hashing:
        for name, head in (("image_head", model.image_head), ("text_head", model.text_head)):
            try:
                head.load_state_dict(state[name])
            except (KeyError, RuntimeError) as err:  # absent, or shapes of another hash_hidden / bits
                raise ConfigError(f"{source}: {name} weights do not fit this model "
                                  f"({str(err).splitlines()[-1].strip()[:160] or type(err).__name__})") from None


def input_dims(state: dict, fusion_dim: int) -> tuple:
    """(image_dim, text_dim) a checkpoint was trained on: the input width of each side's projection,
    or F/2 where the features were used as they are (no projection)."""
    fusion = state["fusion"]
    width = lambda side: int(fusion[f"{side}_proj.weight"].shape[1]) if f"{side}_proj.weight" in fusion \
        else fusion_dim // 2
    return width("image"), width("text")


@torch.no_grad()
def encode_split(model: CrossModalHasher, split, protocol: str, batch_size: int, device,
                 scale: float | None = None) -> tuple:
    """(N, b) image-side and (N, b) text-side outputs for every row of `split` (features with
    .image and .text), on the CPU. protocol "paired": both from the pair (UCMFH); "unimodal":
    image side from the image alone, text side from the text alone. Batching cannot change them:
    every item is its own length-1 sequence."""
    if protocol not in ("paired", "unimodal"):
        raise ValueError(f"protocol {protocol!r} is not one of paired, unimodal")
    model.eval()
    image_out, text_out = [], []
    for start in range(0, len(split), batch_size):
        rows = slice(start, start + batch_size)
        image = torch.from_numpy(np.asarray(split.image[rows])).to(device)
        text = torch.from_numpy(np.asarray(split.text[rows])).to(device)
        if protocol == "paired":
            image_codes, text_codes = model.encode_pair(image, text, scale)
        else:
            image_codes, text_codes = model.encode_image(image, scale), model.encode_text(text, scale)
        image_out.append(image_codes.cpu())
        text_out.append(text_codes.cpu())
    return torch.cat(image_out), torch.cat(text_out)


# Config keys that decide what a checkpoint's network computes; an index records them so that a
# search can tell whether a checkpoint is the one its codes came from.
MODEL_KEYS = ("fusion_dim", "fusion_layers", "fusion_heads", "fusion_ff_dim", "hash_hidden",
              "use_progressive_hash")


def load_trained_model(path, device="cpu", log=print):
    """A hash-stage checkpoint -> (CrossModalHasher in eval mode, info dict with bits, image_dim,
    text_dim, config and the model keys). Raises ConfigError (one line naming the file)."""
    state = read_checkpoint(path, device)
    try:
        saved = dict(state["config"])
        bits = state.get("bits")
    except Exception as err:  # a loadable file that is not one of our checkpoints
        raise ConfigError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not bits or "image_head" not in state:
        raise ConfigError(f"{path}: a real-valued (train_real) checkpoint has no hash heads; "
                          f"pass a train_hash checkpoint (checkpoints/hash/<dataset>_hash_<bits>.pth)")
    cfg = Config(**{k: v for k, v in saved.items() if k in FIELDS})
    image_dim, text_dim = input_dims(state, cfg.fusion_dim)
    model = build_model(cfg, image_dim, text_dim, bits, ScaleSchedule(cfg).eval_scale)
    load_weights(model, state, str(path), log)
    info = {"bits": int(bits), "image_dim": image_dim, "text_dim": text_dim, "config": saved,
            "model": {k: saved.get(k) for k in MODEL_KEYS}, "epoch": state.get("epoch")}
    return model.to(device).eval(), info
