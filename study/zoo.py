"""The zoo's report: regret of the default per set, leave-one-set-out choice, criterion correlation.

Input: a grid run by `scripts/ablation.py --zoo` (runs under <out>/<set>/<bits>bit/<setting>/seed<k>/,
each with results.json, grid.json and codes.npz). Output: <out>/zoo.md (tables a person reads)
and <out>/zoo.json (the same numbers for programs).

* Regret table: per set and figure (paired I2T / T2I, unimodal I2T / T2I, mAP@K on the test
  queries), the best setting's mean over seeds, the default's, and the difference.
* Leave-one-set-out table: for each set S, the setting with the best mean VALIDATION score over
  the other sets (never S, never a test query) is the one a user of S would have been given; its
  regret on S's test queries against the best setting there, per protocol, mean ± std over seeds.
  The default's own regret is shown beside it, with the 90% interval of its mean over seeds, and
  the regret of the setting the same rule picks on S's own validation queries: with labels of S,
  so no user's choice, but the floor that the noise of the test reference (the best of several
  noisy means) leaves under any choice.
* Criterion correlation: the label-free criteria (selection/criteria.py) of every run's final
  codes on its validation queries (codes from codes.npz, features from the set; no labels),
  Spearman-correlated with the run's labelled validation mAP, per set over settings x seeds.
* Per-run pick: per set and seed, the run that labelled validation mAP (or a criterion) prefers
  among every setting, minus the default's run on the test queries: the most any per-dataset
  choice among these settings could gain.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from config import SELECT_CRITERIA as CRITERIA
from data import load_dataset
from data.splits import validation_rows
from runio.atomic import atomic_write_json, atomic_write_text
from runio.tables import markdown_table
from selection.criteria import feature_relevance, label_free_criteria
from study.summary import collect_results

DEFAULT = "default"
FIGURES = (("paired", "i2t_map"), ("paired", "t2i_map"), ("unimodal", "unimodal_i2t_map"),
           ("unimodal", "unimodal_t2i_map"))
PROTOCOL_FIGURES = {"paired": ("i2t_map", "t2i_map"), "unimodal": ("unimodal_i2t_map", "unimodal_t2i_map")}
INTERVAL = 0.90   # a regret's interval over seeds: at 3 seeds few misses lie wholly above 1 (docs/zoo.md, stop 42)


def _cells(rows) -> dict:
    """{set: {setting: {seed: result}}} of the grid's runs (one code length: the first seen)."""
    bits = rows[0]["bits"] if rows else None
    cells: dict = {}
    for row in rows:
        if row["bits"] == bits and row.get("method") != "cca":
            cells.setdefault(row["dataset"], {}).setdefault(row["method"], {})[row["seed"]] = row
    return cells


def _mean(runs: dict, key: str) -> float:
    values = [r[key] for r in runs.values() if key in r]
    return float(np.mean(values)) if values else float("nan")


def _best(scores: dict) -> str:
    """The setting with the highest score; a setting without one (nan) never wins."""
    return max(scores, key=lambda s: -np.inf if np.isnan(scores[s]) else scores[s])


def regret_rows(cells) -> list:
    """Per set and figure: best setting, its mean, the default's mean, the difference."""
    out = []
    for name, settings in sorted(cells.items()):
        for _, key in FIGURES:
            means = {setting: _mean(runs, key) for setting, runs in settings.items()}
            best = _best(means)
            default = means.get(DEFAULT, float("nan"))
            out.append({"set": name, "figure": key, "best_setting": best, "best": means[best],
                        "default": default, "regret": means[best] - default})
    return out


def _validation_score(runs: dict) -> float:
    """A setting's validation score on one set: the mean of its four val_ mAP figures."""
    return float(np.mean([_mean(runs, "val_" + key) for _, key in FIGURES]))


def _regret(settings: dict, chosen: str, protocol: str) -> dict:
    """{"regret", "std", "low", "high"}: the mean and std over seeds of (best setting on test) -
    (chosen setting), averaged over the protocol's two figures, and the INTERVAL Student-t interval
    of that mean (None below 2 seeds); the best is the setting with the highest mean test score,
    taken as given (the interval leaves out the noise of picking it: the `itself_` regret shows that)."""
    keys = PROTOCOL_FIGURES[protocol]
    test = {s: np.mean([_mean(runs, k) for k in keys]) for s, runs in settings.items()}
    best = _best(test)
    seeds = sorted(set(settings[best]) & set(settings[chosen]))
    gaps = [np.mean([settings[best][seed][k] - settings[chosen][seed][k] for k in keys]) for seed in seeds]
    mean = float(np.mean(gaps))
    if len(gaps) < 2:
        return {"regret": mean, "std": 0.0, "low": None, "high": None}
    std = float(np.std(gaps, ddof=1))
    half = float(stats.t.ppf(0.5 + INTERVAL / 2, len(gaps) - 1) * std / np.sqrt(len(gaps)))
    return {"regret": mean, "std": std, "low": mean - half, "high": mean + half}


