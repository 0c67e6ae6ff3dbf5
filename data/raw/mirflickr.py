"""MIRFlickr-25K (Huiskes and Lew, 2008) from its public release.

Layout expected under ``root`` (see :data:`LAYOUT`)::

    mirflickr/im1.jpg ... mirflickr/im<N>.jpg        the images
    mirflickr/meta/tags/tags1.txt ... tags<N>.txt    user tags of image n, one per line
    mirflickr25k_annotations_v080/<label>.txt        1-based numbers of the images
                                                     with that label, one per line

for the 24 labels in :data:`LABELS`; the ``*_r1.txt`` ("relevant") variants
and the README of the annotation folder are ignored.  ``N`` is taken from the
tags files present (``tags1.txt`` to the highest number, none missing), so a
partial copy works as long as its annotations stay within it.

Preprocessing as in the cross-modal hashing literature: a tag counts when it
occurs in at least ``min_tag_count`` images (counted over all N images, after
lowercasing); an image's text is its counted tags, lowercased, in file order,
each once, joined with single spaces.  Pairs with no label or with an empty
text are dropped.  With the default ``min_tag_count=20`` the full release is
expected to give the usual 20,015 pairs (not verified here).  Item ids are
``"im<n>"``; items are in image-number order.
"""

import os
import re
from collections import Counter
from pathlib import Path

from ..errors import DataError
from .records import RawDataset, RawItem, layout_error, read_lines, require

NAME = "mirflickr"
RELEASE = "MIRFlickr-25K"
IMAGE_DIR = "mirflickr"
TAGS_DIR = "mirflickr/meta/tags"
ANNOTATION_DIR = "mirflickr25k_annotations_v080"
LABELS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
          "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
          "sea", "sky", "structures", "sunset", "transport", "tree", "water")
LAYOUT = f"""\
<root>/{IMAGE_DIR}/im1.jpg ... im<N>.jpg (the images)
<root>/{TAGS_DIR}/tags1.txt ... tags<N>.txt (user tags of image n, one per line)
<root>/{ANNOTATION_DIR}/<label>.txt (1-based image numbers, one per line) for the \
24 labels {", ".join(LABELS)}
"""
_TAGS_FILE = re.compile(r"tags(\d+)\.txt")


def _fail(path, problem="not found"):
    return layout_error(path, "prepare_mirflickr", RELEASE, LAYOUT, problem)


def _count_images(tags_dir):
    """N: the highest ``tags<n>.txt``, after checking that 1..N all exist."""
    numbers = set()
    for path in tags_dir.iterdir():
        match = _TAGS_FILE.fullmatch(path.name)
        if match and int(match.group(1)) >= 1:
            numbers.add(int(match.group(1)))
    if not numbers:
        raise _fail(tags_dir, "holds no tags<n>.txt files")
    for number in range(1, max(numbers) + 1):
        if number not in numbers:
            raise _fail(tags_dir / f"tags{number}.txt")
    return max(numbers)


def _read_label(path, num_images):
    """The set of image numbers listed in one annotation file."""
    images = set()
    for line_number, line in enumerate(read_lines(path), start=1):
        value = line.strip()
        if not value:
            continue
        if not value.isdigit() or not 1 <= int(value) <= num_images:
            raise DataError(f"{path} line {line_number}: {value[:40]!r} is not an image "
                            f"number 1..{num_images} (the tags folder has "
                            f"tags1.txt..tags{num_images}.txt)")
        images.add(int(value))
    return images


def _read_tags(path):
    """The lowercased tags of one image, in file order, each once."""
    tags = (line.strip().lower() for line in read_lines(path))
    return list(dict.fromkeys(tag for tag in tags if tag))


def prepare_mirflickr(root, min_tag_count=20):
    """Read the MIRFlickr-25K release under ``root`` (layout: :data:`LAYOUT`)."""
    if isinstance(min_tag_count, bool) or not isinstance(min_tag_count, int) \
            or min_tag_count < 1:
        raise DataError(f"min_tag_count must be a positive integer, got {min_tag_count!r}")
    root = Path(os.path.abspath(root))
    require(root, "prepare_mirflickr", RELEASE, LAYOUT, folder=True)
    for folder in (IMAGE_DIR, TAGS_DIR, ANNOTATION_DIR):
        require(root / folder, "prepare_mirflickr", RELEASE, LAYOUT, folder=True)
    for label in LABELS:
        require(root / ANNOTATION_DIR / f"{label}.txt", "prepare_mirflickr", RELEASE, LAYOUT)

    num_images = _count_images(root / TAGS_DIR)
    labels = {n: [] for n in range(1, num_images + 1)}
    for index, label in enumerate(LABELS):
        for number in _read_label(root / ANNOTATION_DIR / f"{label}.txt", num_images):
            labels[number].append(index)

    tags = {n: _read_tags(root / TAGS_DIR / f"tags{n}.txt") for n in labels}
    counts = Counter(tag for image_tags in tags.values() for tag in image_tags)
    image_dir = root / IMAGE_DIR
    items = []
    for number in range(1, num_images + 1):
        text = " ".join(tag for tag in tags[number] if counts[tag] >= min_tag_count)
        if labels[number] and text:
            items.append(RawItem(id=f"im{number}", image=image_dir / f"im{number}.jpg",
                                 texts=[text], labels=labels[number]))
    return RawDataset(name=NAME, label_names=list(LABELS), items=items, source=str(root))
