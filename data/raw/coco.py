"""MS-COCO (Lin et al., 2014) from its public release.

Layout expected under ``root`` for each subset (default ``train2017`` and
``val2017``; the 2014 names work the same), see :data:`LAYOUT`::

    annotations/captions_<subset>.json     the captions (about five per image)
    annotations/instances_<subset>.json    the object instances, hence the labels
    <subset>/<file_name>                   the images, as named in the JSON files

Labels are the categories of ``instances_*.json`` (80 in the release),
``label_names`` ordered by category id; an image's labels are the categories
of its instances.  Its texts are all its non-empty captions, stripped, in
caption annotation id order.  Images without any instance or caption are
dropped.  Item ids are the image ids as strings; items are ordered by subset
(in the order given), then image id.  The JSON files are read whole (the
training instances take a few GB of memory).
"""

import json
import os
from pathlib import Path

from ..errors import DataError, describe
from .records import RawDataset, RawItem, require

NAME = "mscoco"
RELEASE = "MS-COCO"
DEFAULT_SUBSETS = ("train2017", "val2017")
LAYOUT = """\
<root>/annotations/captions_<subset>.json (captions)
<root>/annotations/instances_<subset>.json (object instances: the 80 labels)
<root>/<subset>/<file_name> (the images)
for each subset, by default train2017 and val2017
"""
PREPARER = "prepare_coco"


def _load_json(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} "
                        f"column {exc.colno})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({describe(exc)})") from None


def _entries(document, key, fields, path):
    """``document[key]``, a list of dicts each holding ``fields``, or an error."""
    entries = document.get(key) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{path}: missing list '{key}' (not a COCO annotation file?)")
    for entry in entries:
        if not isinstance(entry, dict) or any(field not in entry for field in fields):
            raise DataError(f"{path}: an entry of '{key}' lacks one of "
                            f"{', '.join(fields)}: {str(entry)[:80]}")
    return entries


def _categories(document, path):
    entries = _entries(document, "categories", ("id", "name"), path)
    if not entries:
        raise DataError(f"{path}: 'categories' is empty")
    return {entry["id"]: str(entry["name"]) for entry in entries}


def _read_subset(root, subset, first=None):
    """The categories (id -> name) and the kept items of one subset.

    ``first``: the subset read first and its categories, which must match.
    """
    captions_path = root / "annotations" / f"captions_{subset}.json"
    instances_path = root / "annotations" / f"instances_{subset}.json"
    instances = _load_json(instances_path)
    categories = _categories(instances, instances_path)
    if first is not None and categories != first[1]:
        raise DataError(f"{instances_path}: its categories differ from those of "
                        f"instances_{first[0]}.json (all subsets must share them)")
    column = {category_id: index for index, category_id in enumerate(sorted(categories))}
    labels = {}
    for entry in _entries(instances, "annotations", ("image_id", "category_id"), instances_path):
        if entry["category_id"] not in column:
            raise DataError(f"{instances_path}: annotation {entry.get('id')} has unknown "
                            f"category_id {entry['category_id']!r}")
        labels.setdefault(entry["image_id"], set()).add(column[entry["category_id"]])
    images = {entry["id"]: str(entry["file_name"])
              for entry in _entries(instances, "images", ("id", "file_name"), instances_path)}
    del instances

    captions = _load_json(captions_path)
    texts = {}
    for entry in sorted(_entries(captions, "annotations", ("id", "image_id", "caption"),
                                 captions_path), key=lambda entry: entry["id"]):
        text = str(entry["caption"]).strip()
        if text:
            texts.setdefault(entry["image_id"], []).append(text)
    del captions

    image_dir = root / subset
    return categories, [
        RawItem(id=str(image_id), image=image_dir / images[image_id],
                texts=texts[image_id], labels=sorted(labels[image_id]))
        for image_id in sorted(images) if image_id in labels and image_id in texts]


def prepare_coco(root, subsets=DEFAULT_SUBSETS):
    """Read the MS-COCO release under ``root`` (layout: :data:`LAYOUT`)."""
    subsets = (subsets,) if isinstance(subsets, str) else tuple(subsets)
    if not subsets:
        raise DataError("prepare_coco needs at least one subset, e.g. train2017")
    root = Path(os.path.abspath(root))
    require(root, PREPARER, RELEASE, LAYOUT, folder=True)
    for subset in subsets:
        for name in (f"captions_{subset}.json", f"instances_{subset}.json"):
            require(root / "annotations" / name, PREPARER, RELEASE, LAYOUT)
        require(root / subset, PREPARER, RELEASE, LAYOUT, folder=True)

    categories = None
    items, subset_of = [], {}
    for subset in subsets:
        first = None if categories is None else (subsets[0], categories)
        categories, subset_items = _read_subset(root, subset, first)
        for item in subset_items:
            if item.id in subset_of:
                raise DataError(f"image id {item.id} is in both {subset_of[item.id]} and "
                                f"{subset} (choose subsets that do not overlap)")
            subset_of[item.id] = subset
            items.append(item)
    label_names = [categories[category_id] for category_id in sorted(categories)]
    return RawDataset(name=NAME, label_names=label_names, items=items,
                      source=f"{root} ({', '.join(subsets)})")
