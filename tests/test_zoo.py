"""The development zoo: its generated sets, the zoo grid's command, and the report's choices
(validation only), regret and leave-one-set-out tables against hand-computed values."""
import json

import numpy as np
import pytest

import ablation_cli
from config import build_config
from data import KNOWN_DATASETS, load_dataset
from data.errors import DataError
from data.zoo import ZOO, generate_zoo_arrays, is_zoo_set, random_spec, zoo_spec
from study import zoo as report

TINY = ["--", "--epoch", "1", "--unimodal_epochs", "1", "--fusion_dim", "32", "--fusion_ff_dim", "32",
        "--hash_hidden", "32", "--batch_size", "500"]


def test_the_zoo_covers_what_the_issue_asks_and_is_generated_in_memory(tmp_path):
    dims, cardinality, labels = set(), {}, {}
    for name, spec in ZOO.items():
        data = load_dataset(name, tmp_path)                     # nothing is written
        assert name in KNOWN_DATASETS and not any(tmp_path.iterdir())
        assert (data.image_dim, data.text_dim) == (spec.image_dim, spec.text_dim)
        assert len(data.train) == spec.num_train and len(data.query) == spec.num_query
        assert data.train.label.any(1).all() and np.isfinite(data.train.image).all()
        dims |= {data.image_dim, data.text_dim}
        cardinality[name], labels[name] = data.retrieval.label.sum(1).mean(), data.num_labels
    assert len(ZOO) >= 6 and min(dims) == 256 and max(dims) == 1024
    assert cardinality["zoo-fewlabels"] == 1.0 and cardinality["zoo-manylabels"] > 3.5
    assert labels["zoo-fewlabels"] <= 6 and labels["zoo-manylabels"] >= 80
    words = load_dataset("zoo-labeltext", tmp_path).train.text          # a bag of words: non-negative, sparse
    assert (words >= 0).all() and (words > 0).mean() < 0.1
    again = generate_zoo_arrays("zoo-textnoisy")
    assert np.array_equal(again["train"]["image"], generate_zoo_arrays("zoo-textnoisy")["train"]["image"])


def test_the_noisy_side_is_the_noisy_side():
    """Within-side retrieval by raw features: the cleaner side finds same-label items better."""
    def same_label_at_10(features, label):
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        near = np.argsort(-(unit @ unit.T), axis=1)[:, 1:11]
        return ((label[:, None, :] * label[near]).sum(-1) > 0).mean()

    for name, clean, noisy in (("zoo-textnoisy", "image", "text"), ("zoo-imagenoisy", "text", "image")):
        split = generate_zoo_arrays(name)["retrieval"]
        assert same_label_at_10(split[clean][:800], split["label"][:800]) > \
            same_label_at_10(split[noisy][:800], split["label"][:800]) + 0.05


def test_a_zoo_set_takes_the_zoo_config():
    cfg = build_config(["--dataset", "zoo-complementary"])
    assert (cfg.epoch, cfg.hash_lens, cfg.modality_dropout) == (10, [16], "auto")


def test_the_named_sets_keep_their_data_as_the_zoo_grows():
    """Label counts of the first six labels in each training split, from the generator streams alone
    (no float arithmetic): a change to a named set's stream (e.g. by a new set's name sorting among
    them) would change every result recorded on it in docs/zoo.md."""
    pinned = {"zoo-textnoisy": [363, 227, 177, 139, 124, 101], "zoo-imagenoisy": [373, 235, 150, 141, 125, 93],
              "zoo-complementary": [342, 208, 180, 141, 126, 100], "zoo-labeltext": [376, 220, 170, 131, 130, 97],
              "zoo-fewlabels": [344, 186, 161, 119, 107, 83], "zoo-manylabels": [374, 243, 185, 168, 134, 116]}
    assert {name: [int(x) for x in generate_zoo_arrays(name)["train"]["label"].sum(0)[:6]] for name in ZOO} == pinned


