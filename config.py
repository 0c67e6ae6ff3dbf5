"""Every setting of a run in one place, with its default and the reason for it.

Precedence, lowest first: the defaults below, `configs/<dataset>.yaml` (when it exists and no
`--config` is given), a preset (`--preset ucmfh`: `configs/presets/ucmfh.yaml`), the file named
by `--config`, then `--key value` flags. Unknown keys and bad values raise `ConfigError`, a
one-line message that names the key (and the file) and lists valid choices.

Two kinds of setting: those marked `RUN` belong to the run itself (what to do, where to read and
write, what and how often to score); all others decide the trained model and come from the
checkpoint when a run tests or resumes one (runio/checkpoint.py's merge_checkpoint_config).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TASKS = ("train_real", "train_hash", "test_real", "test_hash")
SCALE_SCHEDULES = ("linear", "exponential", "step", "hashnet", "constant")
UNIMODAL_SCALES = ("auto", "final", "plain", "ramp")   # the unimodal branch's training scale (Config.unimodal_scale)
WIKI_TEXT_FEATURES = ("lda", "tfidf")
LR_STEPS = ("epoch", "batch")          # what lr_milestones count
STREAM_MODES = ("auto", "on", "off")
TRAIN_PRECISIONS = ("fp32", "bf16")   # the training passes' matmuls (Config.train_precision)
EVAL_SEQUENCES = ("item", "batch")     # what the transformer sees as one sequence when scoring
TIE_ORDERS = ("index", "unstable")     # order of items at equal Hamming distance
BALANCED_NEIGHBOURS = ("both", "fused", "features", "shared", "covariance", "auto")  # where the balanced loss finds
# neighbours; auto: a fork of the paired stage chooses among NEIGHBOUR_CANDIDATES (selection/paired_fork.py)
NEIGHBOUR_CANDIDATES = ("covariance", "features")
AUTO = "auto"                          # a setting chosen per dataset at training time (selection/)
# selection/criteria.py's label-free criteria
SELECT_CRITERIA = ("consensus", "shared", "cluster", "image_knn", "text_knn", "balance", "instance", "contrastive")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PRESET_DIR = CONFIG_DIR / "presets"
DEFAULT_SCALE_MAX = 10.0               # a scale_max map's value for the code lengths it does not name
SCALE_MAX_PER_LENGTH = {16: 8.0, 32: 10.0, 64: 20.0, 128: 20.0}  # zoo validation mAP@50 (docs/zoo.md, stops 45-46)


class ConfigError(ValueError):
    """A bad option, value or config file: the message is one line for the user."""


RUN = {"scope": "run"}   # field metadata: a setting of the run, never taken from a checkpoint


@dataclass
class Config:
    # --- data ---
    dataset: str = "demo"          # a built-in name, an alias (flickr, nus, coco) or a folder in data_root
    data_root: str = field(default="data", metadata=RUN)   # datasets live in <data_root>/<dataset>/
    wiki_text: str = "lda"         # wiki only: 10-d LDA topics (chosen on validation) or 1000-d tf-idf
    train_limit: int = 0           # train on the first N pairs only (UCMFH: 4992); 0 = every pair
    val_queries: int = field(default=0, metadata=RUN)  # hold out N database items as validation queries (val_*)
    val_unseen: bool = False       # and leave their pairs out of training, as test queries are (docs/evaluation.md)
    preset: str = field(default="", metadata=RUN)      # a named set of values: ucmfh = the reference code
    # --- what to run ---
    task: str = field(default="train_hash", metadata=RUN)  # train_real | train_hash | test_real | test_hash (or 0-3)
    hash_lens: list = field(default_factory=lambda: [64], metadata=RUN)   # code lengths; one model each
    # --- optimisation (UCMFH's values) ---
    epoch: int = 100               # UCMFH: 100 mirflickr, 150 nus-wide, 500 mscoco
    batch_size: int = 128
    lr_fusion: float = 1e-4        # fusion transformer
    lr_hash: float = 1e-3          # each hash head
    adam_betas: list = field(default_factory=lambda: [0.5, 0.999])
    lr_milestones: list = field(default_factory=lambda: [30, 80])  # heads only, counted in lr_step units
    lr_gamma: float = 1.2          # UCMFH raises the head LR at the milestones (0.6 for mscoco)
    lr_step: str = "epoch"         # epoch | batch (UCMFH steps per batch: its milestones fire in epoch 1)
    train_drop_last: bool = False  # drop the last short batch of an epoch (UCMFH does; its loss needed it)
    stream_train: str = "auto"     # on: read training pairs from their files a window of blocks at a time (shuffled
                                   # blocks and rows), not all in memory; auto: on for HDF5 sets over stream_min_gb
    stream_min_gb: float = 2.0     # auto streams above this many GB of training features (as float32)
    stream_block_rows: int = 32768 # rows read at once; a window of stream_window_blocks blocks is in memory
    stream_window_blocks: int = 4  # (32768 x 4 rows x 512-d x 2 sides x 4 B = 0.5 GB)
    temperature: float = 0.5       # InfoNCE temperature
    late_temperature: float | str = 0.0  # > 0: the temperature from late_temperature_at of the paired epochs on (the
                                   # branch's too); auto: 0.6/1/2 x temperature, forked, one kept without labels; 0: off
    late_temperature_at: float = 0.6  # share of the paired epochs before the switch (0.6: docs/zoo.md's measurement)
    hash_loss_weight: float = 0.5  # loss = fused-embedding loss + weight * hash-output loss
    fused_temperature: float = 0.0  # > 0: the fused-embedding loss's temperature (0: temperature); paired stage only
    hash_loss_sign: bool = False   # the hash-output loss compares sign codes (straight-through gradient); paired stage
    balanced_loss: bool = True     # HashNet's weighted pairwise loss, unsupervised; on: the zoo (docs/zoo.md)
    balanced_knn: int = 5          # neighbours: the k most similar pairs of a batch, both ways
    balanced_neighbours: str = "auto"  # fused, input or both cosines; input ones in a fitted space; auto: forked (the
                                   # zoo's 24 sets left out one at a time, stop 64); docs/zoo.md
    neighbour_fork_epochs: int = 10  # auto's fork: the first N paired epochs (0: all); 10: the zoo's, where it was judged
    balanced_feature_weight: float = 0.875  # the input cosine's weight (0.875 beat 0.75: +0.39 / +0.45 val)
    balanced_directions: int = 8   # shared/covariance: the input space's directions (8 beat 16 on zoo val, stop 46)
    balanced_weight: float = 0.5   # its weight in the hash-stage loss (0.5 beat 0.3, 1 and 3 on zoo validation)
    infonce_mask_neighbours: bool = True  # InfoNCE's negatives leave out those neighbours (+0.57 / +0.53 zoo val)
    train_precision: str = "fp32"  # bf16: training's matmuls in bfloat16 (autocast; weights, optimiser, losses, scores
                                   # float32): 1.3-1.7x faster epochs with avx512_bf16 (scripts/bench_epoch.py)
    modality_dropout: float | str = "auto"  # share of pairs the paired network encodes one side at a time; 0: UCMFH's
                                   # training; auto: chosen without labels among select_candidates (selection/choose.py)
    modality_dropout_anneal: float = 1.0  # > 0: the rate falls linearly to 0 at this share of training (1: the
                                   # last epoch); 0: constant. It limits what a wrong auto choice costs (docs/zoo.md)
    select_candidates: list = field(default_factory=lambda: [0.0, 0.75])  # auto's candidate values
    select_criterion: str = "shared"      # auto's label-free criterion (selection/criteria.py; docs/zoo.md)
    select_budget: float = 0.375   # auto's candidates share this part of a training's epochs (rate r: 1 + r each);
                                   # 0.5 until the branch doubled: 0.375 keeps them 4 epochs on the zoo, 6 on demo
    select_fork: float = 0.0       # > 0: auto's candidates: a fork of this share of the paired epochs (paired_fork.py)
    select_holdout: float = 0.1    # share of training pairs held out to score the candidates (0: the fork's train)
    unimodal_epochs: int = 20      # > 0: a unimodal branch (a copy of the network for one-side inputs) trains this
                                   # many epochs, distilled from the frozen paired codes (20 beat 10, 10 beat 5 on val)
    unimodal_distill: float = 1.0  # the branch's distillation weight (squared gap to paired codes; 1 beat 0 on val)
    unimodal_balanced: float = 1.0  # the balanced loss's weight on the branch's one-side codes (1 beat 0, .5, 2 on val)
    unimodal_average: float = 0.25  # the branch is scored with a moving average of its weights over about this
                                    # share of its steps; 0: its last weights (0.25 beat 0 and 0.6 on val; docs/zoo.md)
    unimodal_scale: str = "final"  # the branch's (and its teacher's) scale: final (test-time), plain (1), ramp (up
                                   # to test-time), auto (final, plain fork; docs/zoo.md: plain +1 on 3 sets, -4.2 wiki)
    unimodal_select_epochs: int = 2  # auto's fork length (after 1 it kept plain on wiki; docs/zoo.md)
    # --- model (UCMFH's sizes) ---
    fusion_dim: int = 1024         # image half + text half; inputs of other sizes are projected
    fusion_layers: int = 2
    fusion_heads: int = 4
    fusion_ff_dim: int = 2048      # PyTorch's TransformerEncoderLayer default, as UCMFH uses
    fusion_dropout: float = 0.1    # likewise the PyTorch default
    hash_hidden: int = 4096        # the heads' hidden width, and their dropout:
    hash_dropout: float = 0.3
    # --- progressive hash learning (HashNet's continuation) ---
    use_progressive_hash: bool = True
    scale_min: float = 1.0         # tanh(1*x): continuous codes at the start
    scale_max: float | dict = field(default_factory=lambda: dict(SCALE_MAX_PER_LENGTH))  # tanh(scale_max*x) at the
                                   # end: one number, or per code length ({16: 10, 64: 15} or 16:10,64:15)
    scale_schedule: str = "linear"
    hashnet_gamma: float = 0.005   # hashnet schedule: scale_min * (1 + gamma*iter)^power ...
    hashnet_power: float = 0.5
    hashnet_step_size: int = 200   # ... updated every step_size iterations (HashNet's values) ...
    hashnet_normalize: bool = True # ... with step and gamma fitted to the run's length (scale_max at its end)
    # --- evaluation ---
    eval_every: int = field(default=10, metadata=RUN)      # epochs between scorings, and at the end (0: only then)
    map_k: int = field(default=50, metadata=RUN)           # mAP@K as UCMFH reports it; 0 = whole ranking
    eval_batch_size: int = field(default=1024, metadata=RUN)   # rows per forward pass when encoding
    eval_sequence: str = field(default="item", metadata=RUN)   # item: one sequence each; batch: a batch is one (UCMFH)
    eval_drop_last: bool = field(default=False, metadata=RUN)  # score only whole eval batches (UCMFH)
    tie_order: str = field(default="index", metadata=RUN)      # index | unstable (UCMFH's np.argsort)
    record_histograms: bool = field(default=False, metadata=RUN)  # histograms.json: query outputs, 0-100% of training
    save_codes: bool = field(default=False, metadata=RUN)  # codes.npz: final continuous outputs + curves.json
    tensorboard: bool | str = field(default=AUTO, metadata=RUN)  # metrics.jsonl's records as TensorBoard events
                                   # in <run folder>/tensorboard/; auto: on when installed as package ucmfh-ph
    # --- run ---
    device: str = field(default="auto", metadata=RUN)      # auto = cuda when available, else cpu
    seed: int = 0
    output_dir: str = field(default="", metadata=RUN)      # empty: runs/<dataset>_<bits>bit_<time>/
    checkpoint_dir: str = field(default="checkpoints", metadata=RUN)
    save_every: int = field(default=10, metadata=RUN)  # epochs between checkpoints, and at the end (0: only then)
    save_checkpoint: bool = field(default=True, metadata=RUN)  # false: none at all (runs scored once: grids, comparisons)
    resume: bool = field(default=False, metadata=RUN)      # continue from the stage's checkpoint
    quiet: bool = field(default=False, metadata=RUN)       # print warnings and errors only (runio/logs.py)
    verbose: bool = field(default=False, metadata=RUN)     # print debug lines too


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
RUN_KEYS = frozenset(name for name, f in FIELDS.items() if f.metadata.get("scope") == "run")
CHECKPOINT_KEYS = frozenset(FIELDS) - RUN_KEYS   # decide the trained model: a checkpoint's values win
LIST_ITEM_TYPES = {"hash_lens": int, "adam_betas": float, "lr_milestones": int, "select_candidates": float}
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
TASK_NUMBERS = {str(i): name for i, name in enumerate(TASKS)}


def _parse_bool(key, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"--{key}: expected true or false, got {value!r}")


def _parse_scalar(key, kind, value):
    if kind is bool or kind == "bool":
        return _parse_bool(key, value)
    if kind not in (int, "int", float, "float"):
        return str(value)
    try:
        if isinstance(value, bool):
            raise ValueError          # YAML's true/false is not a number (int(True) would be 1)
        if kind in (int, "int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"--{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"--{key}: expected a finite number, got {value!r}")
    return number


def _parse_scale_max(value):
    """One number, or a mapping from code length to value: {16: 10, 64: 15} or "16:10,64:15"."""
    if isinstance(value, str) and ":" in value:
        pairs = [item.split(":", 1) for item in value.replace(" ", ",").split(",") if item]
        value = dict(pairs) if all(len(p) == 2 for p in pairs) else value
    if not isinstance(value, dict):
        return _parse_scalar("scale_max", float, value)
    if not value:
        raise ConfigError("--scale_max: expected a number or bits:value pairs such as 16:10,64:15, got nothing")
    return {_parse_scalar("scale_max", int, bits): _parse_scalar("scale_max", float, v) for bits, v in value.items()}


def scale_max_for(scale_max, bits):
    """A `bits`-bit model's scale_max: the number, or the map's value for `bits` (unnamed: DEFAULT_SCALE_MAX)."""
    if not isinstance(scale_max, dict):
        return float(scale_max)
    return float(scale_max.get(bits, DEFAULT_SCALE_MAX))


def coerce(key, value):
    """Convert a YAML or command-line value to the type of `key`."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        raise ConfigError(f"unknown option --{key}{hint}; valid options: {', '.join(FIELDS)}")
    if key in LIST_ITEM_TYPES:
        items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
        return [_parse_scalar(key, LIST_ITEM_TYPES[key], item) for item in items]
    if key == "task":
        return TASK_NUMBERS.get(str(value).strip(), str(value).strip())
    if key == "scale_max":
        return _parse_scale_max(value)
    if key == "tensorboard":
        if str(value).strip().lower() == AUTO:
            return AUTO
        try:
            return _parse_bool(key, value)
        except ConfigError:
            raise ConfigError(f"--tensorboard: expected auto, true or false, got {value!r}") from None
    if key in ("modality_dropout", "late_temperature"):
        if str(value).strip().lower() == AUTO:
            return AUTO
        try:
            return _parse_scalar(key, float, value)
        except ConfigError:
            raise ConfigError(f"--{key}: expected auto or a number"
                              f"{' in [0, 1]' if key == 'modality_dropout' else ' (0: off)'}, got {value!r}") from None
    return _parse_scalar(key, FIELDS[key].type, value)


