"""Raw images and texts: a user's manifest or a public release -> items.

Each reader returns a :class:`RawDataset` of :class:`RawItem` (id, image
path, texts, label indices) that the feature extractor turns into UCMFH's
layout; :func:`make_splits` draws the seeded query / retrieval / train split.

* :func:`read_manifest` -- a CSV or JSON-lines list of pairs (:mod:`.manifest`)
* :func:`prepare_mirflickr`, :func:`prepare_nuswide`, :func:`prepare_coco` --
  the public releases; each module's ``LAYOUT`` (also :data:`LAYOUTS`) says
  which files it expects, and :data:`PREPARERS` maps dataset names to them.
"""

from . import coco, mirflickr, nuswide
from .coco import prepare_coco
from .manifest import read_manifest
from .mirflickr import prepare_mirflickr
from .nuswide import prepare_nuswide
from .records import RawDataset, RawItem
from .splits import SPLIT_SIZES, make_splits

PREPARERS = {"mirflickr": prepare_mirflickr, "nus-wide": prepare_nuswide, "mscoco": prepare_coco}
LAYOUTS = {"mirflickr": mirflickr.LAYOUT, "nus-wide": nuswide.LAYOUT, "mscoco": coco.LAYOUT}

__all__ = [
    "LAYOUTS",
    "PREPARERS",
    "RawDataset",
    "RawItem",
    "SPLIT_SIZES",
    "make_splits",
    "prepare_coco",
    "prepare_mirflickr",
    "prepare_nuswide",
    "read_manifest",
]