def test_the_random_sets_draw_their_knobs_from_a_seeded_prior(tmp_path):
    specs = [random_spec(k) for k in range(24)]
    assert specs == [random_spec(k) for k in range(24)] and len(set(specs)) == 24   # seeded, all different
    assert {s.text_from_labels for s in specs} == {s.complementary for s in specs} == {True, False}
    assert any(s.single_label for s in specs) and {s.num_labels for s in specs} == {6, 12, 24, 48, 80}
    assert all(256 <= d <= 1024 for s in specs for d in (s.image_dim, s.text_dim))
    data = load_dataset("ZOO-Random-1", tmp_path)           # any case, like the named sets; nothing written
    assert data.name == "zoo-random-1" and not any(tmp_path.iterdir())
    assert (data.image_dim, data.text_dim, data.num_labels) == (specs[1].image_dim, specs[1].text_dim, 80)
    assert zoo_spec("zoo-random-1") == specs[1] and zoo_spec("zoo-labeltext") is ZOO["zoo-labeltext"]
    assert build_config(["--dataset", "zoo-random-7"]).epoch == 10              # the zoo's config
    # its own generator stream: not a named set's data under another name
    assert not np.array_equal(generate_zoo_arrays("zoo-random-0")["train"]["label"][:, :6],
                              generate_zoo_arrays("zoo-fewlabels")["train"]["label"][:, :6])
    assert not any(is_zoo_set(n) for n in ("zoo-random-", "zoo-random-x", "zoo-random--1", "zoo-random-07",
                                           "zoo-random-²", "zoo-nope"))
    with pytest.raises(KeyError, match="zoo-random-<k>"):
        zoo_spec("zoo-random-x")
    with pytest.raises(DataError, match=r"not a known dataset \(.*zoo-manylabels or zoo-random-<k>\)"):
        load_dataset("zoo-random-x", tmp_path)                  # a folder of the user's own, not found


def _run(method, seed, **scores):
    return {"dataset": "x", "bits": 16, "method": method, "seed": seed, "run_dir": "", **scores}


def _scores(test, val):
    keys = [k for _, k in report.FIGURES]
    return {**dict.fromkeys(keys, test), **{f"val_{k}": val for k in keys}}


def _write_grid(root, runs):
    """A grid folder of set x at 16 bits: results.json and grid.json per (method, seed, test score)."""
    for method, seed, test in runs:
        run = root / "x" / "16bit" / method / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"dataset": "x", "bits": 16, "seed": seed, **_scores(test, 0.5)}))
        (run / "grid.json").write_text(json.dumps({"method": method, "dataset": "x", "bits": 16, "seed": seed}))


def test_choices_follow_validation_and_regret_is_best_minus_chosen():
    # set a: setting "b" is best on test but "c" on validation; set z: "c" is best on both
    rows = [_run("default", s, **_scores(0.50 + s / 100, 0.5)) for s in (0, 1)]
    rows += [_run("b", s, **_scores(0.60 + s / 100, 0.4)) for s in (0, 1)]
    rows += [_run("c", s, **_scores(0.55, 0.7)) for s in (0, 1)]
    rows += [{**r, "dataset": "z"} for r in rows]
    for r in rows[6:]:
        if r["method"] == "b":
            r.update(_scores(0.30, 0.3))
    cells = report._cells(rows)
    regret = {(r["set"], r["figure"]): r for r in report.regret_rows(cells)}
    assert regret[("x", "i2t_map")]["best_setting"] == "b"
    assert regret[("x", "i2t_map")]["regret"] == pytest.approx(0.605 - 0.505)
    loo = {r["set"]: r for r in report.leave_one_out_rows(cells)}
    assert loo["x"]["chosen_elsewhere"] == "c"           # z's validation scores choose, never x's test
    assert loo["x"]["runner_up"] == "default" and loo["x"]["margin"] == pytest.approx(0.7 - 0.5)   # z: c 0.7, default 0.5, b 0.3
    assert loo["x"]["paired_regret"] == pytest.approx(np.mean([0.60 - 0.55, 0.61 - 0.55]))
    assert loo["x"]["paired_std"] == pytest.approx(np.std([0.05, 0.06], ddof=1))
    half = 6.313751514675043 * np.std([0.05, 0.06], ddof=1) / np.sqrt(2)   # Student t, 1 df, 95th percentile
    assert (loo["x"]["paired_low"], loo["x"]["paired_high"]) == pytest.approx((0.055 - half, 0.055 + half))
    assert (loo["x"]["default_paired_low"], loo["x"]["default_paired_high"]) == pytest.approx((0.10, 0.10))
    assert loo["x"]["default_paired_regret"] == pytest.approx(0.10)
    assert loo["z"]["chosen_elsewhere"] == "c" and loo["z"]["paired_regret"] == pytest.approx(0.0)
    pooled = {r["setting"]: r for r in report.pooled_rows(cells)}       # default minus b over 4 (set, seed)
    deltas = [0.50 - 0.60, 0.51 - 0.61, 0.50 - 0.30, 0.51 - 0.30]
    assert pooled["b"]["i2t_map"]["delta"] == pytest.approx(np.mean(deltas)) and pooled["b"]["i2t_map"]["pairs"] == 4
    from scipy import stats
    assert pooled["b"]["i2t_map"]["p"] == pytest.approx(stats.ttest_1samp(deltas, 0).pvalue)