def _choice(key, value, choices):
    if value not in choices:
        raise ConfigError(f"--{key}: {value!r} is not one of {', '.join(choices)}")


def validate(cfg: Config) -> Config:
    for key, choices in (("task", TASKS + tuple(TASK_NUMBERS)), ("scale_schedule", SCALE_SCHEDULES),
                         ("unimodal_scale", UNIMODAL_SCALES), ("wiki_text", WIKI_TEXT_FEATURES), ("lr_step", LR_STEPS),
                         ("stream_train", STREAM_MODES), ("train_precision", TRAIN_PRECISIONS),
                         ("eval_sequence", EVAL_SEQUENCES), ("tie_order", TIE_ORDERS),
                         ("balanced_neighbours", BALANCED_NEIGHBOURS)):
        _choice(key, getattr(cfg, key), choices)
    if cfg.preset:
        _choice("preset", cfg.preset, PRESETS)
    if not cfg.dataset or "/" in cfg.dataset or "\\" in cfg.dataset or cfg.dataset in (".", ".."):
        # the name becomes part of file names (checkpoints, runs, indexes), so it must not be a path
        parent, _, name = cfg.dataset.rstrip("/\\").replace("\\", "/").rpartition("/")
        raise ConfigError(f"--dataset: a folder name under --data_root, not a path: {cfg.dataset!r}"
                          + (f" (use --data_root {parent} --dataset {name})" if parent and name else ""))
    if not re.fullmatch(r"auto|cpu|cuda|mps|cuda:[0-9]+", cfg.device):
        raise ConfigError(f"--device: {cfg.device!r} is not one of auto, cpu, cuda, cuda:N (N a GPU number), mps")
    if not cfg.hash_lens or any(b < 1 for b in cfg.hash_lens):
        raise ConfigError(f"--hash_lens: expected positive code lengths such as 16 32 64 128, got {cfg.hash_lens}")
    if len(set(cfg.hash_lens)) != len(cfg.hash_lens):
        raise ConfigError(f"--hash_lens: {cfg.hash_lens} repeats a length (its runs would share a folder)")
    for key in ("epoch", "batch_size", "fusion_dim", "fusion_layers", "fusion_heads",
                "fusion_ff_dim", "hash_hidden", "eval_batch_size", "hashnet_step_size", "stream_block_rows",
                "stream_window_blocks", "balanced_directions", "unimodal_select_epochs"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"--{key}: must be at least 1, got {getattr(cfg, key)}")
    for key in ("eval_every", "save_every", "map_k", "seed", "balanced_knn", "train_limit", "val_queries",
                "unimodal_epochs", "unimodal_distill", "unimodal_balanced", "fused_temperature"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"--{key}: must be 0 or more, got {getattr(cfg, key)}")
    for key in ("lr_fusion", "lr_hash", "temperature"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"--{key}: must be positive, got {getattr(cfg, key)}")
    if cfg.fusion_dim % 2 or (cfg.fusion_dim % cfg.fusion_heads):
        raise ConfigError(f"--fusion_dim: {cfg.fusion_dim} must be even and divisible by --fusion_heads "
                          f"{cfg.fusion_heads}")
    for bits in (cfg.hash_lens if isinstance(cfg.scale_max, dict) else [None]):
        if not 0 < cfg.scale_min <= scale_max_for(cfg.scale_max, bits):
            raise ConfigError(f"--scale_min/--scale_max: need 0 < scale_min <= scale_max, got {cfg.scale_min} "
                              f"and {cfg.scale_max}")
    if len(cfg.adam_betas) != 2 or not all(0 <= beta < 1 for beta in cfg.adam_betas):
        raise ConfigError(f"--adam_betas: expected two numbers in [0, 1), got {cfg.adam_betas}")
    rates = [*cfg.select_candidates, *([] if cfg.modality_dropout == AUTO else [cfg.modality_dropout])]
    if not all(isinstance(r, (int, float)) and 0 <= r <= 1 for r in rates):
        raise ConfigError(f"--modality_dropout/--select_candidates: must be auto or in [0, 1], got "
                          f"{cfg.modality_dropout} and {cfg.select_candidates}")
    if not cfg.select_candidates:
        raise ConfigError("--select_candidates: expected at least one modality dropout value such as 0 0.75")
    _choice("select_criterion", cfg.select_criterion, SELECT_CRITERIA)
    for key in ("modality_dropout_anneal", "unimodal_average", "balanced_feature_weight"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise ConfigError(f"--{key}: must be in [0, 1], got {getattr(cfg, key)}")
    if not (0 < cfg.select_budget <= 10 and 0 <= cfg.select_holdout < 1 and 0 <= cfg.select_fork <= 1):
        raise ConfigError(f"--select_budget/--select_holdout/--select_fork: need 0 < budget <= 10, 0 <= holdout < 1 "
                          f"and 0 <= fork <= 1, got {cfg.select_budget}, {cfg.select_holdout} and {cfg.select_fork}")
    if cfg.neighbour_fork_epochs < 0:
        raise ConfigError(f"--neighbour_fork_epochs: must be >= 0 (0: the whole paired stage), got "
                          f"{cfg.neighbour_fork_epochs}")
    late, at = cfg.late_temperature, cfg.late_temperature_at
    if late != AUTO and not late >= 0 or not 0 < at < 1:
        raise ConfigError(f"--late_temperature/--late_temperature_at: need auto or >= 0 and 0 < at < 1, got "
                          f"{late} and {at}")
    for key in ("fusion_dropout", "hash_dropout"):
        if not 0 <= getattr(cfg, key) < 1:
            raise ConfigError(f"--{key}: must be in [0, 1), got {getattr(cfg, key)}")
    if cfg.quiet and cfg.verbose:
        raise ConfigError("--quiet/--verbose: choose one")
    return cfg


def retired(key: str, value):
    """A retired option as the option that replaced it, so a run's saved config.yaml trains as it
    did: unimodal_scale_ramp true/false (before 3 December 2026) is unimodal_scale ramp/final."""
    if key == "unimodal_scale_ramp":
        return "unimodal_scale", "ramp" if _parse_bool(key, value) else "final"
    return key, value


def load_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    out = {}
    for key, value in content.items():
        try:
            key, value = retired(str(key), value)
            out[key] = coerce(key, value)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    return out


def parse_flags(argv) -> dict:
    """`--key value [value ...]` and `--key=value` pairs; a flag with no value means true, and
    `--key=` is an empty value (for --output_dir: the default folder)."""
    pairs, key = {}, None
    for token in argv:
        if token.startswith("--"):
            key, equals, inline = token[2:].partition("=")
            key = key.replace("-", "_")
            pairs[key] = [inline] if equals else []
        elif key is None:
            raise ConfigError(f"unexpected argument {token!r}: options look like --key value")
        else:
            pairs[key].append(token)
    out = {}
    for key, values in pairs.items():
        if key == "config":
            out[key] = " ".join(values)
            continue
        value = values if key in LIST_ITEM_TYPES else (" ".join(values) if values else "true")
        if key in LIST_ITEM_TYPES and values == [""]:
            value = []                                    # --hash_lens= : an empty list
        if key not in LIST_ITEM_TYPES and len(values) > 1:
            raise ConfigError(f"--{key}: expected one value, got {' '.join(values)}")
        out[key] = coerce(key, value)
    return out


def build_config(argv=None, overrides: dict | None = None) -> Config:
    """Resolve defaults < configs/<dataset>.yaml or --config < flags < overrides."""
    flags = parse_flags(argv or [])
    flags.update({k: coerce(k, v) for k, v in (overrides or {}).items()})
    config_file = flags.pop("config", None)
    from data import canonical_dataset_name  # local import: data imports nothing from here
    from data.zoo import is_zoo_set
    dataset = canonical_dataset_name(flags.get("dataset", Config.dataset))
    base, chosen = {}, load_yaml(config_file) if config_file else {}
    # a dataset's own config; the zoo sets (data/zoo.py) share configs/zoo.yaml
    own = CONFIG_DIR / f"{'zoo' if is_zoo_set(dataset) else dataset}.yaml"
    if not config_file and own.is_file():
        base = load_yaml(own)
    preset = flags.get("preset", chosen.get("preset", base.get("preset", "")))
    if preset:
        _choice("preset", preset, PRESETS)
        base.update(load_yaml(PRESET_DIR / f"{preset}.yaml"))
    values = {**base, **chosen, **flags}
    values["dataset"] = canonical_dataset_name(values.get("dataset", dataset))
    cfg = Config(**values)
    cfg.task = TASK_NUMBERS.get(str(cfg.task), cfg.task)
    return validate(cfg)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def resolve_device(name: str):
    """The torch.device of the `device` setting: auto = cuda when available, else cpu."""
    import torch   # here: the config is read before torch is needed
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu")
    return torch.device(name)
