"""Exported query encoders: a checkpoint's image-side and text-side hash encoders as ONNX (or
TorchScript) files, runnable without this framework or the checkpoint (scripts/export.py).

Each file maps CLIP features (B, D) float32 to two outputs:
    h      (B, bits) float32  tanh(scale * x) at the checkpoint's test-time scale: what
                              CrossModalHasher.encode_image / encode_text return
    codes  (B, bits) float32  +1 where h >= 0, else -1: the binary code (evaluation's sign
                              convention, so packing them gives the index's bits)
The one-side encoders are the checkpoint's unimodal path: its unimodal branch once that trained,
else the paired network with the other side's learned placeholder (CrossModalHasher.branch_trained).

Facts travel inside each file (ONNX metadata_props; TorchScript extra file metadata.json): modality,
bits, scale, input sizes, the checkpoint's sha256, protocol and the network used, so a search can
tell whether an export is the one its index was built with.
"""
from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from config import ConfigError
from data.clip_encoder import sha256_of
from runio.atomic import atomic_write_bytes

MODALITIES = ("image", "text")
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
FORMAT_TAG = "ucmfh-ph-encoder/1"
OUTPUTS = ("h", "codes")
SIGN_TOLERANCE = 1e-6   # a sign may flip between runtimes only where |h| is below this


class OneSideEncoder(nn.Module):
    """(B, D) features of one modality -> h (B, bits) and codes (B, bits) +-1, by the model's
    encode_image / encode_text at its test-time scale."""

    def __init__(self, model, modality: str):
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, features: torch.Tensor):
        encode = self.model.encode_image if self.modality == "image" else self.model.encode_text
        h = encode(features)
        return h, torch.where(h >= 0, 1.0, -1.0)


def file_name(modality: str, fmt: str) -> str:
    return f"{modality}_encoder{FORMATS[fmt]}"


def encoder_facts(model, info: dict, checkpoint) -> dict:
    """What both exported encoders say about themselves (all values strings, as ONNX metadata_props
    are); each adds its modality and input size (side_facts)."""
    branch = model.unimodal_branch is not None and model.branch_trained
    facts = {"format": FORMAT_TAG, "bits": info["bits"], "scale": repr(float(model.default_scale)),
             "image_dim": info["image_dim"], "text_dim": info["text_dim"],
             "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": sha256_of(checkpoint),
             "protocol": "unimodal", "network": "unimodal branch" if branch else "paired network with placeholders",
             "outputs": "h = tanh(scale * x) (B, bits) float32; codes = +1 where h >= 0 else -1 (B, bits) float32",
             "model": json.dumps(info["model"], sort_keys=True)}
    return {key: str(value) for key, value in facts.items()}


def side_facts(facts: dict, info: dict, modality: str) -> dict:
    """encoder_facts of one side: with its modality and its input size."""
    return {**facts, "modality": modality, "input_dim": str(info[f"{modality}_dim"])}


def _onnx_bytes(module: nn.Module, example: torch.Tensor, facts: dict) -> bytes:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():   # the classic exporter is deprecated in favour of one needing onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, input_names=["features"], output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "batch"} for name in ("features", *OUTPUTS)}, dynamo=False)
    proto = onnx.load_model_from_string(buffer.getvalue())
    for key, value in facts.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _torchscript_bytes(module: nn.Module, example: torch.Tensor, facts: dict) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_trace=False)
    torch.jit.save(traced, buffer, _extra_files={"metadata.json": json.dumps(facts)})
    return buffer.getvalue()


def export_encoders(model, info: dict, checkpoint, out_dir, fmt: str = "onnx", log=print) -> dict:
    """Write <out_dir>/image_encoder.<ext> and text_encoder.<ext> (atomically) from the hash-stage
    `model` and `info` that load_trained_model read from `checkpoint`; returns modality -> path."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    common, paths = encoder_facts(model, info, checkpoint), {}
    for modality in MODALITIES:
        facts = side_facts(common, info, modality)
        module = OneSideEncoder(model, modality).eval()   # exporting puts a module back in its mode: eval
        example = torch.zeros(2, info[f"{modality}_dim"])
        payload = (_onnx_bytes if fmt == "onnx" else _torchscript_bytes)(module, example, facts)
        paths[modality] = Path(out_dir) / file_name(modality, fmt)
        atomic_write_bytes(paths[modality], payload)
        log(f"wrote {paths[modality]} ({len(payload) / 1e6:.1f} MB, {modality} side, {info['bits']} bits, "
            f"scale {facts['scale']}, {facts['network']})")
    return paths


class ExportedEncoder:
    """One exported encoder file, run by onnxruntime (.onnx) or torch.jit (.pt): run(features) -> h, codes."""

    def __init__(self, path, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: exported encoder not found (write it with scripts/export.py)")
        if self.path.suffix == ".onnx":
            try:
                import onnxruntime
            except ImportError:
                raise ConfigError(f"{self.path}: running an ONNX encoder needs onnxruntime "
                                  f"(pip install onnxruntime)") from None
        try:
            if self.path.suffix == ".onnx":
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads or torch.get_num_threads()
                self.session = onnxruntime.InferenceSession(str(self.path), options,
                                                            providers=["CPUExecutionProvider"])
                self.facts = dict(self.session.get_modelmeta().custom_metadata_map)
            else:
                extra = {"metadata.json": ""}
                self.session = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
                self.facts = json.loads(extra["metadata.json"] or "{}")
        except Exception as err:   # truncated, foreign or not a model file
            raise ConfigError(f"{self.path}: not a readable exported encoder ({type(err).__name__})") from None
        if self.facts.get("format") != FORMAT_TAG:
            raise ConfigError(f"{self.path}: not an encoder written by scripts/export.py (no {FORMAT_TAG} metadata)")

    def run(self, features: np.ndarray) -> tuple:
        """(B, D) float32 -> h (B, bits), codes (B, bits) as numpy float32."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if isinstance(self.session, torch.jit.ScriptModule):
            with torch.no_grad():
                return tuple(out.numpy() for out in self.session(torch.from_numpy(features)))
        return tuple(self.session.run(list(OUTPUTS), {"features": features}))


