"""The ablation ladder: from UCMFH's own behaviour to this project's defaults, one change at a time.

Each rung is a set of train.py settings and the rung it is compared with (paired over seeds).
The first rungs are cumulative: each switches off one of the reference code's differences
(config preset `ucmfh`). The later rungs branch from the last cumulative one (every flaw
fixed, still UCMFH's training: no modality dropout, plain tanh) and add one change each.
Rungs that differ from an earlier one only in how the model is scored (config.RUN_KEYS) re-score
that rung's checkpoint instead of training again (study.ablation does this for any grid).
"""
from __future__ import annotations

from typing import NamedTuple

from config import SCALE_SCHEDULES


class Rung(NamedTuple):
    label: str
    flags: dict            # train.py settings, on top of the parent's when `inherits`
    parent: str | None     # the rung compared with (and inherited from)
    why: str               # one line for the docs and the console
    inherits: bool = True


FLAWS_FIXED = "+all-train"   # every difference from the reference switched off
UNIMODAL_EPOCHS = 5          # the branch's epochs in the ladder (half the ladder's 10 paired epochs)


def _rungs() -> list:
    rungs = [Rung("ucmfh", {"preset": "ucmfh"}, None, "the reference code's behaviour (configs/presets/ucmfh.yaml)"),
             Rung("+item-eval", {"eval_sequence": "item"}, "ucmfh",
                  "each scored item its own sequence: codes no longer depend on the scoring batch"),
             Rung("+all-scored", {"eval_drop_last": False}, "+item-eval",
                  "every query and database item scored (no drop_last cut)"),
             Rung("+stable-ties", {"tie_order": "index"}, "+all-scored",
                  "equal Hamming distances in database order instead of np.argsort's"),
             Rung("+epoch-lr", {"lr_step": "epoch"}, "+stable-ties",
                  "head LR milestones counted in epochs, not batches"),
             Rung(FLAWS_FIXED, {"train_limit": 0, "train_drop_last": False}, "+epoch-lr",
                  "every training pair, the last short batch included")]
    for rate in (0.25, 0.5, 0.75, 0.9):
        rungs.append(Rung(f"dropout-{rate:g}", {"modality_dropout": rate}, FLAWS_FIXED,
                          f"modality dropout {rate:g}: that share of pairs also trained one side at a time"))
    for schedule in SCALE_SCHEDULES:
        rungs.append(Rung(f"progressive-{schedule}", {"use_progressive_hash": True, "scale_schedule": schedule},
                          FLAWS_FIXED, f"progressive hashing, {schedule} schedule (tanh(scale x))"))
    rungs += [Rung("balanced", {"balanced_loss": True}, FLAWS_FIXED, "HashNet's balanced pairwise loss added"),
              Rung("dropout-0.75+progressive", {"use_progressive_hash": True, "scale_schedule": "linear"},
                   "dropout-0.75", "progressive hashing (linear) on top of modality dropout 0.75")]
    # the unimodal branch: UCMFH's paired training untouched, then a copy for one-side inputs
    rungs += [Rung("unimodal-branch", {"unimodal_epochs": UNIMODAL_EPOCHS}, FLAWS_FIXED,
                   f"then {UNIMODAL_EPOCHS} epochs of a unimodal branch distilled from the frozen paired codes"),
              Rung("unimodal-branch-no-distill", {"unimodal_distill": 0.0}, "unimodal-branch",
                   "the branch trained by the contrastive loss alone"),
              Rung("progressive+unimodal-branch", {"unimodal_epochs": UNIMODAL_EPOCHS}, "progressive-linear",
                   "progressive hashing (linear), then the unimodal branch"),
              Rung("defaults", {}, FLAWS_FIXED, "this project's defaults (no preset)", inherits=False)]
    return rungs


SHORT = ("ucmfh", "+item-eval", "+all-scored", "+stable-ties", "+epoch-lr", FLAWS_FIXED, "dropout-0.75",
         "progressive-linear", "dropout-0.75+progressive", "unimodal-branch", "progressive+unimodal-branch",
         "defaults")   # each kind of change once
LADDERS = {"ucmfh": _rungs(), "ucmfh-short": [r for r in _rungs() if r.label in SHORT]}


def rung_settings(ladder: str) -> list:
    """(label, full settings, label compared with) of every rung of `ladder`, in order."""
    rungs = {r.label: r for r in LADDERS[ladder]}
    out = []
    for rung in LADDERS[ladder]:
        chain, at = [], rung
        while at is not None:
            chain.append(at.flags)
            at = rungs.get(at.parent) if at.inherits else None
        settings = {}
        for flags in reversed(chain):
            settings.update(flags)
        out.append((rung.label, settings, rung.parent))
    return out
