"""TensorBoard event files of a run, in <run folder>/tensorboard/ (`--tensorboard`).

metrics.jsonl stays the source of truth: RunFolder.append_metrics hands every record it appends
to EventLog.scalars, and RunFolder.write_histograms every snapshot it writes to histograms.json
to EventLog.histograms, so the event file shows the same numbers and cannot drift from them.
The step of every event is the run's epoch (counted from 1). A resumed run opens the same
folder with purge_step = the first epoch it redoes, so TensorBoard drops the events a killed run
wrote past its checkpoint instead of showing those steps twice.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math

from config import AUTO, ConfigError

DISTRIBUTION = "ucmfh-ph"     # the project's name as an installed package (pyproject.toml)
FOLDER = "tensorboard"        # under the run folder
CODE_KEYS = ("scale", "abs_h", "saturated", "quant_error", "bit_balance")


def installed_as_package() -> bool:
    """Whether the project is installed as the distribution ucmfh-ph (pip install .)."""
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def wanted(setting) -> bool:
    """The `tensorboard` setting resolved: true/false as given; auto on when the project is
    installed as a package and the tensorboard package is there to write with."""
    if setting == AUTO:
        return installed_as_package() and importlib.util.find_spec("tensorboard") is not None
    return bool(setting)


def tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key, grouped into sections: loss/, codes/, lr/,
    time/, and scores/ for everything scored (map, precision, ... of either protocol)."""
    if key.startswith("lr_"):
        return f"lr/{key[3:]}"
    if "loss" in key:
        return f"loss/{key}"
    if key in CODE_KEYS:
        return f"codes/{key}"
    return "time/seconds" if key == "seconds" else f"scores/{key}"


def selection_scalars(selection: dict) -> dict:
    """Tag -> value of a selection record (selection/choose.py): every label-free criterion's value
    for every candidate (selection/<criterion>/<setting>_<candidate>) and the chosen value."""
    setting = selection["setting"]
    found = {f"selection/chosen_{setting}": float(selection["chosen"])}
    for candidate, criteria in zip(selection["candidates"], selection["all_criteria"]):
        for name, value in criteria.items():
            found[f"selection/{name}/{setting}_{candidate:g}"] = float(value)
    return found


def record_scalars(record: dict) -> dict:
    """Tag -> value of one metrics.jsonl record: each finite number but the epoch (the step), and
    the criterion values of the selection record when the record carries one."""
    found = {}
    for key, value in record.items():
        if key == "selection" and value:
            found.update(selection_scalars(value))
        elif key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            found[tag(key)] = float(value)
    return found


class EventLog:
    """One SummaryWriter on <folder>; `first_step`: events at this step or later that an earlier
    writer left in the folder are dropped by TensorBoard (a resume redoes them)."""

    def __init__(self, folder, first_step: int):
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--tensorboard true: the tensorboard package is not installed "
                              "(pip install tensorboard, or --tensorboard false)")
        from torch.utils.tensorboard import SummaryWriter   # here: it imports tensorboard, needed only when on
        self.writer = SummaryWriter(str(folder), purge_step=first_step)

    def scalars(self, record: dict) -> None:
        for name, value in record_scalars(record).items():
            self.writer.add_scalar(name, value, record["epoch"])
        self.writer.flush()              # a killed run keeps every epoch it logged

    def histograms(self, snapshot: dict, edges) -> None:
        """A histograms.json snapshot (counts of h over the bins between `edges`, image and text
        side) as TensorBoard histograms h/image and h/text at the snapshot's epoch."""
        centres = [(low + high) / 2 for low, high in zip(edges[:-1], edges[1:])]
        for side in ("image", "text"):
            counts = snapshot[side]
            filled = [i for i, count in enumerate(counts) if count]
            if not filled:
                continue
            self.writer.add_histogram_raw(
                f"h/{side}", min=edges[filled[0]], max=edges[filled[-1] + 1], num=sum(counts),
                sum=sum(c * x for c, x in zip(counts, centres)),
                sum_squares=sum(c * x * x for c, x in zip(counts, centres)),
                bucket_limits=list(edges[1:]), bucket_counts=list(counts), global_step=snapshot["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
