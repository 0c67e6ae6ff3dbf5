"""Checkpoints read back: a file written by the Solver, loaded safely (weights only), and the
trained model rebuilt from it.

The Solver, evaluate.py, scripts/build_index.py and scripts/search.py all go through these
functions, so a code computed at evaluation, at indexing and at search time is the same.
"""
from __future__ import annotations

from pathlib import Path

import torch

from config import CHECKPOINT_KEYS, FIELDS, Config, ConfigError, retired, to_dict
from model import CrossModalHasher, build_model
from schedules import ScaleSchedule

PLACEHOLDER_KEYS = ("image_placeholder", "text_placeholder")
# options added after checkpoints were written, with the value those checkpoints trained with
ADDED_KEYS = {"balanced_neighbours": "fused", "balanced_feature_weight": 0.5, "infonce_mask_neighbours": False,
              "balanced_directions": 16, "unimodal_balanced": 0.0, "val_unseen": False,
              "neighbour_fork_epochs": 0}


def read_checkpoint(path, device="cpu", hint: str = "") -> dict:
    """A checkpoint file written by the Solver, loaded with weights_only=True (no code from the file
    runs). Raises ConfigError (one line naming the file, and `hint` on what to do when it is missing)
    when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found" + (f" ({hint})" if hint else ""))
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated, foreign or not a checkpoint at all
        raise ConfigError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None


def load_weights(model: CrossModalHasher, state: dict, source: str, log=print) -> None:
    """Checkpoint weights (keys fusion, image_head, text_head) into `model`. A checkpoint from
    before the unimodal placeholders existed loads with them at their initial value (a note says
    the unimodal scores of such a model mean little); any other mismatch is an error. A unimodal
    branch encodes one-side inputs only when the checkpoint was saved after its first epoch."""
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
    if model.unimodal_branch is not None:
        try:
            model.unimodal_branch.load_state_dict(state["unimodal_branch"])
        except (KeyError, RuntimeError) as err:  # absent, or of another shape
            raise ConfigError(f"{source}: unimodal_branch weights do not fit this model "
                              f"({str(err).splitlines()[-1].strip()[:160] or type(err).__name__})") from None
        # the branch trains in the epochs after the config's `epoch` paired ones; until then it is random
        model.branch_trained = state.get("epoch", 0) > state["config"].get("epoch", 0)


def input_dims(state: dict, fusion_dim: int) -> tuple:
    """(image_dim, text_dim) a checkpoint was trained on: the input width of each side's projection,
    or F/2 where the features were used as they are (no projection)."""
    fusion = state["fusion"]
    width = lambda side: int(fusion[f"{side}_proj.weight"].shape[1]) if f"{side}_proj.weight" in fusion \
        else fusion_dim // 2
    return width("image"), width("text")


# Config keys that decide what a checkpoint's network computes; an index records them so that a
# search can tell whether a checkpoint is the one its codes came from.
MODEL_KEYS = ("fusion_dim", "fusion_layers", "fusion_heads", "fusion_ff_dim", "hash_hidden",
              "use_progressive_hash")


def checkpoint_file(cfg: Config, bits: int | None) -> Path:
    """Where a stage's checkpoint lives: <checkpoint_dir>/hash/<dataset>_hash_<bits>.pth, or
    <checkpoint_dir>/real/<dataset>_fusion.pth for the real-valued stage (bits None)."""
    name = f"hash/{cfg.dataset}_hash_{bits}.pth" if bits else f"real/{cfg.dataset}_fusion.pth"
    return Path(cfg.checkpoint_dir) / name


def saved_config(state: dict, source) -> dict:
    """The config dict a checkpoint was trained with; ConfigError when the file is not ours."""
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):   # a tensor, a foreign dict
        raise ConfigError(f"{source}: not a checkpoint written by train.py (no config in it)")
    return dict(state["config"])


def merge_checkpoint_config(cfg: Config, saved: dict, source) -> Config:
    """The config of a run that tests or resumes the checkpoint `source`, trained with config `saved`:
    the checkpoint's values of the CHECKPOINT_KEYS, this run's values of the RUN_KEYS. A resumed
    training that would change a checkpoint key is refused (one line naming the keys)."""
    current = to_dict(cfg)
    saved = {**ADDED_KEYS, **dict(retired(key, value) for key, value in saved.items())}   # of before a rename
    differing = sorted(k for k in saved if k in CHECKPOINT_KEYS and saved[k] != current.get(k))
    if cfg.resume and cfg.task.startswith("train_") and differing:
        raise ConfigError(f"--resume: {source} was trained with other values of "
                          f"{', '.join('--' + k for k in differing)}; pass the same values or drop --resume")
    merged = {k: (saved[k] if k in CHECKPOINT_KEYS and k in saved else current[k]) for k in current}
    if not cfg.output_dir and cfg.resume:   # a resumed run goes on writing into its own folder
        merged["output_dir"] = saved.get("output_dir", "")
    return Config(**merged)


def check_input_widths(state: dict, cfg: Config, data, source) -> None:
    """ConfigError (one line) when the checkpoint's input widths are not those of `data`."""
    widths = input_dims(state, cfg.fusion_dim)
    if widths != (data.image_dim, data.text_dim):
        raise ConfigError(f"{source} was trained on {widths[0]}-d image and {widths[1]}-d text features, but "
                          f"{data.name} has {data.image_dim}-d and {data.text_dim}-d")


def rebuild_model(state: dict, cfg: Config, source, device="cpu", log=print) -> CrossModalHasher:
    """The network a checkpoint holds, in eval mode on `device`: sizes from `cfg` (its config), input
    widths from its weights, hash heads when it has `bits`, and the test-time scale of its run
    (ScaleSchedule.eval_scale, with the steps per epoch it trained: iteration / epoch)."""
    image_dim, text_dim = input_dims(state, cfg.fusion_dim)
    steps_per_epoch = state.get("iteration", 0) // max(state.get("epoch", 0), 1)
    schedule = ScaleSchedule(cfg, steps_per_epoch, state.get("bits"))
    model = build_model(cfg, image_dim, text_dim, state.get("bits"), schedule.eval_scale)
    load_weights(model, state, str(source), log)
    return model.to(device).eval()


def value_rows_only(saved: dict, optimizer) -> dict:
    """An Adam state saved when the optimiser held whole attention in_proj tensors (3F rows; before
    FuseTransEncoder.trainable_parameters) cut to the value rows it now holds (the last F rows; the
    query and key rows' moments are zero, they never get a gradient)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, slot in saved["state"].items():
        rows = len(params[index]) if params[index].dim() else 0
        for key, value in slot.items():
            if value.dim() and value.shape[0] == 3 * rows and value.shape[1:] == params[index].shape[1:]:
                slot[key] = value[2 * rows:].clone()
    return saved


def rng_states(device: torch.device) -> dict:
    """The generators training draws from, for a checkpoint: the CPU's (dropout masks, on the CPU)
    and, on a GPU, that device's (its dropout masks)."""
    states = {"rng_torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng_cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(state: dict, device: torch.device, reseed: int | None = None) -> None:
    """The generators of rng_states set back from a checkpoint; with `reseed` then every generator
    (CPU and all CUDA devices) seeded from it, after the restore, so that a rank other than 0 draws
    masks of its own whichever device draws them rather than rank 0's saved stream."""
    torch.set_rng_state(state["rng_torch"].cpu())
    if "rng_cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
    if reseed is not None:
        torch.manual_seed(reseed)


def load_trained_model(path, device="cpu", log=print):
    """A hash-stage checkpoint -> (CrossModalHasher in eval mode, info dict with bits, image_dim,
    text_dim, config and the model keys). Raises ConfigError (one line naming the file)."""
    state = read_checkpoint(path, device)
    saved = saved_config(state, path)
    bits = state.get("bits")
    if not bits or "image_head" not in state:
        raise ConfigError(f"{path}: a real-valued (train_real) checkpoint has no hash heads; "
                          f"pass a train_hash checkpoint (checkpoints/hash/<dataset>_hash_<bits>.pth)")
    cfg = Config(**{k: v for k, v in saved.items() if k in FIELDS})
    model = rebuild_model(state, cfg, path, device, log)
    image_dim, text_dim = input_dims(state, cfg.fusion_dim)
    info = {"bits": int(bits), "image_dim": image_dim, "text_dim": text_dim, "config": saved,
            "model": {k: saved.get(k) for k in MODEL_KEYS}, "epoch": state.get("epoch")}
    return model, info