NO_REGRET = dict.fromkeys(("regret", "std", "low", "high"))   # no setting to score (written as blank)


def _put(row: dict, prefix: str, protocol: str, found: dict) -> None:
    """Store _regret's values in a report row as <prefix><protocol>_regret, _std, _low and _high."""
    row.update({f"{prefix}{protocol}_{key}": value for key, value in found.items()})


def leave_one_out_rows(cells) -> list:
    """Per set S: the setting the other sets' validation scores choose, and its and the default's
    test regret on S, per protocol."""
    out = []
    for name, settings in sorted(cells.items()):
        others = [cells[o] for o in cells if o != name]
        common = [s for s in settings if all(s in o for o in others)]
        elsewhere = {s: np.mean([_validation_score(o[s]) for o in others]) for s in common} if others else {}
        ranked = sorted(elsewhere, key=elsewhere.get, reverse=True)
        # one set alone: nothing to choose on, so the default stands where the grid has one
        chosen = ranked[0] if ranked else DEFAULT if DEFAULT in settings else None
        row = {"set": name, "chosen_elsewhere": chosen}
        if len(ranked) > 1:   # how close the choice was: a margin inside the seeds' noise is a coin flip
            row["runner_up"], row["margin"] = ranked[1], float(elsewhere[ranked[0]] - elsewhere[ranked[1]])
        # the noise floor: what the same rule picks on this set's own validation queries (labels of
        # the held-out set, which no user has); its regret is the test reference's winner's curse
        own = {s: _validation_score(runs) for s, runs in settings.items()}
        row["chosen_on_itself"] = _best(own)
        for protocol in PROTOCOL_FIGURES:
            _put(row, "", protocol, _regret(settings, chosen, protocol) if chosen else NO_REGRET)
            _put(row, "itself_", protocol, _regret(settings, row["chosen_on_itself"], protocol))
            if DEFAULT in settings:
                _put(row, "default_", protocol, _regret(settings, DEFAULT, protocol))
        out.append(row)
    return out


def run_criteria(cells, data_roots: dict) -> dict:
    """{run_dir: label-free criteria of the run's final paired codes on its validation queries}
    (codes from codes.npz, features from the set, no labels), for runs with codes and validation
    scores. Runs scored on whole batches only (eval_drop_last) are left out."""
    found = {}
    for name, settings in sorted(cells.items()):
        runs = [r for runs in settings.values() for r in runs.values()
                if (Path(r["run_dir"]) / "codes.npz").is_file() and "val_i2t_map" in r]
        if not runs:
            continue
        data = load_dataset(name, data_roots.get(name, "data"))
        config = yaml.safe_load((Path(runs[0]["run_dir"]) / "config.yaml").read_text())
        chosen, rest = validation_rows(data.retrieval, int(config["val_queries"]))
        image, text = np.asarray(data.retrieval.image), np.asarray(data.retrieval.text)
        relevance = feature_relevance((image[chosen], text[chosen]), (image[rest], text[rest]))   # once a set
        for run in runs:
            with np.load(Path(run["run_dir"]) / "codes.npz") as codes:
                db_image, db_text = codes["database_image"], codes["database_text"]
            if len(db_image) == len(image):
                found[run["run_dir"]] = label_free_criteria((db_image[chosen], db_text[chosen]),
                                                            (db_image[rest], db_text[rest]), relevance=relevance)
    return found


def criterion_rows(cells, found: dict) -> list:
    """Per set: Spearman's rho between each label-free criterion of a run's final paired codes on
    its validation queries (`found`, from run_criteria) and the run's paired validation mAP (mean of
    I2T and T2I); sets with fewer than 3 such runs are left out."""
    out = []
    for name, settings in sorted(cells.items()):
        runs = [r for runs in settings.values() for r in runs.values() if r["run_dir"] in found]
        if len(runs) < 3:
            continue
        target = [(r["val_i2t_map"] + r["val_t2i_map"]) / 2 for r in runs]
        row = {"set": name, "runs": len(runs)}
        for criterion in CRITERIA:
            rho = stats.spearmanr([found[r["run_dir"]][criterion] for r in runs], target).statistic
            row[criterion] = float(rho)
        out.append(row)
    return out