def test_the_default_choices_are_compared_only_where_fixed_value_runs_exist():
    # set x has runs of both candidates (0.75 wins validation on seed 0, 0 on seed 1); set z has none
    record = {"selection": {"candidates": [0.0, 0.75], "chosen": 0.75, "values": [0.2, 0.3]}}
    rows = [_run("default", s, **_scores(0.5, 0.5), **record) for s in (0, 1)]
    rows += [_run("modality_dropout=0", s, **_scores(0.5, 0.4 + 0.3 * s)) for s in (0, 1)]
    rows += [_run("modality_dropout=0.75", s, **_scores(0.5, 0.6)) for s in (0, 1)]
    rows += [{**r, "dataset": "z"} for r in rows[:2]]
    chosen = {(r["set"], r["seed"]): r for r in report.selection_rows(report._cells(rows))}
    assert [chosen["x", s]["best_by_validation"] for s in (0, 1)] == [0.75, 0.0]
    assert [chosen["x", s]["agrees"] for s in (0, 1)] == [True, False]
    assert chosen["z", 0]["best_by_validation"] is None and chosen["z", 0]["agrees"] is None   # not a disagreement
    assert report.agreement_note(list(chosen.values())) == "50% of 2 agree with labelled validation"
    none = report.agreement_note([chosen["z", 0], chosen["z", 1]])
    assert none == "no fixed-value runs of its candidates to compare with"


def test_the_choice_on_the_held_out_set_itself_uses_its_own_validation_scores():
    # set x's own validation prefers b (best on test too); the other set, z, prefers c
    rows = [_run("default", s, **_scores(0.50, 0.5)) for s in (0, 1)]
    rows += [_run("b", s, **_scores(0.60 + s / 100, 0.8)) for s in (0, 1)]
    rows += [_run("c", s, **_scores(0.55, 0.6)) for s in (0, 1)]
    rows += [{**r, "dataset": "z", **_scores(0.5, {"default": 0.5, "b": 0.3, "c": 0.7}[r["method"]])} for r in rows]
    loo = {r["set"]: r for r in report.leave_one_out_rows(report._cells(rows))}
    assert (loo["x"]["chosen_elsewhere"], loo["x"]["chosen_on_itself"]) == ("c", "b")
    assert loo["x"]["paired_regret"] == pytest.approx(0.055)          # b (0.60, 0.61) - c (0.55)
    assert loo["x"]["itself_paired_regret"] == pytest.approx(0.0)
    assert loo["z"]["chosen_on_itself"] == "c" and loo["z"]["itself_unimodal_regret"] == pytest.approx(0.0)
    one_seed = {r["set"]: r for r in report.leave_one_out_rows(report._cells([r for r in rows if r["seed"] == 0]))}
    assert one_seed["x"]["default_paired_low"] is None and one_seed["x"]["default_paired_high"] is None


def test_the_default_regret_is_written_with_its_interval_when_there_is_one():
    row = {"default_paired_regret": 0.0153, "default_paired_std": 0.0011, "default_paired_low": 0.0134,
           "default_paired_high": 0.0172, "default_unimodal_regret": 0.004, "default_unimodal_std": 0.0,
           "default_unimodal_low": None, "default_unimodal_high": None}
    assert report._fmt_interval(row, "default_paired_") == "+1.5 ± 0.1 [+1.3, +1.7]"
    assert report._fmt_interval(row, "default_unimodal_") == "+0.4 ± 0.0"      # one seed: no interval
    assert report._fmt_interval({}, "default_paired_") == ""                      # no default in the grid


