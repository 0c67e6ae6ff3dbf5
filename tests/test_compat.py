"""The UCMFH-compatible switches (config preset `ucmfh`), validation queries and scale_max per length."""
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import evaluate
import train
from config import Config, ConfigError, build_config, scale_max_for
from conftest import run_records
from data import DataError
from data.splits import hold_out_queries, whole_batches
from ICMR import Solver

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--modality_dropout", "0", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--batch_size", "256",
         "--eval_every", "0", "--save_every", "0", "--unimodal_epochs", "0"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def run_args(tmp_path, data_root, *extra):
    return ["--dataset", "demo", "--data_root", str(data_root), "--checkpoint_dir", str(tmp_path / "ck"),
            "--output_dir", str(tmp_path / "run"), "--hash_lens", "16", "--epoch", "1", *SMALL,
            "--balanced_neighbours", "covariance", *extra]   # one paired stage: steps are counted here


# --- config ---

def test_preset_sets_every_ucmfh_switch_and_flags_win():
    cfg = build_config(["--preset", "ucmfh"])
    assert (cfg.train_limit, cfg.train_drop_last, cfg.eval_drop_last, cfg.eval_batch_size, cfg.eval_sequence,
            cfg.lr_step, cfg.lr_milestones, cfg.lr_gamma, cfg.tie_order, cfg.seed, cfg.modality_dropout,
            cfg.use_progressive_hash, cfg.balanced_loss, cfg.infonce_mask_neighbours) == (
        4992, True, True, 128, "batch", "batch", [30, 80], 1.2, "unstable", 2023, 0.0, False, False, False)
    assert build_config(["--preset", "ucmfh", "--seed", "1", "--eval_sequence", "item"]).seed == 1
    assert build_config([]).preset == "" and build_config([]).eval_sequence == "item"
    with pytest.raises(ConfigError, match="--preset: 'ucmhf' is not one of ucmfh"):
        build_config(["--preset", "ucmhf"])


# The reference's values per dataset (XinyuXia97/UCMFH: ICMR.Solver's head MultiStepLR, its Adam LRs and
# batch, the --epoch of test-flickr.sh, test-nus.sh, test-mscoco.sh): (milestones, gamma, epochs).
REFERENCE_SCHEDULES = {"mirflickr": ([30, 80], 1.2, 100), "nus-wide": ([30, 80], 1.2, 150),
                       "mscoco": ([200], 0.6, 500)}


@pytest.mark.parametrize("dataset", sorted(REFERENCE_SCHEDULES))
def test_preset_keeps_each_datasets_reference_schedule(dataset):
    milestones, gamma, epochs = REFERENCE_SCHEDULES[dataset]
    cfg = build_config(["--dataset", dataset, "--preset", "ucmfh"])
    assert (cfg.lr_milestones, cfg.lr_gamma, cfg.epoch, cfg.lr_fusion, cfg.lr_hash, cfg.batch_size, cfg.lr_step) == \
        (milestones, gamma, epochs, 1e-4, 1e-3, 128, "batch")


def test_readmes_differences_name_exactly_the_presets_switches():
    """README's "How this differs" list names, per difference that has one, its switches as
    `(switch `key`)` or `(switches `a`, `b`)`: each a Config key, together the preset's keys."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How this differs from UCMFH's code", 1)[1].split("\n## ", 1)[0]
    named = [name for group in re.findall(r"\(switch(?:es)? ((?:`\w+`(?:, | and )?)+)\)", section)
             for name in re.findall(r"`(\w+)`", group)]
    preset = yaml.safe_load((ROOT / "configs" / "presets" / "ucmfh.yaml").read_text())
    assert set(named) <= {f.name for f in dataclasses.fields(Config)}
    assert sorted(named) == sorted(preset)


def test_preset_named_in_a_config_file_applies_under_it(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: ucmfh\nseed: 5\n")
    cfg = build_config(["--config", str(path)])
    assert (cfg.preset, cfg.seed, cfg.tie_order) == ("ucmfh", 5, "unstable")


def test_scale_max_per_code_length_from_flags_and_yaml(tmp_path):
    cfg = build_config(["--scale_max", "16:10,32:12,64:15", "--hash_lens", "16", "32", "64"])
    assert cfg.scale_max == {16: 10.0, 32: 12.0, 64: 15.0}
    path = tmp_path / "c.yaml"
    path.write_text("hash_lens: [16, 64]\nscale_max: {16: 8, 64: 14.5}\n")
    assert build_config(["--config", str(path)]).scale_max == {16: 8.0, 64: 14.5}
    assert build_config(["--scale_max", "12"]).scale_max == 12.0
    assert build_config(["--scale_max", "16:8", "--hash_lens", "16", "64"]).scale_max == {16: 8.0}  # 64: the default
    for bad, message in ((["--scale_max", "16:x"], "--scale_max: expected float"),
                         (["--scale_max", "sixteen:3"], "--scale_max: expected int"),
                         (["--scale_max", "16:0.5", "--hash_lens", "16"], "scale_min <= scale_max")):
        with pytest.raises(ConfigError, match=message):
            build_config(bad)


def test_new_switches_reject_bad_values():
    for flags, message in ((["--lr_step", "week"], "--lr_step: 'week' is not one of epoch, batch"),
                           (["--eval_sequence", "all"], "--eval_sequence"), (["--tie_order", "random"], "--tie_order"),
                           (["--val_queries", "-1"], "--val_queries: must be 0 or more"),
                           (["--train_limit", "-5"], "--train_limit")):
        with pytest.raises(ConfigError, match=message):
            build_config(flags)


# --- training switches ---

def test_train_limit_and_drop_last_decide_the_steps(tmp_path, data_root, monkeypatch):
    sizes = []
    real_forward = Solver._forward
    monkeypatch.setattr(Solver, "_forward", lambda self, idx, scale=None: sizes.append(len(idx)) or
                        real_forward(self, idx, scale))
    train.main(run_args(tmp_path / "a", data_root, "--train_limit", "1000"))
    assert sizes == [256, 256, 256, 232]                      # 1,000 pairs: the last batch short
    sizes.clear()
    [result] = train.main(run_args(tmp_path / "b", data_root, "--train_limit", "1000", "--train_drop_last", "true"))
    assert sizes == [256, 256, 256] and result["num_train"] == 1000
    sizes.clear()
    train.main(run_args(tmp_path / "c", data_root))            # the demo's 1,500 pairs, all of them
    assert sizes == [256] * 5 + [220]


def test_lr_milestones_count_batches_or_epochs(tmp_path, data_root):
    def head_lr(*extra):
        cfg = build_config(run_args(tmp_path, data_root, "--lr_milestones", "2", "4", "--lr_gamma", "2", *extra))
        solver = Solver(cfg, bits=16, log=lambda *_: None)
        solver.trainhash(1.0)                                    # one epoch: 6 batches of the 1,500 pairs
        if cfg.lr_step == "epoch":
            solver.lr_scheduler.step()
        return solver.optimizer_hash.param_groups[0]["lr"] / cfg.lr_hash

    assert head_lr("--lr_step", "batch") == pytest.approx(4.0)  # both milestones passed within the epoch
    assert head_lr("--lr_step", "epoch") == pytest.approx(1.0)  # epoch 1 of milestones 2 and 4


def test_training_log_announces_the_hash_stage(tmp_path, data_root, capsys):
    train.main(run_args(tmp_path, data_root))
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("Training Hash Function...")
    assert lines[at + 1].startswith("\u2705 Using Progressive Hash Learning")


# --- evaluation switches ---

@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("trained")
    [result] = train.main(run_args(folder, data_root, "--epoch", "2"))
    from runio.checkpoint import load_trained_model
    model, _ = load_trained_model(folder / "ck" / "hash" / "demo_hash_16.pth", log=lambda *_: None)
    from data import load_dataset
    return model, load_dataset("demo", data_root), result


def scoring_cfg(**kw):
    return build_config([f"--{k}={v}" for k, v in kw.items()])


def test_eval_drop_last_scores_whole_batches_only(trained):
    model, data, _ = trained
    cut = evaluate.score_model(model, data, scoring_cfg(eval_drop_last=True, eval_batch_size=128))
    query, database = whole_batches(data.query, 128), whole_batches(data.retrieval, 128)
    assert (len(query), len(database)) == (384, 3584)         # 400 and 3,600 cut as UCMFH's loaders do
    image = model.encode_split(query, "paired", 128)[0]
    text = model.encode_split(database, "paired", 128)[1]
    expected = evaluate.retrieval_metrics(image, text, query.label, database.label, 50)
    assert cut["i2t_map"] == pytest.approx(expected["map_k"])
    assert cut["i2t_map"] != evaluate.score_model(model, data, scoring_cfg())["i2t_map"]


def test_eval_sequence_batch_makes_codes_depend_on_the_scoring_batch(trained):
    model, data, _ = trained
    item = evaluate.score_model(model, data, scoring_cfg(eval_batch_size=128))
    assert item == evaluate.score_model(model, data, scoring_cfg(eval_batch_size=1000))   # batching is free
    batch = evaluate.score_model(model, data, scoring_cfg(eval_batch_size=128, eval_sequence="batch"))
    assert batch["i2t_map"] != item["i2t_map"]
    assert model.fusion.batch_as_sequence is False             # switched back after scoring
    # the batch mode's codes are the library encoder's over each 128-row batch as one sequence
    model.fusion.batch_as_sequence = True
    try:
        codes = model.encode_split(data.query, "paired", 128)[0]
    finally:
        model.fusion.batch_as_sequence = False
    fusion = model.fusion
    with torch.no_grad():
        rows = torch.cat([fusion.image_proj(torch.from_numpy(data.query.image[:128])),
                          fusion.text_proj(torch.from_numpy(data.query.text[:128]))], 1)   # (128, F)
        fused = torch.nn.functional.normalize(fusion.encoder(rows.unsqueeze(0)).squeeze(0), dim=1)
        expected = model.image_head(fused[:, :fusion.half], model.default_scale)
    torch.testing.assert_close(codes[:128], expected)


def test_unstable_ties_rank_as_numpy_argsort_does():
    rng = np.random.default_rng(0)
    query = np.sign(rng.standard_normal((30, 4)))              # 4 bits, 500 items: ties everywhere
    database = np.sign(rng.standard_normal((500, 4)))
    query_labels = rng.random((30, 5)) < 0.3
    database_labels = rng.random((500, 5)) < 0.3
    expected = {"map_k": 0.0, "map_all": 0.0, "precision_k": 0.0}
    for code, labels in zip(query, query_labels):                # UCMFH's ranking, written out
        order = np.argsort(0.5 * (4 - database @ code))
        relevant = (database_labels[order].astype(float) @ labels.astype(float)) > 0
        expected["map_k"] += evaluate.average_precision(relevant[:50]) / 30
        expected["map_all"] += evaluate.average_precision(relevant) / 30
        expected["precision_k"] += relevant[:50].mean() / 30
    found = evaluate.retrieval_metrics(query, database, query_labels, database_labels, 50, ties="unstable")
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, abs=1e-12)
    stable = evaluate.retrieval_metrics(query, database, query_labels, database_labels, 50)
    assert stable["map_k"] != pytest.approx(found["map_k"], abs=1e-6)   # the order of ties matters here


# --- validation queries ---

def test_hold_out_queries_is_fixed_and_disjoint(trained):
    _, data, _ = trained
    val, rest = hold_out_queries(data.retrieval, 300)
    again, _ = hold_out_queries(data.retrieval, 300)
    assert len(val) == 300 and len(rest) == 3300 and np.array_equal(val.image, again.image)
    rows = {r.tobytes() for r in data.retrieval.image}
    assert {r.tobytes() for r in val.image} | {r.tobytes() for r in rest.image} == rows
    assert not {r.tobytes() for r in val.image} & {r.tobytes() for r in rest.image}
    with pytest.raises(DataError, match="--val_queries: 3600 must be between 1 and"):
        hold_out_queries(data.retrieval, 3600)


def test_val_queries_are_scored_against_the_rest_of_the_database(trained, tmp_path, data_root):
    model, data, _ = trained
    scores = evaluate.score_model(model, data, scoring_cfg(val_queries=300))
    val, rest = hold_out_queries(data.retrieval, 300)
    image = model.encode_split(val, "unimodal", 1024)[0]
    text = model.encode_split(rest, "unimodal", 1024)[1]
    expected = evaluate.retrieval_metrics(image, text, val.label, rest.label, 50)
    assert scores["val_unimodal_i2t_map"] == pytest.approx(expected["map_k"])
    assert scores["i2t_map"] == evaluate.score_model(model, data, scoring_cfg())["i2t_map"]  # query set unchanged
    [result] = train.main(run_args(tmp_path, data_root, "--val_queries", "300"))
    assert {"val_i2t_map", "val_t2i_map", "val_unimodal_t2i_map"} <= set(result)
    with pytest.raises(SystemExit):                            # refused before any training
        train.main(run_args(tmp_path / "x", data_root, "--val_queries", "5000"))
    assert not (tmp_path / "x" / "run" / "metrics.jsonl").exists()


def test_preset_run_end_to_end(tmp_path, data_root):
    [result] = train.main(run_args(tmp_path, data_root, "--preset", "ucmfh", "--seed", "3"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == result
    assert (result["preset"], result["seed"], result["use_progressive_hash"], result["eval_scale"]) == \
        ("ucmfh", 3, False, 1.0)
    assert (result["num_train"], result["num_query"], result["num_retrieval"]) == (1500, 384, 3584)


def test_val_queries_in_batch_mode_are_encoded_as_their_own_batches(trained):
    """With eval_sequence batch the codes depend on the scoring batch, so the held-out queries and the
    rest of the database are encoded as splits of their own (not sliced from the database's codes)."""
    model, data, _ = trained
    scores = evaluate.score_model(model, data, scoring_cfg(val_queries=300, eval_sequence="batch",
                                                           eval_batch_size=128))
    val, rest = hold_out_queries(data.retrieval, 300)
    codes = {name: model.encode_protocols(split, 128, "batch")["paired"] for name, split in
             (("val", val), ("rest", rest))}
    expected = evaluate.retrieval_metrics(codes["val"][1], codes["rest"][0], val.label, rest.label, 50)
    assert scores["val_t2i_map"] == pytest.approx(expected["map_k"])
    item = evaluate.score_model(model, data, scoring_cfg(val_queries=300, eval_batch_size=128))
    assert item["val_t2i_map"] != scores["val_t2i_map"]


def test_epoch_records_the_spread_of_its_step_losses(tmp_path, data_root, monkeypatch):
    import ICMR
    losses, real_loss = [], ICMR.ucmfh_loss
    monkeypatch.setattr(ICMR, "ucmfh_loss", lambda *a: (lambda out: losses.append(out[0].item()) or out)(real_loss(*a)))
    train.main(run_args(tmp_path, data_root, "--balanced_loss", "false"))   # the step loss is ucmfh_loss alone
    [record] = run_records(tmp_path / "run")
    assert len(losses) == 6
    assert record["loss_step_std"] == pytest.approx(float(np.std(losses, ddof=1)), rel=1e-5)


def test_every_dataset_gets_the_validated_scale_max_per_length(tmp_path, data_root):
    # the map is Config's default, so a folder without a config (a user's own features) gets it too
    for dataset in ("demo", "wiki", "mirflickr", "nus-wide", "mscoco", "zoo-labeltext", "my_clip_features"):
        assert build_config(["--dataset", dataset]).scale_max == {16: 8.0, 32: 10.0, 64: 20.0, 128: 20.0}
    assert scale_max_for(build_config([]).scale_max, 48) == 10.0     # a length the map does not name
    [result] = train.main([*run_args(tmp_path, data_root), "--epoch", "2"])      # demo at 16 bits
    assert result["scale_max"] == 8.0 == result["eval_scale"]


def test_scoring_a_checkpoint_with_too_many_val_queries_is_one_line(trained, data_root, tmp_path, capsys):
    """The evaluate.py path (no Solver to check first): refused with the option named, no traceback."""
    model, data, result = trained
    with pytest.raises(DataError, match="--val_queries: 3600 must be between 1 and"):
        evaluate.score_model(model, data, scoring_cfg(val_queries=3600))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--checkpoint", result["checkpoint"], "--data_root", str(data_root),
                       "--val_queries", "5000", "--output_dir", str(tmp_path / "scored")])
    assert exit_info.value.code == 2 and "--val_queries: 5000" in capsys.readouterr().err


def test_ladder_docs_switch_table_matches_the_preset_and_the_defaults():
    """docs/ablation-ladder.md's table of the preset's switches: a row per key of configs/presets/ucmfh.yaml,
    its `ucmfh` cell the preset's value and its `default` cell Config's (first word of each cell)."""
    page = (ROOT / "docs" / "ablation-ladder.md").read_text()
    section = page.split("## The UCMFH-compatible mode", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", section, re.M)}
    preset = yaml.safe_load((ROOT / "configs" / "presets" / "ucmfh.yaml").read_text())
    assert sorted(rows) == sorted(preset)

    def shown(value):
        return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)

    def first_word(cell):
        return cell.split()[0].strip("`,")
    defaults = Config()
    for key, (ucmfh_cell, default_cell) in rows.items():
        assert first_word(ucmfh_cell) == shown(preset[key]), (key, ucmfh_cell)
        assert first_word(default_cell) == shown(getattr(defaults, key)), (key, default_cell)