def selection_rows(cells) -> list:
    """Per set and seed where the default ran auto: what it chose, and which of its candidates the
    labelled validation mAP (mean of the four figures) of the fixed-setting runs prefers (None, and
    `agrees` None, where the grid has no such runs)."""
    out = []
    for name, settings in sorted(cells.items()):
        for seed, run in sorted(settings.get(DEFAULT, {}).items()):
            record = run.get("selection")
            if not record:
                continue
            val = {c: _validation_score({seed: settings[f"modality_dropout={c:g}"][seed]})
                   for c in record["candidates"] if seed in settings.get(f"modality_dropout={c:g}", {})}
            best = max(val, key=val.get) if val else None
            out.append({"set": name, "seed": seed, "chosen": record["chosen"], "best_by_validation": best,
                        "agrees": None if best is None else best == record["chosen"], "values": record["values"]})
    return out


def agreement_note(rows) -> str:
    """How often selection_rows' choices match the labelled pick, over the runs that have one: a grid
    or family without fixed-value runs of the candidates has nothing to compare with (not 0%)."""
    compared = [r["agrees"] for r in rows if r["agrees"] is not None]
    if not compared:
        return "no fixed-value runs of its candidates to compare with"
    return f"{np.mean(compared):.0%} of {len(compared)} agree with labelled validation"


def per_run_pick_rows(cells, found: dict) -> list:
    """What choosing per set and seed could gain at most: train every setting, keep the run a score
    prefers. Per picker (labelled validation mAP, which no user has, then each criterion of the
    final codes in `found`) and per set: the picked run minus the default's run on the test queries,
    per protocol (mean of I2T and T2I), over the (set, seed)s where every setting ran; and over all
    of them, with a one-sample t-test's p."""
    pickers = {"validation mAP (labels)": lambda run: _validation_score({0: run}),
               **{c: (lambda run, c=c: found[run["run_dir"]][c]) for c in CRITERIA}}
    out = []
    for picker, score in pickers.items():
        gaps: dict = {}                                        # set -> [(paired, unimodal) per seed]
        for name, settings in sorted(cells.items()):
            for seed in sorted(settings.get(DEFAULT, {})):
                runs = [runs[seed] for runs in settings.values() if seed in runs]
                if len(runs) < len(settings) or (picker in CRITERIA and any(r["run_dir"] not in found for r in runs)):
                    continue
                picked, default = max(runs, key=score), settings[DEFAULT][seed]
                gaps.setdefault(name, []).append([np.mean([picked[k] - default[k] for k in keys])
                                                  for keys in PROTOCOL_FIGURES.values()])
        every = np.array([g for per_set in gaps.values() for g in per_set])
        if len(every) == 0:
            continue
        row = {"picker": picker, "pairs": len(every), "sets": {n: np.mean(g, axis=0).tolist() for n, g in gaps.items()}}
        for i, protocol in enumerate(PROTOCOL_FIGURES):
            spread = len(every) > 1 and np.ptp(every[:, i]) > 1e-12
            row[protocol] = float(every[:, i].mean())
            row[f"{protocol}_p"] = float(stats.ttest_1samp(every[:, i], 0).pvalue) if spread else None
        out.append(row)
    return out


def simulated_auto(settings: dict, criterion: str) -> dict:
    """{seed: the fixed-value run auto would have trained} when it picks by `criterion` among the
    candidate values its runs recorded (all_criteria): auto trains with the value it chooses, so its
    scores are that run's. Seeds whose choice has no fixed-value run are left out."""
    out = {}
    for seed, run in settings.get(DEFAULT, {}).items():
        record = run.get("selection") or {}
        if criterion not in (record.get("all_criteria") or [{}])[0]:
            continue
        values = [found[criterion] for found in record["all_criteria"]]
        chosen = record["candidates"][int(np.argmax(values))]
        fixed = settings.get(f"modality_dropout={chosen:g}", {}).get(seed)
        if fixed is not None:
            out[seed] = fixed
    return out