def test_the_report_writes_the_default_regret_interval(tmp_path):
    """A grid folder of two settings x two seeds (results.json and grid.json only): the markdown
    leave-one-out row holds the default's regret with its interval, as the json has it."""
    _write_grid(tmp_path, (("default", 0, 0.50), ("default", 1, 0.52), ("b", 0, 0.60), ("b", 1, 0.61)))
    found = report.write_zoo_report(tmp_path)
    [row] = found["leave_one_out"]
    half = 6.313751514675043 * np.std([0.10, 0.09], ddof=1) / np.sqrt(2)
    assert (row["default_paired_low"], row["default_paired_high"]) == pytest.approx((0.095 - half, 0.095 + half))
    lines = (tmp_path / "zoo.md").read_text().splitlines()
    assert found["missing"] == [] and not any("Incomplete" in t for t in lines)     # every setting at every seed
    line = next(t for t in lines if t.startswith("| x | default"))
    assert f"+9.5 ± 0.7 [{(0.095 - half) * 100:+.1f}, {(0.095 + half) * 100:+.1f}]" in line
    regret = next(r for r in found["regret"] if r["figure"] == "i2t_map")   # the regret table: signed points
    assert next(t for t in lines if t.startswith("| x | i2t_map")).endswith(f"| {regret['regret'] * 100:+.1f} |")


def test_per_run_pick_keeps_the_run_each_score_prefers_and_compares_it_with_the_default():
    # two sets x two seeds x three settings; test and validation scores differ per run
    rng = np.random.default_rng(0)
    rows, found = [], {}
    for name in ("x", "z"):
        for method in ("default", "b", "c"):
            for seed in (0, 1):
                test, val = rng.uniform(0.3, 0.7, 2)
                run = {**_run(method, seed, **_scores(test, val)), "dataset": name, "run_dir": f"{name}/{method}/{seed}"}
                run["unimodal_t2i_map"] = test - 0.1                       # protocols differ
                rows.append(run)
                found[run["run_dir"]] = {c: float(rng.uniform()) for c in report.CRITERIA}
    rows = [r for r in rows if not (r["dataset"] == "z" and r["method"] == "c" and r["seed"] == 1)]  # z seed 1: not every setting
    cells = report._cells(rows)
    picked = {r["picker"]: r for r in report.per_run_pick_rows(cells, found)}
    assert set(picked) == {"validation mAP (labels)", *report.CRITERIA}
    for picker, row in picked.items():
        gaps = []                                                          # a plain loop over (set, seed)
        for name, seed in (("x", 0), ("x", 1), ("z", 0)):
            runs = [r for r in rows if r["dataset"] == name and r["seed"] == seed]
            key = (lambda r: np.mean([r["val_" + k] for _, k in report.FIGURES])) if picker.startswith("validation") \
                else (lambda r: found[r["run_dir"]][picker])
            best, default = max(runs, key=key), next(r for r in runs if r["method"] == "default")
            gaps.append([np.mean([best[k] - default[k] for k in ("i2t_map", "t2i_map")]),
                         np.mean([best[k] - default[k] for k in ("unimodal_i2t_map", "unimodal_t2i_map")])])
        assert row["pairs"] == 3
        assert row["paired"] == pytest.approx(np.mean([g[0] for g in gaps]))
        assert row["unimodal"] == pytest.approx(np.mean([g[1] for g in gaps]))
        assert row["sets"]["z"] == pytest.approx(gaps[2])


