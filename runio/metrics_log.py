"""Reading a run's metrics.jsonl: one JSON record per line, appended once per epoch.

The one reader of the file, for resuming (runio/run_folder.py) and for the figures
(study/run_files.py). A kill in the middle of an append leaves a last line without its
newline that is not JSON: it is left out (a resume rewrites the file without it). Any other
line that is not JSON is an error naming the file and the line.
"""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics_file(path) -> list:
    """The records of the metrics.jsonl at `path`, in file order ([] when it does not exist).
    ValueError, naming the file and the line, for a line that is not JSON."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines) and not text.endswith("\n"):
                break                          # torn by a kill mid-append
            raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from None
    return records