def criterion_choice_rows(cells) -> list:
    """auto with each recorded criterion, judged leave-one-set-out: for each set, the criterion whose
    choices score best on the other sets' validation queries, and its regret on this set."""
    criteria = [c for c in CRITERIA if all(simulated_auto(s, c) for s in cells.values())]
    out = []
    for name, settings in sorted(cells.items()):
        others = [cells[o] for o in cells if o != name]
        if not criteria or not others:
            continue
        best = max(criteria, key=lambda c: np.mean([_validation_score(simulated_auto(o, c)) for o in others]))
        row = {"set": name, "criterion_chosen_elsewhere": best}
        with_rule = {**settings, "auto-rule": simulated_auto(settings, best)}
        for protocol in PROTOCOL_FIGURES:
            _put(row, "", protocol, _regret(with_rule, "auto-rule", protocol))
        out.append(row)
    return out


def pooled_rows(cells) -> list:
    """Per setting other than the default, per figure: the default minus the setting, averaged over
    every (set, seed) both ran, with the paired t-test's two-sided p-value over those pairs (test
    queries; validation figures too)."""
    out = []
    settings = sorted({s for sets in cells.values() for s in sets} - {DEFAULT})
    for setting in settings:
        row = {"setting": setting}
        for key in [k for _, k in FIGURES] + [f"val_{k}" for _, k in FIGURES]:
            pairs = [(runs[DEFAULT][seed][key], runs[setting][seed][key]) for runs in cells.values()
                     if DEFAULT in runs and setting in runs for seed in sorted(set(runs[DEFAULT]) & set(runs[setting]))
                     if key in runs[DEFAULT][seed] and key in runs[setting][seed]]
            if len(pairs) > 1:
                default, other = np.array(pairs).T
                gaps = default - other            # no test when every gap is the same (as study.summary)
                p_value = None if np.ptp(gaps) < 1e-12 else float(stats.ttest_rel(default, other).pvalue)
                row[key] = {"delta": float(np.mean(gaps)), "p": p_value, "pairs": len(pairs)}
        out.append(row)
    return out


