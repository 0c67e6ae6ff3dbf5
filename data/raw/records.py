"""The records every raw-data reader returns, and the small helpers they share.

A reader (a manifest or a public release's preparer) turns files on disk into
a :class:`RawDataset`: one :class:`RawItem` per image-text pair, with the
image's path, its text(s) and its label indices.  Nothing here opens an
image: the feature extractor reports images it cannot read.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, describe


@dataclass
class RawItem:
    """One image-text pair before feature extraction.

    ``id`` is stable across runs (e.g. ``"im123"`` for MIRFlickr), ``image``
    an absolute path (not checked to exist), ``texts`` one or more non-empty
    strings (all captions of a COCO image) and ``labels`` sorted indices into
    :attr:`RawDataset.label_names` (empty only for manifest rows).
    """

    id: str
    image: Path
    texts: list[str]
    labels: list[int] = field(default_factory=list)


@dataclass
class RawDataset:
    """The pairs of one raw dataset, in a fixed order, with label names.

    ``name`` is the dataset's name (e.g. ``"mirflickr"`` or a manifest's
    stem) and ``source`` says what it was read from, for metadata.
    """

    name: str
    label_names: list[str]
    items: list[RawItem]
    source: str

    def __len__(self):
        return len(self.items)

    def label_matrix(self):
        """The ``(N, C)`` uint8 multi-hot label matrix, rows in item order."""
        matrix = np.zeros((len(self.items), len(self.label_names)), dtype=np.uint8)
        for row, item in enumerate(self.items):
            matrix[row, item.labels] = 1
        return matrix


def one_line(layout):
    """Fold a multi-line ``LAYOUT`` description onto one line for an error."""
    lines = (" ".join(line.split()) for line in layout.strip().splitlines())
    return "; ".join(line for line in lines if line)


def layout_error(path, preparer, release, layout, problem="not found"):
    """A :class:`DataError` for a missing/bad file of a public release."""
    return DataError(f"{path} {problem}: {preparer} expects the {release} release "
                     f"laid out as {one_line(layout)}")


def require(path, preparer, release, layout, folder=False):
    """Raise :func:`layout_error` unless ``path`` is a file (or a folder)."""
    path = Path(path)
    if not (path.is_dir() if folder else path.is_file()):
        raise layout_error(path, preparer, release, layout)
    return path


def read_lines(path):
    """The lines of a UTF-8 text file, right-stripped, trailing blanks dropped.

    Undecodable bytes become U+FFFD instead of failing (user tags hold all
    sorts of encodings); a leading byte-order mark is dropped.
    """
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            text = handle.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({describe(exc)})") from None
    # Only "\n" ends a line (so line numbers match other tools'), "\r\n" too.
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines
