"""scripts/zoo_family.py and study/family.py: settings from several grids relabelled into one
folder, the sources left as they were, and the zoo report written over the family."""
import json

import pytest

import zoo_family_cli
from study.family import FamilyError, Take, assemble_family
from study.zoo import FIGURES

KEYS = [k for _, k in FIGURES]


def _grid(root, settings: dict, sets=("zoo-a", "zoo-b"), seeds=(0, 1)):
    """A zoo grid on disk without training: {setting: test score}; validation = test - 0.01."""
    for name in sets:
        for setting, score in settings.items():
            for seed in seeds:
                run = root / name / "16bit" / setting / f"seed{seed}"
                (run / "checkpoints").mkdir(parents=True)
                (run / "checkpoints" / "model.pth").write_bytes(b"weights")
                value = score + seed / 100 + (0.05 if name == "zoo-b" else 0.0)
                result = {"dataset": name, "bits": 16, "seed": seed, **{k: value for k in KEYS},
                          **{f"val_{k}": value - 0.01 for k in KEYS}}
                (run / "results.json").write_text(json.dumps(result))
                (run / "grid.json").write_text(json.dumps({"method": setting, "baseline": "default"}))
    return root


def test_takes_are_relabelled_into_one_folder_and_the_grids_stay_as_they_were(tmp_path):
    weights = _grid(tmp_path / "weights", {"default": 0.50, "balanced_weight=0.5": 0.52})
    rates = _grid(tmp_path / "rates", {"default": 0.52, "lr_hash=0.002": 0.49})
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    counts = assemble_family(tmp_path / "family", [Take("default", weights, "balanced_weight=0.5"),
                                                   Take("balanced_weight=1", weights, "default"),
                                                   Take("lr_hash=0.002", rates, "lr_hash=0.002")])
    assert counts == {"default": 4, "balanced_weight=1": 4, "lr_hash=0.002": 4}
    assert sorted(str(p) for p in tmp_path.rglob("*") if "family" not in p.parts) == before
    run = tmp_path / "family" / "zoo-b" / "16bit" / "default" / "seed1"
    assert json.loads((run / "results.json").read_text())["i2t_map"] == pytest.approx(0.52 + 0.01 + 0.05)
    assert json.loads((run / "grid.json").read_text()) == {"method": "default",
                                                          "family_source": f"{weights}:balanced_weight=0.5"}
    other = json.loads((tmp_path / "family" / "zoo-a" / "16bit" / "balanced_weight=1" / "seed0" / "grid.json").read_text())
    assert other["method"] == "balanced_weight=1" and other["baseline"] == "default"
    assert not list((tmp_path / "family").rglob("checkpoints"))      # never copied


def test_bad_takes_fail_before_anything_is_copied(tmp_path):
    grid = _grid(tmp_path / "grid", {"default": 0.5, "lr_hash=0.002": 0.4})
    with pytest.raises(FamilyError, match=r"no runs of setting 'lr_hash=9'.*settings there: default, lr_hash=0.002"):
        assemble_family(tmp_path / "f1", [Take("default", grid, "default"), Take("x", grid, "lr_hash=9")])
    assert not (tmp_path / "f1").exists()
    with pytest.raises(FamilyError, match="no such grid folder"):
        assemble_family(tmp_path / "f2", [Take("default", tmp_path / "nope", "default")])
    with pytest.raises(FamilyError, match="label 'default' is taken twice"):
        assemble_family(tmp_path / "f3", [Take("default", grid, "default"), Take("default", grid, "lr_hash=0.002")])
    (tmp_path / "f4").mkdir()
    (tmp_path / "f4" / "keep.txt").write_text("results")
    with pytest.raises(FamilyError, match="not empty"):
        assemble_family(tmp_path / "f4", [Take("default", grid, "default")])
    assert (tmp_path / "f4" / "keep.txt").read_text() == "results"


def test_the_command_writes_the_report_over_the_family(tmp_path, capsys):
    weights = _grid(tmp_path / "weights", {"default": 0.50, "balanced_weight=0.5": 0.52})
    rates = _grid(tmp_path / "rates", {"default": 0.52, "lr_hash=0.002": 0.55})
    report = zoo_family_cli.main(["--out", str(tmp_path / "family"),
                                  "--take", "default", str(weights), "balanced_weight=0.5",
                                  "--take", "balanced_weight=1", str(weights), "default",
                                  "--take", "lr_hash=0.002", str(rates), "lr_hash=0.002"])
    assert json.loads((tmp_path / "family" / "zoo.json").read_text()) == json.loads(json.dumps(report))
    loo = {r["set"]: r for r in report["leave_one_out"]}
    assert loo["zoo-a"]["chosen_elsewhere"] == "lr_hash=0.002"       # zoo-b's validation scores choose
    assert loo["zoo-a"]["default_paired_regret"] == pytest.approx(0.03)
    regret = {(r["set"], r["figure"]): r for r in report["regret"]}
    assert regret[("zoo-b", "i2t_map")]["default"] == pytest.approx(0.52 + 0.005 + 0.05)
    assert (tmp_path / "family" / "summary.md").is_file()
    assert "zoo report:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:                           # the family exists now: refused
        zoo_family_cli.main(["--out", str(tmp_path / "family"), "--take", "default", str(weights), "default"])
    assert stop.value.code == 2 and "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):                                   # no take labelled default
        zoo_family_cli.main(["--out", str(tmp_path / "f2"), "--take", "x", str(weights), "default"])
