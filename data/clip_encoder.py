"""An open_clip model that turns images and texts into unit-length features.

Weights come from a local checkpoint file, or an open_clip tag (e.g.
``openai``) whose file is already in the local cache. Nothing is downloaded
unless ``allow_download`` is set; ``"random"`` builds a randomly initialised
model, for tests and smoke runs only.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError

RANDOM_WEIGHTS = "random"
HOW_TO_GET_WEIGHTS = ("pass --pretrained FILE (a local open_clip or OpenAI CLIP checkpoint), or an open_clip tag "
                      "such as 'openai' whose weights are already in the local cache (add --allow_download to "
                      "fetch them once); --pretrained random builds random weights for a smoke test")


def sha256_of(path, block=1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_tag_file(open_clip, model_name, tag, cache_dir):
    """The local file of a tag's weights, or None when it is not cached."""
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, filename = os.path.split(cfg["hf_hub"])
            for name in (filename.rsplit(".", 1)[0] + ".safetensors" if filename else "open_clip_model.safetensors",
                         filename or "open_clip_pytorch_model.bin"):
                found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    if cfg.get("url"):
        candidate = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if candidate.is_file():
            return str(candidate)
    return None


@functools.lru_cache(maxsize=8)
def _tokenizer(model_name: str, text_config: str):
    """open_clip's tokenizer of an architecture, built once per process and text-tower config
    (`text_config`, its JSON: a re-registered name with another config gets its own). Building
    one reads and merges the BPE vocabulary (about 0.3 s); an encoder, a server and a search
    index that share an architecture share it (it keeps no state between calls but a cache)."""
    import open_clip

    return open_clip.get_tokenizer(model_name)


@contextlib.contextmanager
def _offline():
    """Keep huggingface_hub from reaching the network while a cached tag loads."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


class ClipEncoder:
    """open_clip image and text towers; features are L2-normalised float32 numpy arrays."""

    def __init__(self, model_name="ViT-B-32", pretrained=None, allow_download=False, device="cpu",
                 cache_dir=None):
        import open_clip

        if model_name.endswith(".json") and os.path.isfile(model_name):   # an architecture file of open_clip's
            open_clip.add_model_config(model_name)                        # format, known by its stem from now
            model_name = Path(model_name).stem
        if model_name not in open_clip.list_models():
            raise DataError(f"--clip_model {model_name!r} is not an open_clip model or model config file "
                            f"(e.g. ViT-B-32, ViT-B-16, ViT-L-14; see open_clip.list_models())")
        if not pretrained:
            raise DataError(f"no CLIP weights given: {HOW_TO_GET_WEIGHTS}")
        self.device = torch.device(device)
        weights_file, source = None, pretrained
        context = contextlib.nullcontext()
        if pretrained == RANDOM_WEIGHTS:
            source = None
        elif os.path.isfile(pretrained):
            weights_file = pretrained
        elif open_clip.get_pretrained_cfg(model_name, pretrained):
            weights_file = _cached_tag_file(open_clip, model_name, pretrained, cache_dir)
            if weights_file is None and not allow_download:
                raise DataError(f"--pretrained {pretrained}: the weights of {model_name}/{pretrained} are not "
                                f"in the local cache and downloading is off; {HOW_TO_GET_WEIGHTS}")
            context = contextlib.nullcontext() if allow_download else _offline()
        else:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
            raise DataError(f"--pretrained {pretrained}: not a file and not an open_clip tag of {model_name} "
                            f"(tags: {tags})")
        try:
            # random weights are drawn from seed 0: the same in every process and run, and the
            # caller's random stream is left as it was
            with context, torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=source, device=self.device, cache_dir=cache_dir)
        except Exception as err:
            raise DataError(f"--pretrained {pretrained}: could not load {model_name} "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        if weights_file is None and source is not None:  # a tag fetched just now
            weights_file = _cached_tag_file(open_clip, model_name, pretrained, cache_dir)
        self.model = model.eval()
        self.preprocess = preprocess
        text_config = (open_clip.get_model_config(model_name) or {}).get("text_cfg")
        self.tokenizer = _tokenizer(model_name, json.dumps(text_config, sort_keys=True, default=str))
        self.context_length = getattr(self.model, "context_length", 77)
        self.metadata = {
            "clip_model": model_name,
            "pretrained": pretrained,
            "weights_file": str(Path(weights_file).resolve()) if weights_file else None,
            "weights_sha256": sha256_of(weights_file) if weights_file else None,
            "preprocess": " | ".join(str(t).replace("\n", " ") for t in getattr(preprocess, "transforms", [])),
            "text_context_length": int(self.context_length),
            "open_clip_version": open_clip.__version__,
            "torch_version": torch.__version__,
        }

    def _autocast(self):
        # mixed precision on the GPU; full precision on the CPU, where fp16 is slow
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) preprocessed images -> (B, D) unit-length float32 features."""
        with self._autocast():
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: list) -> np.ndarray:
        """Texts -> (B, D) unit-length float32 features. Longer texts are cut to the
        tokenizer's context (77 tokens for CLIP models)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._autocast():
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1).cpu().numpy()