def _fmt(value, std=None, points=False) -> str:
    """A score to 3 decimals, or a difference in signed points (± its std if given); blank if None or NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if std is None:
        return f"{value * 100:+.1f}" if points else f"{value:.3f}"
    return f"{value * 100:+.1f} ± {std * 100:.1f}"


def _fmt_interval(row: dict, prefix: str) -> str:
    """A regret in points as mean ± std [low, high], the interval when there is one."""
    text = _fmt(row.get(f"{prefix}regret"), row.get(f"{prefix}std", 0.0))
    low, high = row.get(f"{prefix}low"), row.get(f"{prefix}high")
    return text + (f" [{low * 100:+.1f}, {high * 100:+.1f}]" if text and low is not None else "")


def missing_rows(cells) -> list:
    """Per set lacking runs the grid has elsewhere (a setting, or a seed of one): the set and what it
    lacks, so a grid still running, or one whose runs failed, is read as partial: its regrets then
    compare only the runs there are, and the leave-one-out choice the settings every other set has."""
    seeds = {seed for sets in cells.values() for runs in sets.values() for seed in runs}
    settings = sorted({setting for sets in cells.values() for setting in sets})
    lacking = {name: {s: sorted(absent) for s in settings if (absent := seeds - set(sets.get(s, {})))}
               for name, sets in sorted(cells.items())}
    return [{"set": name, "missing": found} for name, found in lacking.items() if found]


def write_zoo_report(out, data_roots: dict | None = None) -> dict:
    """Write <out>/zoo.md and <out>/zoo.json from the grid's runs; return the zoo.json content."""
    out = Path(out)
    cells = _cells(collect_results(out))
    found = run_criteria(cells, data_roots or {})
    report = {"regret": regret_rows(cells), "leave_one_out": leave_one_out_rows(cells),
              "criterion_correlation": criterion_rows(cells, found), "selection": selection_rows(cells),
              "criterion_leave_one_out": criterion_choice_rows(cells), "default_against": pooled_rows(cells),
              "per_run_pick": per_run_pick_rows(cells, found), "missing": missing_rows(cells)}
    atomic_write_json(out / "zoo.json", report)
    settings = len({setting for sets in cells.values() for setting in sets})
    lines = ["# Zoo report", "", "Scores: mAP@K on the test queries, mean over seeds. Choices: validation queries only.",
             *(["", "**Incomplete grid**, so its regrets and choices are partial: " + "; ".join(
                 f"{r['set']} lacks runs of {len(r['missing'])} of the {settings} settings"
                 for r in report["missing"]) + "."] if report["missing"] else []),
             "", "## Regret of the default (best setting on the set minus the default)", "",
             markdown_table(["set", "figure", "best setting", "best", "default", "regret"],
                            [[r["set"], r["figure"], r["best_setting"], _fmt(r["best"]), _fmt(r["default"]),
                              _fmt(r["regret"], points=True)] for r in report["regret"]]),
             "", f"## Leave one set out (points of mAP, mean ± std over seeds; the default's with the {INTERVAL:.0%} "
                 "interval of its mean, the best setting taken as given)", "",
             markdown_table(["held-out set", "chosen on the others", "margin over the runner-up (validation points)",
                             "paired regret", "unimodal regret", "default: paired regret", "default: unimodal regret",
                             "chosen on the set itself (labels): setting, paired regret, unimodal regret"],
                            [[r["set"], r["chosen_elsewhere"], f"{r['margin'] * 100:.2f} ({r['runner_up']})"
                              if "margin" in r else "", _fmt(r["paired_regret"], r["paired_std"]),
                              _fmt(r["unimodal_regret"], r["unimodal_std"]),
                              _fmt_interval(r, "default_paired_"), _fmt_interval(r, "default_unimodal_"),
                              f"{r['chosen_on_itself']}: {_fmt(r['itself_paired_regret'], r['itself_paired_std'])}, "
                              f"{_fmt(r['itself_unimodal_regret'], r['itself_unimodal_std'])}"]
                             for r in report["leave_one_out"]]),
             "", "## Label-free criteria against labelled validation mAP (Spearman's rho over runs)", "",
             markdown_table(["set", "runs", *CRITERIA], [[r["set"], r["runs"], *(f"{r[c]:+.2f}" for c in CRITERIA)]
                                                        for r in report["criterion_correlation"]])]
    pooled = [r for r in report["default_against"] if len(r) > 1]
    if pooled:
        keys = [k for _, k in FIGURES]
        cell = lambda d: "" if d is None else f"{d['delta'] * 100:+.1f}" + (  # noqa: E731
            "" if d["p"] is None else f" (p={d['p']:.3f})")
        lines += ["", "## The default against each other setting, over every set and seed (points; paired t-test)",
                  "", markdown_table(["default minus", "pairs", *keys, *("val " + k for k in keys)],
                                     [[r["setting"], max(v["pairs"] for k, v in r.items() if k != "setting"),
                                       *(cell(r.get(k)) for k in keys), *(cell(r.get("val_" + k)) for k in keys)]
                                      for r in pooled])]
    if report["criterion_leave_one_out"]:
        lines += ["", "## auto's criterion chosen leave-one-set-out (points of mAP, mean ± std over seeds)", "",
                  markdown_table(["held-out set", "criterion chosen on the others", "paired regret", "unimodal regret"],
                                 [[r["set"], r["criterion_chosen_elsewhere"], _fmt(r["paired_regret"], r["paired_std"]),
                                   _fmt(r["unimodal_regret"], r["unimodal_std"])]
                                  for r in report["criterion_leave_one_out"]])]
    if report["per_run_pick"]:
        names = sorted(report["per_run_pick"][0]["sets"])
        pct = lambda v, p=None: f"{v * 100:+.2f}" + ("" if p is None else f" (p={p:.3f})")  # noqa: E731
        lines += ["", "## Choosing per set and seed: keep the run a score prefers, minus the default "
                  "(points of test mAP, paired / unimodal)", "",
                  markdown_table(["picked by", "pairs", "paired", "unimodal", *names],
                                 [[r["picker"], r["pairs"], pct(r["paired"], r["paired_p"]),
                                   pct(r["unimodal"], r["unimodal_p"]),
                                   *(" / ".join(f"{v * 100:+.1f}" for v in r["sets"][n]) if n in r["sets"] else ""
                                     for n in names)] for r in report["per_run_pick"]])]
    if report["selection"]:
        lines += ["", f"## The default's choices ({agreement_note(report['selection'])})", "",
                  markdown_table(["set", "seed", "chosen", "best by validation", "criterion values"],
                                 [[r["set"], r["seed"], f"{r['chosen']:g}", "" if r["best_by_validation"] is None
                                   else f"{r['best_by_validation']:g}", " ".join(f"{v:.4f}" for v in r["values"])]
                                  for r in report["selection"]])]
    atomic_write_text(out / "zoo.md", "\n".join(lines) + "\n")
    return report
