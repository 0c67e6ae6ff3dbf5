"""A user's own image-text pairs, listed in a CSV or JSON-lines manifest.

CSV (``.csv``): a header row naming the columns ``image``, ``text`` and
``labels`` (any order, any case; an optional ``id`` column; other columns are
ignored), then one row per pair.  Labels are one string separated by ``|``
(``;`` is accepted too), e.g. ``dog|grass``; an empty cell means no label.
Commas inside a text need the usual CSV double quotes.

JSON lines (``.jsonl`` or ``.ndjson``): one object per line with the keys
``image``, ``text``, ``labels`` and optionally ``id``.  ``labels`` is a list
(``["dog", "grass"]`` or ``[3, 7]``) or a string as in CSV; ``text`` is a
string or a list of strings (several captions of one image).

``image`` is a path; a relative one is taken relative to ``image_root`` when
given, else to the manifest's folder.  Labels are either all integers (then
they are indices: ``label_names`` is the given list, or ``"0"`` ... ``"max"``)
or names (then ``label_names`` is the given list, and a name not in it is an
error, or else the sorted unique names).  Without an ``id`` column/key an
item's id is its row number counting data rows from 0.  Blank lines are
skipped; errors name the manifest and the line (the CSV header is line 1).
"""

import csv
import json
import os
import re
from pathlib import Path

from ..errors import DataError, describe
from .records import RawDataset, RawItem

COLUMNS = ("image", "text", "labels")
ID_COLUMN = "id"
LABEL_SEPARATORS = re.compile(r"[|;]")
_INTEGER = re.compile(r"[+-]?\d+")
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def _csv_rows(path):
    """Yield ``(line number, {column: value})`` for each data row of a CSV."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            reader = csv.reader(handle)
            header, end = None, 0
            for row in reader:
                start, end = end + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [cell.strip().lower() for cell in row]
                    for column in COLUMNS:
                        if column not in header:
                            raise DataError(
                                f"{path} line {start}: the header has no '{column}' column "
                                f"(found: {', '.join(header)}); a manifest needs the columns "
                                f"{', '.join(COLUMNS)} and optionally {ID_COLUMN}")
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path} line {start}: {len(row)} fields but the "
                                    f"header has {len(header)}")
                yield start, dict(zip(header, row))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({describe(exc)})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({describe(exc)})") from None
    if header is None:
        raise DataError(f"{path}: empty manifest (no header row)")


def _jsonl_rows(path):
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            text = handle.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({describe(exc)})") from None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} "
                            f"at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected a JSON object with keys "
                            f"{', '.join(COLUMNS)}, got {type(record).__name__}")
        for key in COLUMNS:
            if key not in record:
                raise DataError(f"{path} line {number}: missing key '{key}' "
                                f"(a manifest line needs {', '.join(COLUMNS)})")
        yield number, record


def _texts(value, where):
    """The non-empty, stripped texts of a row (a string or a list of them)."""
    values = [text for text in (value if isinstance(value, list) else [value])
              if text is not None]
    for text in values:
        if not isinstance(text, str):
            raise DataError(f"{where}: text must be a string or a list of strings, "
                            f"got {type(text).__name__}")
    texts = [text.strip() for text in values if text.strip()]
    if not texts:
        raise DataError(f"{where}: empty text")
    return texts


def _label_tokens(value, where):
    """The labels of one row as a list of ``int`` or ``str`` tokens."""
    if value is None:
        return []
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise DataError(f"{where}: labels must be a list or a '|'-separated string, "
                        f"got {type(value).__name__}")
    tokens = []
    for label in value:
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise DataError(f"{where}: a label must be a name or an integer, got {label!r}")
        pieces = [label] if isinstance(label, int) else LABEL_SEPARATORS.split(label)
        for piece in pieces:
            piece = piece if isinstance(piece, int) else piece.strip()
            if piece != "":
                tokens.append(int(piece) if _INTEGER.fullmatch(str(piece)) else piece)
    return tokens


def _resolve_labels(rows, given, path):
    """Turn each row's tokens into sorted indices; return them and the names."""
    tokens = [token for _, _, row_tokens in rows for token in row_tokens]
    as_indices = all(isinstance(token, int) for token in tokens)
    if given is not None:
        names = [str(name) for name in given]
        if len(set(names)) != len(names):
            raise DataError(f"label_names for {path} has duplicate names")
    elif as_indices:
        names = [str(i) for i in range(max(tokens, default=-1) + 1)]
    else:
        names = sorted({str(token) for token in tokens})
    lookup = {name: index for index, name in enumerate(names)}
    resolved = []
    for where, _, row_tokens in rows:
        indices = set()
        for token in row_tokens:
            if as_indices:
                if not 0 <= token < len(names):
                    raise DataError(f"{where}: label index {token} is out of range "
                                    f"(0..{len(names) - 1})")
                indices.add(token)
            elif str(token) in lookup:
                indices.add(lookup[str(token)])
            else:
                raise DataError(f"{where}: unknown label {str(token)!r} (not in the "
                                f"{len(names)} given label_names)")
        resolved.append(sorted(indices))
    return resolved, names


def read_manifest(path, image_root=None, label_names=None):
    """Read a CSV or JSON-lines manifest (see the module docstring) as a dataset.

    ``image_root``: the folder relative image paths start from (default: the
    manifest's folder).  ``label_names``: the label vocabulary; integer labels
    index it and named labels must come from it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} not found")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        records = _csv_rows(path)
    elif suffix in JSONL_SUFFIXES:
        records = _jsonl_rows(path)
    else:
        raise DataError(f"{path}: unknown manifest format {suffix or '(no suffix)'!r}; "
                        f"use {', '.join(CSV_SUFFIXES + JSONL_SUFFIXES)}")
    base = Path(image_root) if image_root is not None else path.parent
    rows, first_line = [], {}
    for number, record in records:
        where = f"{path} line {number}"
        image = record.get("image")
        if image is None or not str(image).strip():
            raise DataError(f"{where}: empty image")
        texts = _texts(record.get("text"), where)
        if ID_COLUMN in record and record[ID_COLUMN] is not None:
            item_id = str(record[ID_COLUMN]).strip()
            if not item_id:
                raise DataError(f"{where}: empty id")
        else:
            item_id = str(len(rows))
        if item_id in first_line:
            raise DataError(f"{path}: id {item_id!r} is on line {first_line[item_id]} "
                            f"and line {number} (ids must be unique)")
        first_line[item_id] = number
        image_path = Path(os.path.abspath(base / Path(str(image).strip()).expanduser()))
        item = RawItem(id=item_id, image=image_path, texts=texts)
        rows.append((where, item, _label_tokens(record.get("labels"), where)))
    if not rows:
        raise DataError(f"{path}: the manifest lists no images")
    resolved, names = _resolve_labels(rows, label_names, path)
    for (_, item, _), labels in zip(rows, resolved):
        item.labels = labels
    return RawDataset(name=path.stem, label_names=names,
                      items=[item for _, item, _ in rows], source=str(path))
