"""Tiny fake raw datasets, in the real folder layouts, for tests.

Each ``make_fake_*`` builds a small copy of a public release's layout (real
PIL images included) and returns a :class:`FakeTree` saying what a correct
reader should give.  The data includes the cases the filters must drop: an
image without labels, one without tags, one whose only tag is too rare, a
COCO image without instances.  Everything is deterministic.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from data.raw.mirflickr import LABELS as MIRFLICKR_LABELS


@dataclass
class FakeTree:
    """What a reader of a fake tree should return.

    ``ids``: the kept item ids in order; ``texts`` and ``labels`` (label
    names) per kept id; ``dropped``: id -> why it must be dropped.
    """

    root: Path
    ids: list
    label_names: list
    texts: dict
    labels: dict
    dropped: dict = field(default_factory=dict)

    @property
    def num_items(self):
        return len(self.ids)


def write_images(folder, names, size=(32, 32), seed=0):
    """Write one small random-looking image per name (format from its suffix)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        pixels = np.kron(blocks, np.ones((size[1] // 4 + 1, size[0] // 4 + 1, 1), np.uint8))
        Image.fromarray(pixels[:size[1], :size[0]]).save(path)
        paths.append(path)
    return paths


def _write_lines(path, lines, newline="\n", tail="\n\n  \n"):
    """Write text lines, ending with blank and whitespace-only lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + tail).encode("utf-8"))


# ------------------------------------------------------------------ MIRFlickr
# Tags and the number of images holding them in the fake tree (n images):
# "sky" all but images 3 and 4 (n - 2), "café" exactly 20 (kept at the default
# min_tag_count=20), "nineteen" 19 (dropped), "rare" 4, "bad\ufffdtag" 1.
def _mirflickr_tags(n):
    if n == 3:
        return []
    if n == 4:
        return ["rare"]
    cafe = ["café"] if 5 <= n <= 24 else []
    nineteen = ["nineteen"] if 6 <= n <= 24 else []
    rare = ["rare"] if n in (1, 5, 6) else []
    tags = cafe + ["Sky"] + nineteen + rare if n % 2 == 0 else ["Sky"] + cafe + rare + nineteen
    if n == 1:
        tags += ["SKY", "  "]
    return tags


def _mirflickr_labels(n):
    if n == 2:
        return []
    names = {MIRFLICKR_LABELS[(n - 1) % 24]}
    if n % 5 == 0:
        names.add("sky")
    if n % 7 == 0:
        names.add("people")
    return sorted(names, key=MIRFLICKR_LABELS.index)


def make_fake_mirflickr(root, num_images=30):
    """A MIRFlickr-25K tree of ``num_images`` (>= 25) images under ``root``.

    Dropped at the default ``min_tag_count=20``: ``im2`` (no label), ``im3``
    (no tags), ``im4`` (only the rare tag); ``min_tag_count=1`` keeps ``im4``.
    """
    if num_images < 25:
        raise ValueError("the fake MIRFlickr tree needs at least 25 images")
    root = Path(root)
    write_images(root / "mirflickr", [f"im{n}.jpg" for n in range(1, num_images + 1)])
    tags_dir = root / "mirflickr" / "meta" / "tags"
    for n in range(1, num_images + 1):
        _write_lines(tags_dir / f"tags{n}.txt", _mirflickr_tags(n))
    # Image 7 also holds a tag that is not valid UTF-8 (read as "bad\ufffdtag").
    (tags_dir / "tags7.txt").write_bytes(b"Sky\ncaf\xc3\xa9\nbad\xfftag\nnineteen\n")
    notes = root / "mirflickr25k_annotations_v080"
    for label in MIRFLICKR_LABELS:
        numbers = [str(n) for n in range(num_images, 0, -1) if label in _mirflickr_labels(n)]
        _write_lines(notes / f"{label}.txt", numbers, newline="\r\n" if label == "dog" else "\n")
        _write_lines(notes / f"{label}_r1.txt", ["2", "3"])
    _write_lines(notes / "README.txt", ["The 24 labels, and the relevant (_r1) variants."])

    texts, labels, dropped = {}, {}, {2: "no label", 3: "no tags", 4: "only a rare tag"}
    for n in range(1, num_images + 1):
        if n in dropped:
            continue
        tags = [tag.strip().lower() for tag in _mirflickr_tags(n)]
        texts[f"im{n}"] = [" ".join(dict.fromkeys(t for t in tags if t in ("sky", "café")))]
        labels[f"im{n}"] = _mirflickr_labels(n)
    return FakeTree(root=root, ids=list(texts), label_names=list(MIRFLICKR_LABELS),
                    texts=texts, labels=labels,
                    dropped={f"im{n}": why for n, why in dropped.items()})


# ------------------------------------------------------------------ NUS-WIDE
NUSWIDE_CONCEPTS = ("sky", "clouds", "person", "water", "animal", "grass", "buildings",
                    "window", "plants", "lake", "ocean", "toy")
# Images per concept, by position in ``concepts``: positions 8-10 tie at 6, so
# with num_concepts=10 the tie is broken by name (default: lake, ocean kept).
NUSWIDE_COUNTS = (24, 20, 17, 15, 13, 11, 9, 8, 6, 6, 6, 3)
_NUS_FOLDERS = ("actor", "airport", "animal")


def _nus_photo_id(i):
    return str(100000 + 37 * i)


def make_fake_nuswide(root, num_images=40, concepts=NUSWIDE_CONCEPTS, num_concepts=10):
    """A NUS-WIDE tree of ``num_images`` (>= 30) images and 12 concepts.

    Image 0 (0-based) has only concepts 8 and 11, image 1 none, image 2 no
    line in All_Tags.txt, image 3 a line without tags.  The expectation is for
    ``num_concepts`` (default 10).
    """
    if num_images < 30 or len(concepts) != len(NUSWIDE_COUNTS):
        raise ValueError("the fake NUS-WIDE tree needs >= 30 images and 12 concepts")
    root = Path(root)
    pool = list(range(2, num_images))
    member = np.zeros((num_images, len(concepts)), dtype=bool)
    for j, count in enumerate(NUSWIDE_COUNTS):
        extra = j in (8, 11)
        member[0, j] = extra
        for t in range(count - extra):
            member[pool[(5 * j + t) % len(pool)], j] = True

    files = [f"{_NUS_FOLDERS[i % 3]}/{i + 1:04d}_{_nus_photo_id(i)}.jpg" for i in range(num_images)]
    write_images(root / "Flickr", files, seed=1)
    lines = ["C:\\ImageData\\Flickr\\" + name.replace("/", "\\") for name in files]
    lines[5] = files[5].replace("/", "\\")  # the short form, without C:\ImageData\Flickr
    _write_lines(root / "ImageList" / "Imagelist.txt", lines, newline="\r\n")
    for j, concept in enumerate(concepts):
        _write_lines(root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt",
                     ["1" if value else "0" for value in member[:, j]],
                     newline="\r\n" if j % 2 else "\n")
    _write_lines(root / "Groundtruth" / "AllLabels" / "README.txt", ["not a label file"])

    tags = {i: ["Sky", f"Tag{i}", "café"] if i % 2 else [f"tag{i}", "Beach"]
            for i in range(num_images) if i not in (2, 3)}
    tags[3] = []
    tag_lines = [f"{_nus_photo_id(i)}      " + "\t ".join(tags[i]) for i in sorted(tags, reverse=True)]
    tag_lines += [f"{_nus_photo_id(5)} a later duplicate line", "999999999 not listed"]
    _write_lines(root / "NUS_WID_Tags" / "All_Tags.txt", tag_lines)

    ranked = sorted(range(len(concepts)), key=lambda j: (-NUSWIDE_COUNTS[j], concepts[j]))
    top = ranked[:num_concepts]
    texts, labels, dropped = {}, {}, {}
    for i in range(num_images):
        photo_id = _nus_photo_id(i)
        names = [concepts[j] for j in top if member[i, j]]
        if not names:
            dropped[photo_id] = "no kept concept"
        elif not tags.get(i):
            dropped[photo_id] = "no tags"
        else:
            texts[photo_id] = [" ".join(tags[i]).lower()]
            labels[photo_id] = names
    return FakeTree(root=root, ids=list(texts), label_names=[concepts[j] for j in top],
                    texts=texts, labels=labels, dropped=dropped)


# ------------------------------------------------------------------ MS-COCO
# (id, name) in a scrambled order; label_names go by id.
COCO_CATEGORIES = ((90, "toothbrush"), (1, "person"), (11, "fire hydrant"), (3, "car"),
                   (2, "bicycle"), (5, "airplane"))
COCO_SUBSETS = ("train2017", "val2017")


def make_fake_coco(root, num_images_per_subset=15, subsets=COCO_SUBSETS):
    """A COCO tree of ``subsets`` with ``num_images_per_subset`` (>= 5) images each.

    Per subset, image 0 has no instance and image 1 no caption (both
    dropped); image 2 has a blank caption besides a real one.
    """
    if num_images_per_subset < 5:
        raise ValueError("the fake COCO tree needs at least 5 images per subset")
    root = Path(root)
    category_ids = sorted(cid for cid, _ in COCO_CATEGORIES)
    names = dict(COCO_CATEGORIES)
    texts, labels, dropped = {}, {}, {}
    for k, subset in enumerate(subsets):
        image_ids = [1000 * (k + 1) + 7 * j for j in range(num_images_per_subset)]
        files = {image_id: f"{image_id:012d}.jpg" for image_id in image_ids}
        write_images(root / subset, list(files.values()), seed=2 + k)
        images, instances, captions = [], [], []
        for j, image_id in enumerate(image_ids):
            images.append({"id": image_id, "file_name": files[image_id], "height": 32, "width": 32})
            cats = [] if j == 0 else sorted({category_ids[j % 6], category_ids[(2 * j + 1) % 6]})
            for cid in cats + ([cats[0]] if j == 3 else []):
                instances.append({"id": len(instances) + 1, "image_id": image_id,
                                  "category_id": cid, "bbox": [0, 0, 1, 1], "iscrowd": 0})
            if j == 1:
                own = []
            else:  # listed with descending annotation ids; read in ascending order
                own = [(10000 * (k + 1) + 10 * j + 3 - c, f"  A café {c} of image {image_id}.\n")
                       for c in range(3)]
                if j == 2:
                    own.insert(1, (10000 * (k + 1) + 10 * j + 9, "   "))
            captions += [{"id": aid, "image_id": image_id, "caption": text} for aid, text in own]
            if j in (0, 1):
                dropped[str(image_id)] = "no instance" if j == 0 else "no caption"
                continue
            texts[str(image_id)] = [text.strip() for _, text in sorted(own) if text.strip()]
            labels[str(image_id)] = [names[cid] for cid in cats]
        categories = [{"id": cid, "name": name, "supercategory": "x"}
                      for cid, name in COCO_CATEGORIES]
        notes = root / "annotations"
        notes.mkdir(parents=True, exist_ok=True)
        for kind, annotations in (("instances", instances), ("captions", captions)):
            document = {"info": {"description": "fake"}, "licenses": [],
                        "images": images[::-1], "annotations": annotations}
            if kind == "instances":  # as in the release, captions files have none
                document["categories"] = categories
            (notes / f"{kind}_{subset}.json").write_text(
                json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return FakeTree(root=root, ids=list(texts), label_names=[names[c] for c in category_ids],
                    texts=texts, labels=labels, dropped=dropped)


# ------------------------------------------------------------------ manifests
MANIFEST_LABELS = ("car", "cat", "dog", "tree")


def manifest_rows(num_rows=20):
    """The rows :func:`make_manifest` writes: id, image (relative), text, label indices.

    Every fifth row (4, 9, ...) has no label; texts hold commas and non-ASCII.
    """
    rows = []
    for i in range(num_rows):
        indices = [] if i % 5 == 4 else sorted({i % 4, (i + 1) % 4})
        rows.append({"id": f"item{i:03d}", "image": f"images/img{i:03d}.{'png' if i % 2 else 'jpg'}",
                     "text": f"photo {i} of a café, with \"quotes\"", "labels": indices})
    return rows


def make_manifest(folder, num_rows=20, fmt="csv", labels="names", with_ids=True):
    """Write ``num_rows`` images and a ``manifest.csv`` / ``manifest.jsonl``; return its path.

    ``labels``: ``"names"`` (from :data:`MANIFEST_LABELS`) or ``"indices"``.
    CSV labels alternate between the ``|`` and ``;`` separators; the CSV has
    its columns in an unusual order plus an ignored ``note`` column.
    """
    folder = Path(folder)
    rows = manifest_rows(num_rows)
    write_images(folder, [row["image"] for row in rows], seed=3)

    def label_values(row):
        return [MANIFEST_LABELS[i] if labels == "names" else i for i in row["labels"]]

    if fmt == "csv":
        import csv
        path = folder / "manifest.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow((["id"] if with_ids else []) + ["text", "note", "image", "labels"])
            for i, row in enumerate(rows):
                joined = ("|" if i % 2 == 0 else ";").join(str(v) for v in label_values(row))
                writer.writerow(([row["id"]] if with_ids else [])
                                + [row["text"], "ignored", row["image"], joined])
            handle.write("\n")
    elif fmt == "jsonl":
        path = folder / "manifest.jsonl"
        lines = []
        for i, row in enumerate(rows):
            values = label_values(row)
            record = {"image": row["image"], "text": row["text"],
                      "labels": "|".join(map(str, values)) if i % 3 == 0 else values}
            if with_ids:
                record["id"] = row["id"]
            lines.append(json.dumps(record, ensure_ascii=False))
        _write_lines(path, lines)
    else:
        raise ValueError(f"fmt must be 'csv' or 'jsonl', got {fmt!r}")
    return path
