"""A zoo family: settings taken from several grids, relabelled into one folder, so that one zoo
report (study.zoo) judges them together.

Grids of `scripts/ablation.py --zoo` hold runs under <grid>/<set>/<bits>bit/<setting>/seed<k>/.
A comparison often needs settings from different grids: the default of one grid against the
varied settings of others. `assemble_family` copies each taken setting's runs (results.json,
grid.json, config.yaml, codes.npz, ...; never checkpoints) to <out>/<set>/<bits>bit/<label>/seed<k>/
and rewrites grid.json's `method` to the label, so the report sees one grid. The source grids are
only read.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from runio.atomic import atomic_write_json


class FamilyError(ValueError):
    """A take that names no runs, a label used twice, or an output folder that is not empty."""


@dataclass(frozen=True)
class Take:
    label: str       # the setting's name in the family (`default` for the one judged)
    grid: Path       # a zoo grid's folder
    setting: str     # the setting's folder name in that grid


def runs_of(take: Take) -> list:
    """The run folders of one take: <grid>/<set>/<bits>bit/<setting>/seed<k>/ with a results.json."""
    if not take.grid.is_dir():
        raise FamilyError(f"{take.grid}: no such grid folder (take {take.label!r})")
    runs = sorted(p.parent for p in take.grid.glob(f"*/*bit/{take.setting}/seed*/results.json"))
    if not runs:
        present = sorted({p.parent.parent.name for p in take.grid.glob("*/*bit/*/seed*/results.json")})
        raise FamilyError(f"{take.grid}: no runs of setting {take.setting!r} (take {take.label!r}); "
                          f"settings there: {', '.join(present) or 'none'}")
    return runs


def assemble_family(out, takes: list) -> dict:
    """Copy every take's runs into `out` under its label; return {label: runs copied}. `out` must
    be absent or empty, so a family never mixes with runs already there."""
    out = Path(out)
    labels = [t.label for t in takes]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise FamilyError(f"label {twice[0]!r} is taken twice; each setting needs its own label")
    if out.exists() and any(out.iterdir()):
        raise FamilyError(f"{out}: not empty; a family is assembled into a new folder")
    found = {t.label: runs_of(t) for t in takes}        # every take checked before anything is copied
    has_default = "default" in found
    for take in takes:
        for run in found[take.label]:
            target = out / run.parent.parent.parent.name / run.parent.parent.name / take.label / run.name
            shutil.copytree(run, target, ignore=shutil.ignore_patterns("checkpoints"))
            grid = json.loads((run / "grid.json").read_text()) if (run / "grid.json").is_file() else {}
            grid["method"] = take.label
            grid["family_source"] = f"{take.grid}:{take.setting}"
            grid.pop("baseline", None)
            if has_default and take.label != "default":   # summary.md then compares each with the default
                grid["baseline"] = "default"
            atomic_write_json(target / "grid.json", grid)
    return {label: len(runs) for label, runs in found.items()}
