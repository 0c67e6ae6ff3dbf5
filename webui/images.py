"""Thumbnails of an index's images, served by item row only and only from inside the index's image folder."""
from __future__ import annotations

import io
from pathlib import Path

from hashindex.index_file import CodeIndex

THUMBNAIL_PX = 256   # the longer side; the page shows results at about half of it


class ImageStore:
    """The images of an index built from raw images: CodeIndex.image_paths under meta["image_root"].

    A client names an item, never a path, and a recorded path is resolved (symlinks and `..` followed)
    and must lie inside the image root, so an edited index or a symlink cannot expose other files.
    """

    def __init__(self, index: CodeIndex):
        self.paths, self.root, self.reason = None, None, None
        root = index.meta.get("image_root")
        if index.image_paths is None:
            self.reason = "the index holds no image paths (its features were not extracted from raw images here)"
        elif not root:
            self.reason = "the index holds image paths but no image_root to serve them from"
        elif not Path(root).is_dir():
            self.reason = f"the image folder {root} is not there"
        else:
            self.paths, self.root = index.image_paths, Path(root).resolve()

    @property
    def available(self) -> bool:
        return self.paths is not None

    def has_image(self, row: int) -> bool:
        return self.paths is not None and bool(self.paths[row])

    def file_of(self, row: int) -> Path:
        """The image file of a row; LookupError when it has none, PermissionError when it lies outside."""
        if not self.has_image(row):
            raise LookupError(self.reason or "no image path recorded")
        path = (self.root / str(self.paths[row])).resolve()   # an absolute recorded path stays itself
        if not path.is_relative_to(self.root):
            raise PermissionError(f"its image lies outside the image folder {self.root}; not served")
        return path

    def thumbnail(self, row: int) -> bytes:
        """JPEG bytes of the row's image scaled to THUMBNAIL_PX: always re-encoded, so only image data
        ever leaves the server, whatever the file holds; LookupError when it cannot be read."""
        from PIL import Image

        path = self.file_of(row)
        try:
            with Image.open(path) as picture:
                picture.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))   # JPEG: decode at a reduced scale
                small = picture.convert("RGB")
                small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        except FileNotFoundError:
            raise LookupError(f"its image file {path.name} is missing") from None
        except Exception as err:   # PIL raises many kinds for a truncated or foreign file
            raise LookupError(f"its image file {path.name} is unreadable ({type(err).__name__})") from None
        out = io.BytesIO()
        small.save(out, "JPEG", quality=85)
        return out.getvalue()
