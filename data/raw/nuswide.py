"""NUS-WIDE (Chua et al., 2009) from its public release.

Layout expected under ``root`` (see :data:`LAYOUT`)::

    ImageList/Imagelist.txt                  one image per line, e.g.
                                             C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg
    Flickr/actor/0001_2124494179.jpg ...     the images (the part of each Imagelist
                                             path after "Flickr")
    Groundtruth/AllLabels/Labels_<c>.txt     one 0/1 per line, aligned with Imagelist,
                                             for each concept c (81 in the release)
    NUS_WID_Tags/All_Tags.txt                "<photo id> tag tag ..." per line

The photo id of an image is the number after the underscore of its file name
(``2124494179`` above).  Every ``Labels_*.txt`` present is a concept, named
after its file.  As in the literature, only the ``num_concepts`` most
frequent concepts (most images first; ties by name) are kept, in that order,
and only images with at least one of them and a non-empty tag text.  An
item's text is its tags, lowercased, joined with single spaces; its id is its
photo id (should a photo id repeat, later copies get ``#<Imagelist line>``
appended).  Items are in Imagelist order.
"""

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .records import RawDataset, RawItem, layout_error, read_lines, require

NAME = "nus-wide"
RELEASE = "NUS-WIDE"
IMAGE_LIST = "ImageList/Imagelist.txt"
IMAGE_DIR = "Flickr"
LABEL_DIR = "Groundtruth/AllLabels"
TAGS_FILE = "NUS_WID_Tags/All_Tags.txt"
LAYOUT = f"""\
<root>/{IMAGE_LIST} (one image per line, e.g. C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg)
<root>/{IMAGE_DIR}/actor/0001_2124494179.jpg ... (the images, by their Imagelist path after Flickr)
<root>/{LABEL_DIR}/Labels_<concept>.txt (one 0/1 per Imagelist line, for the 81 concepts)
<root>/{TAGS_FILE} (lines '<photo id> tag tag ...')
"""
PREPARER = "prepare_nuswide"


def _image_path(line, number, list_path, image_dir):
    """Map one Imagelist entry to its file under ``Flickr/`` and its photo id."""
    parts = [part for part in line.strip().replace("\\", "/").split("/") if part]
    if not parts:
        raise DataError(f"{list_path} line {number}: empty line (every line must name an image)")
    lower = [part.lower() for part in parts[:-1]]
    start = len(lower) - lower[::-1].index("flickr") if "flickr" in lower else max(len(parts) - 2, 0)
    stem = Path(parts[-1]).stem
    photo_id = stem.split("_", 1)[1] if "_" in stem else ""
    if not photo_id:
        raise DataError(f"{list_path} line {number}: {parts[-1]!r} is not '<n>_<photo id>.jpg'")
    return image_dir.joinpath(*parts[start:]), photo_id


def _read_concept(path, num_images):
    """One ``Labels_<c>.txt`` as a boolean vector aligned with Imagelist."""
    values = [line.strip() for line in read_lines(path)]
    if len(values) != num_images:
        raise DataError(f"{path}: {len(values)} lines but {IMAGE_LIST} has {num_images} "
                        "(each label file must have one 0/1 line per image)")
    if not set(values) <= {"0", "1"}:
        number = next(i for i, value in enumerate(values, start=1) if value not in ("0", "1"))
        raise DataError(f"{path} line {number}: {values[number - 1][:40]!r} is not 0 or 1")
    return np.asarray(values) == "1"


def _read_tags(path):
    """Map photo id -> tag text (lowercased, single spaces); the first line wins."""
    texts = {}
    for line in read_lines(path):
        fields = line.split()
        if fields and fields[0] not in texts:
            texts[fields[0]] = " ".join(fields[1:]).lower()
    return texts


def prepare_nuswide(root, num_concepts=10):
    """Read the NUS-WIDE release under ``root`` (layout: :data:`LAYOUT`)."""
    root = Path(os.path.abspath(root))
    for path, folder in ((root, True), (root / IMAGE_LIST, False), (root / IMAGE_DIR, True),
                         (root / LABEL_DIR, True), (root / TAGS_FILE, False)):
        require(path, PREPARER, RELEASE, LAYOUT, folder=folder)
    label_files = sorted((root / LABEL_DIR).glob("Labels_*.txt"))
    if not label_files:
        raise layout_error(root / LABEL_DIR, PREPARER, RELEASE, LAYOUT,
                           "holds no Labels_<concept>.txt files")
    if isinstance(num_concepts, bool) or not isinstance(num_concepts, int) \
            or not 1 <= num_concepts <= len(label_files):
        raise DataError(f"num_concepts must be 1..{len(label_files)} (the Labels_*.txt files "
                        f"in {root / LABEL_DIR}), got {num_concepts!r}")

    list_path = root / IMAGE_LIST
    entries = [_image_path(line, number, list_path, root / IMAGE_DIR)
               for number, line in enumerate(read_lines(list_path), start=1)]
    if not entries:
        raise DataError(f"{list_path}: lists no images")
    concepts = {path.stem[len("Labels_"):]: _read_concept(path, len(entries))
                for path in label_files}
    ranked = sorted(concepts, key=lambda name: (-int(concepts[name].sum()), name))
    label_names = ranked[:num_concepts]
    matrix = np.stack([concepts[name] for name in label_names], axis=1)

    tags = _read_tags(root / TAGS_FILE)
    items, seen = [], set()
    for number, ((image, photo_id), row) in enumerate(zip(entries, matrix), start=1):
        text = tags.get(photo_id, "")
        if not row.any() or not text:
            continue
        item_id = photo_id if photo_id not in seen else f"{photo_id}#{number}"
        seen.add(photo_id)
        items.append(RawItem(id=item_id, image=image, texts=[text],
                             labels=np.flatnonzero(row).tolist()))
    return RawDataset(name=NAME, label_names=label_names, items=items, source=str(root))