def test_the_zoo_command_runs_a_short_grid_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "zoo"
    # a 512-d set: on zoo-fewlabels' 1024-d features (the selection's CCA, wider layers) it took 6 s, here 1.5
    ablation_cli.main(["--zoo", "--dataset", "zoo-complementary", "--seeds", "1", "--out", str(out),
                       "--val_queries", "100", "--vary", "modality_dropout=0", "--no_plots",
                       "--data_root", str(tmp_path / "data"), *TINY])
    found = json.loads((out / "zoo.json").read_text())
    assert {r["set"] for r in found["regret"]} == {"zoo-complementary"} and len(found["regret"]) == 4
    for row in found["regret"]:
        runs = {m: json.loads((out / row["set"] / "16bit" / m / "seed0" / "results.json").read_text())
                for m in ("default", "modality_dropout=0")}
        assert row["default"] == pytest.approx(runs["default"][row["figure"]])
        assert row["best"] == pytest.approx(max(r[row["figure"]] for r in runs.values()))
    assert {r["chosen"] for r in found["selection"]} <= {0.0, 0.75} and len(found["selection"]) == 1
    assert found["leave_one_out"][0]["chosen_elsewhere"] == "default"     # no other set to choose on
    assert [r["set"] for r in found["criterion_correlation"]] == []   # fewer than 3 runs per set: no rho
    assert [(r["picker"], r["pairs"]) for r in found["per_run_pick"]][:2] == [("validation mAP (labels)", 1), ("consensus", 1)]
    text = (out / "zoo.md").read_text()
    assert "## Leave one set out" in text and "| zoo-complementary | unimodal_t2i_map |" in text
    assert "margin over the runner-up" in text and "chosen on the set itself (labels)" in text
    assert "the default's with the 90% interval of its mean" in text
    assert "zoo report:" in capsys.readouterr().out


def test_the_zoo_sets_script_describes_the_sets(capsys):
    import zoo_sets_cli

    rows = zoo_sets_cli.main(["--sets", "zoo-manylabels", "zoo-labeltext"])
    assert [r["set"] for r in rows] == ["zoo-manylabels", "zoo-labeltext"]
    assert "| zoo-manylabels | 256 / 1024 | 80 |" in capsys.readouterr().out
    assert all(r["chance"] < min(r["image_to_image"], r["text_to_text"]) for r in rows)
    with pytest.raises(SystemExit):
        zoo_sets_cli.main(["--sets", "zoo-nope"])
    [row] = zoo_sets_cli.main(["--sets", "zoo-random-2", "--json"])       # a random set too, with its overlap
    assert row["description"].startswith("drawn from the zoo's prior (seed 2)") and 0 < row["cross_modal_overlap"] < 1


def test_a_grid_with_missing_runs_says_so_and_a_whole_one_does_not(tmp_path):
    """A family still training (or with failed runs): set z has no run of setting b and only seed 0
    of the default. Its regret of 0 and the choice among the settings every set has would otherwise
    read as results."""
    rows = [_run(m, s, **_scores(0.5, 0.5)) for m in ("default", "b") for s in (0, 1)]
    rows += [{**_run("default", 0, **_scores(0.5, 0.5)), "dataset": "z"}]
    assert report.missing_rows(report._cells(rows)) == [{"set": "z", "missing": {"b": [0, 1], "default": [1]}}]
    assert report.missing_rows(report._cells(rows[:4])) == []
    _write_grid(tmp_path, (("default", 0, 0.50), ("default", 1, 0.52), ("b", 0, 0.60)))
    text = (tmp_path / "zoo.md").read_text() if report.write_zoo_report(tmp_path)["missing"] else ""
    assert "**Incomplete grid**, so its regrets and choices are partial: x lacks runs of 1 of the 2 settings." in text


def test_a_report_of_one_set_without_a_default_leaves_the_choice_blank(tmp_path):
    """One set and two named settings (no `default`, as zoo_family's --take may give): nothing to
    choose on the other sets, so the leave-one-out row names no choice and no regret, and the
    report is still written (it raised KeyError before)."""
    _write_grid(tmp_path, (("a", 0, 0.50), ("a", 1, 0.52), ("b", 0, 0.60), ("b", 1, 0.61)))
    [row] = report.write_zoo_report(tmp_path)["leave_one_out"]
    assert row["chosen_elsewhere"] is None and row["paired_regret"] is None and "default_paired_regret" not in row
    assert row["chosen_on_itself"] == "a" and row["itself_paired_regret"] == pytest.approx(0.095)
    text = (tmp_path / "zoo.md").read_text()
    assert "| x | i2t_map | b | 0.605 |  |  |" in text          # no default: no default score, no regret
    loo = text.split("## Leave one set out", 1)[1]
    line = next(t for t in loo.splitlines() if t.startswith("| x |"))
    assert line.startswith("| x |  |") and "None" not in line and "nan" not in text
