"""The development zoo: a seeded family of synthetic paired sets for judging defaults.

A default chosen on one or two sets can lose many points on data nobody tuned
on. The zoo gives sets that differ in the ways real pairs differ, so every
default can be judged leave-one-set-out (`scripts/ablation.py --zoo`,
docs/zoo.md). The sets are generated in memory on every load (about 0.1 s);
nothing is written to disk.

Every set is made the same way, from one seeded numpy Generator, with the knobs
of a `ZooSpec`:

* labels: `num_labels` labels with skewed frequencies P(k) = top_rate * (k+1)^-decay
  (at least one per item), or exactly one per item when `single_label`;
* latent (64-d) = the normalised sum of the item's label prototypes, plus a
  pair-specific part shared by its image and its text (`instance`);
* each side sees the latent through its own random map, plus noise of its own
  (`image_noise`, `text_noise`) and a constant offset (CLIP's modality gap);
  with `complementary`, the image sees the first half of the label latent's
  dimensions and the text the second half, so each side carries part of the
  label information;
* with `text_from_labels`, the text side is a noisy bag of words drawn from the
  labels (like MIRFlickr's tags) instead of a map of the latent.

Besides the six named sets, `zoo-random-<k>` (k = 0, 1, ...) is a set whose knobs are
themselves drawn from a seeded prior (`random_spec`): many more sets than six, for placing
a rule's threshold on sets that are not the ones it is then judged on (docs/zoo.md).

Splits: `num_query` test queries, a disjoint database of `num_retrieval` items,
and `num_train` training pairs drawn from the database (MIRFlickr's protocol).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .splits import DatasetSplits, FeatureSplit

LATENT_DIM = 64
NUISANCE_DIM = 8
MODALITY_OFFSET = 1.5


@dataclass(frozen=True)
class ZooSpec:
    description: str
    num_labels: int = 24
    top_rate: float = 0.35          # frequency of the most common label
    decay: float = 0.7              # how fast label frequencies fall off
    single_label: bool = False      # exactly one label per item (low cardinality)
    image_dim: int = 512
    text_dim: int = 512
    instance: float = 2.0           # pair-specific latent shared by image and text
    image_noise: float = 3.0        # noise of the image side's own (isotropic)
    text_noise: float = 3.0         # noise of the text side's own (isotropic)
    image_nuisance: float = 0.0     # a side's own structured nuisance: a low-rank latent of its own
    text_nuisance: float = 0.0      # (NUISANCE_DIM-d) through its own map, so it makes false neighbours
    complementary: bool = False     # each side sees half of the label latent
    text_from_labels: bool = False  # the text is a noisy bag of label words
    num_query: int = 300
    num_retrieval: int = 2000
    num_train: int = 1000


ZOO = {
    "zoo-textnoisy": ZooSpec(
        "shared latent, the text side much noisier: structured noise of its own (CLIP-like)",
        image_noise=1.5, text_noise=2.0, text_nuisance=2.0),
    "zoo-imagenoisy": ZooSpec(
        "shared latent, the image side much noisier: structured noise of its own; 768-d images, 512-d texts",
        image_dim=768, image_noise=2.0, image_nuisance=2.0, text_noise=1.5),
    "zoo-complementary": ZooSpec(
        "complementary views: the image sees half of the label latent, the text the other half",
        complementary=True, image_noise=3.0, text_noise=3.0),
    "zoo-labeltext": ZooSpec(
        "one side derived from the labels: the text is a noisy bag of label words (256-d), like tags",
        text_from_labels=True, text_dim=256, image_noise=3.5),
    "zoo-fewlabels": ZooSpec(
        "few labels, one per item (6 labels, cardinality 1); 1024-d both sides",
        num_labels=6, single_label=True, image_dim=1024, text_dim=1024, image_noise=3.0, text_noise=3.0,
        instance=2.5),
    "zoo-manylabels": ZooSpec(
        "many labels, high cardinality (80 labels, about 4.4 per item); 256-d images, 1024-d texts",
        num_labels=80, top_rate=0.35, decay=0.6, image_dim=256, text_dim=1024, image_noise=2.5,
        text_noise=2.5),
}


RANDOM_PREFIX = "zoo-random-"
RANDOM_STREAM = 1000   # the random sets' generator streams start here, clear of the named sets' indices


def random_spec(index: int) -> ZooSpec:
    """The knobs of `zoo-random-<index>`, drawn from a seeded prior that spans the named sets' range."""
    rng = np.random.default_rng([RANDOM_STREAM, index])
    num_labels = int(rng.choice([6, 12, 24, 48, 80]))
    single_label = bool(num_labels <= 24 and rng.random() < 0.3)
    text_from_labels = bool(rng.random() < 0.2)
    complementary = bool(not text_from_labels and rng.random() < 0.25)
    image_dim, text_dim = (int(d) for d in rng.choice([256, 512, 768, 1024], size=2))
    if text_from_labels:   # a bag of words gives each label 8 words of its own
        text_dim = max(text_dim, 256 * -(-8 * num_labels // 256))
    nuisance = [0.0 if rng.random() < 0.5 else float(rng.uniform(1.0, 2.5)) for _ in range(2)]
    spec = dict(num_labels=num_labels, single_label=single_label, top_rate=float(rng.uniform(0.25, 0.45)),
                decay=float(rng.uniform(0.5, 0.9)), image_dim=image_dim, text_dim=text_dim,
                instance=float(rng.uniform(1.0, 3.0)), image_noise=float(rng.uniform(1.5, 3.5)),
                text_noise=float(rng.uniform(1.5, 3.5)), image_nuisance=nuisance[0],
                text_nuisance=0.0 if text_from_labels else nuisance[1], complementary=complementary,
                text_from_labels=text_from_labels)
    kind = ("text a bag of label words" if text_from_labels else "complementary views" if complementary
            else "shared latent")
    return ZooSpec(f"drawn from the zoo's prior (seed {index}): {kind}, {num_labels} labels"
                   f"{' (one per item)' if single_label else ''}, {image_dim}-d images, {text_dim}-d texts", **spec)


def _random_index(name: str) -> int | None:
    """k of `zoo-random-<k>`, k a non-negative integer written plainly (no leading zeros); else None."""
    if not name.startswith(RANDOM_PREFIX) or not re.fullmatch(r"0|[1-9][0-9]*", name[len(RANDOM_PREFIX):]):
        return None
    return int(name[len(RANDOM_PREFIX):])


def is_zoo_set(name: str) -> bool:
    """A named zoo set, or `zoo-random-<k>` (see `_random_index`)."""
    return name in ZOO or _random_index(name) is not None


def zoo_spec(name: str) -> ZooSpec:
    """The knobs of the zoo set `name` (see `is_zoo_set`)."""
    if name in ZOO:
        return ZOO[name]
    index = _random_index(name)
    if index is None:
        raise KeyError(f"{name!r} is not a zoo set: one of {', '.join(ZOO)} or {RANDOM_PREFIX}<k>")
    return random_spec(index)


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _labels(rng, spec: ZooSpec, n: int) -> np.ndarray:
    """(n, C) bool multi-hot, at least one label per item."""
    rates = spec.top_rate * np.arange(1, spec.num_labels + 1, dtype=np.float64) ** -spec.decay
    if spec.single_label:
        labels = np.zeros((n, spec.num_labels), dtype=bool)
        labels[np.arange(n), rng.choice(spec.num_labels, size=n, p=rates / rates.sum())] = True
        return labels
    labels = rng.random((n, spec.num_labels)) < rates
    empty = np.flatnonzero(~labels.any(axis=1))
    labels[empty, rng.choice(spec.num_labels, size=len(empty), p=rates / rates.sum())] = True
    return labels


def _mapped(rng, latent, dim, noise, nuisance=0.0):
    """normalise(latent @ random map + own noise + own nuisance + constant offset): (n, dim) float32."""
    mapping = rng.standard_normal((latent.shape[1], dim)) / np.sqrt(dim)
    offset = _unit_rows(rng.standard_normal((1, dim))) * MODALITY_OFFSET
    own = rng.standard_normal((len(latent), dim)) / np.sqrt(dim)
    features = latent @ mapping + noise * own + offset
    if nuisance:   # drawn only when used, so the sets without it keep their values
        hidden = rng.standard_normal((len(latent), NUISANCE_DIM)) / np.sqrt(NUISANCE_DIM)
        features += nuisance * hidden @ (rng.standard_normal((NUISANCE_DIM, dim)) / np.sqrt(dim))
    return _unit_rows(features).astype(np.float32)


def _bag_of_words(rng, labels, dim):
    """A noisy bag of words: each label owns 8 of `dim` words; an item keeps each word of its labels
    with probability 0.5 and gets 6 random words more; rows normalised (tags, like MIRFlickr's)."""
    owner = rng.permutation(dim)[:labels.shape[1] * 8].reshape(labels.shape[1], 8)
    words = np.zeros((len(labels), dim))
    for label, columns in enumerate(owner):
        rows = np.flatnonzero(labels[:, label])
        words[np.ix_(rows, columns)] += rng.random((len(rows), 8)) < 0.5
    extra = rng.integers(0, dim, size=(len(labels), 6))
    np.add.at(words, (np.repeat(np.arange(len(labels)), 6), extra.ravel()), 1.0)
    return _unit_rows(words).astype(np.float32)


def generate_zoo_arrays(name: str, seed: int = 0) -> dict:
    """{split: {"image", "text", "label"}} of the zoo set `name` (see `is_zoo_set`)."""
    spec = zoo_spec(name)
    stream = sorted(ZOO).index(name) if name in ZOO else RANDOM_STREAM + _random_index(name)
    rng = np.random.default_rng([seed, stream])
    n = spec.num_query + spec.num_retrieval
    labels = _labels(rng, spec, n)
    label_part = _unit_rows(labels @ rng.standard_normal((spec.num_labels, LATENT_DIM)))
    shared = spec.instance * rng.standard_normal((n, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    noise = 0.3 * rng.standard_normal((n, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    if spec.complementary:   # each side: its half of the label dimensions, scaled back to norm ~1
        half = LATENT_DIM // 2
        image_label = np.concatenate([label_part[:, :half], np.zeros((n, half))], 1) * np.sqrt(2)
        text_label = np.concatenate([np.zeros((n, half)), label_part[:, half:]], 1) * np.sqrt(2)
    else:
        image_label = text_label = label_part
    image = _mapped(rng, image_label + shared + noise, spec.image_dim, spec.image_noise, spec.image_nuisance)
    if spec.text_from_labels:
        text = _bag_of_words(rng, labels, spec.text_dim)
    else:
        text = _mapped(rng, text_label + shared + noise, spec.text_dim, spec.text_noise, spec.text_nuisance)
    query = np.arange(spec.num_query)
    retrieval = np.arange(spec.num_query, n)
    train = np.sort(rng.choice(retrieval, size=spec.num_train, replace=False))
    label_float = labels.astype(np.float32)
    return {split: {"image": image[rows], "text": text[rows], "label": label_float[rows]}
            for split, rows in (("train", train), ("query", query), ("retrieval", retrieval))}


def load_zoo(name: str, seed: int = 0) -> DatasetSplits:
    """The zoo set `name`, generated in memory."""
    arrays = generate_zoo_arrays(name, seed)
    splits = {split: FeatureSplit(a["image"], a["text"], a["label"], f"zoo set {name} ({split}, generated)")
              for split, a in arrays.items()}
    return DatasetSplits(name=name, **splits)