class ExportedEncoders:
    """The image and text encoders of an export folder, for search: encode_image / encode_text take
    (B, D) tensors and return h (B, bits) tensors, like CrossModalHasher's."""

    def __init__(self, folder, threads: int | None = None):
        self.folder = Path(folder)
        onnx_files = [self.folder / file_name(m, "onnx") for m in MODALITIES]
        if not self.folder.is_dir() or not all(p.is_file() for p in onnx_files):
            raise ConfigError(f"--encoder {self.folder}: needs image_encoder.onnx and text_encoder.onnx "
                              f"(scripts/export.py --format onnx)")
        self.sides = {m: ExportedEncoder(p, threads) for m, p in zip(MODALITIES, onnx_files)}
        image, text = (self.sides[m].facts for m in MODALITIES)
        differing = [k for k in ("bits", "scale", "checkpoint_sha256") if image.get(k) != text.get(k)]
        if differing or image.get("modality") != "image" or text.get("modality") != "text":
            raise ConfigError(f"--encoder {self.folder}: its image and text encoders come from different exports "
                              f"({', '.join(differing) or 'modality'} differ)")
        self.facts = image

    def check_fits(self, meta: dict, index_path) -> None:
        """ConfigError (one line) unless these encoders make the codes of the index with metadata `meta`."""
        facts, problems = self.facts, []
        if int(facts["bits"]) != int(meta.get("bits", -1)):
            problems.append(f"{facts['bits']}-bit codes, the index holds {meta.get('bits')}-bit")
        if "scale" in meta and float(facts["scale"]) != float(meta["scale"]):
            problems.append(f"scale {facts['scale']}, the index's is {meta['scale']}")
        for side in MODALITIES:
            if meta.get(f"{side}_dim") is not None and int(facts[f"{side}_dim"]) != int(meta[f"{side}_dim"]):
                problems.append(f"{facts[f'{side}_dim']}-d {side} features, the index's are {meta[f'{side}_dim']}-d")
        if meta.get("checkpoint_sha256") and facts["checkpoint_sha256"] != meta["checkpoint_sha256"]:
            problems.append("another checkpoint (sha256 mismatch)")
        if problems:
            raise ConfigError(f"--encoder {self.folder} does not fit {index_path}: it makes {'; '.join(problems)}; "
                              f"export the checkpoint the index was built with")

    def _encode(self, modality: str, features: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.sides[modality].run(features.detach().cpu().numpy())[0])

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        return self._encode("image", features)

    def encode_text(self, features: torch.Tensor) -> torch.Tensor:
        return self._encode("text", features)


def compare_signs(reference_h: np.ndarray, codes: np.ndarray) -> dict:
    """Sign codes of an export against PyTorch's h (same shape): how many differ, the largest PyTorch
    |h| among those, and how many differ where |h| >= SIGN_TOLERANCE (a real disagreement)."""
    differ = codes != np.where(reference_h >= 0, 1.0, -1.0)
    magnitude = np.abs(reference_h[differ])
    return {"differing": int(differ.sum()), "max_abs_h": float(magnitude.max()) if magnitude.size else 0.0,
            "beyond_tolerance": int((magnitude >= SIGN_TOLERANCE).sum())}


def check_export(model, paths: dict, features: dict) -> dict:
    """modality -> compare_signs of the exported file at paths[modality] against the checkpoint's
    model's encode_image / encode_text on features[modality] ((N, D) float32), plus the largest |h|
    difference."""
    found = {}
    for modality in MODALITIES:
        encoder = ExportedEncoder(paths[modality])
        with torch.no_grad():
            reference = OneSideEncoder(model, modality)(torch.from_numpy(features[modality]))[0].numpy()
        h, codes = encoder.run(features[modality])
        found[modality] = {**compare_signs(reference, codes), "max_h_difference": float(np.abs(h - reference).max())}
    return found


def median_latency_ms(call, calls: int) -> float:
    """Median wall time of `calls` calls of `call()` in ms, after 10 warm-up calls."""
    for _ in range(10):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def bench_export(model, paths: dict, calls: int) -> dict:
    """modality -> file size (MB) and median ms per batch-of-1 call of the export and of PyTorch's
    `model` (the checkpoint's)."""
    found = {}
    for modality, path in paths.items():
        encoder, reference = ExportedEncoder(path), OneSideEncoder(model, modality)
        row = np.random.default_rng(0).standard_normal((1, int(encoder.facts["input_dim"]))).astype(np.float32)
        tensor = torch.from_numpy(row)
        with torch.no_grad():
            torch_ms = median_latency_ms(lambda: reference(tensor), calls)
        found[modality] = {"mb": path.stat().st_size / 1e6, "pytorch_ms": torch_ms,
                           "export_ms": median_latency_ms(lambda: encoder.run(row), calls)}
    return found
