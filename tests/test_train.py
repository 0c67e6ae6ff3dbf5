"""End to end: train.main on the demo set (a small model, so it runs in seconds)."""
import json

import numpy as np
import pytest
import torch

import evaluate
import train
from conftest import WIKI_DIR, run_records
from config import Config
from ICMR import Solver

SMALL = ["--modality_dropout", "0", "--balanced_neighbours", "covariance",
         "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "128", "--batch_size", "256", "--scale_max", "10",
         "--eval_every", "1", "--save_every", "1", "--unimodal_epochs", "0"]   # the branch: test_unimodal_branch.py;
# no selection (test_selection.py, test_neighbour_fork.py) but in the first test, which trains the defaults' fork


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def args(tmp_path, data_root, *extra):
    return ["--dataset", "demo", "--data_root", str(data_root), "--checkpoint_dir", str(tmp_path / "ck"),
            "--output_dir", str(tmp_path / "run"), "--hash_lens", "16", "--epoch", "2", *SMALL, *extra]


def test_two_epochs_write_checkpoint_and_results_then_test_hash_reproduces(tmp_path, data_root, capsys):
    forked = ("--balanced_neighbours", "auto")   # the default's fork
    [result] = train.main(args(tmp_path, data_root, *forked))
    out = capsys.readouterr().out
    assert "balanced_neighbours auto: chose" in out and result["neighbour_selection"]["epochs"] == 2
    assert "\u2705 Using Progressive Hash Learning - Scale from 1.0 to 10.0" in out   # the design note's line
    assert "Progressive scale: 1.00 (progress: 0.0%)" in out
    assert "Progressive scale: 10.00 (progress: 100.0%)" in out
    assert "I2T mAP@50" in out.splitlines()[-3]  # the final lines are the score table
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("dataset", "bits", "use_progressive_hash", "scale_schedule", "epoch", "seed",
                "i2t_map", "t2i_map", "map_k", "i2t_map_all", "t2i_map_all", "train_seconds"):
        assert key in saved
    assert saved["dataset"] == "demo" and saved["bits"] == 16 and saved["epoch"] == 2
    assert "hash_lens" not in saved     # one name for the code length
    assert 0.0 < saved["i2t_map"] < 1.0 and 0.0 < saved["t2i_map"] < 1.0
    records = run_records(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["scale"] == 1.0 and records[1]["scale"] == 10.0
    for key in ("loss", "fused_loss", "hash_loss", "abs_h", "saturated", "quant_error", "bit_balance", "seconds"):
        assert key in records[1]
    # the balanced pairwise loss is on by default (docs/zoo.md) and part of the step loss
    assert saved["balanced_loss"] is True and all(r["balanced_loss"] > 0 for r in records)
    assert records[1]["loss"] == pytest.approx(records[1]["fused_loss"] + 0.5 * records[1]["hash_loss"]
                                               + 0.5 * records[1]["balanced_loss"], rel=1e-5)
    assert saved["checkpoint"] == str(tmp_path / "ck" / "hash" / "demo_hash_16.pth")
    checkpoint = torch.load(tmp_path / "ck" / "hash" / "demo_hash_16.pth", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["hash_lens"] == [16]
    assert checkpoint["config"]["balanced_weight"] == 0.5   # the step loss above holds it at 0.5 (docs/zoo.md)
    assert {"fusion", "image_head", "text_head", "optimizer_fusion", "optimizer_hash"} <= set(checkpoint)
    # test_hash loads the checkpoint (weights_only) and reproduces the final scores exactly
    [tested] = train.main(args(tmp_path, data_root, "--task", "3", "--output_dir", str(tmp_path / "test")))
    for key in ("i2t_map", "t2i_map", "i2t_map_all", "t2i_map_all"):
        assert tested[key] == result[key]
    # and so does evaluate.py's command line, given the checkpoint file
    checkpoint = str(tmp_path / "ck" / "hash" / "demo_hash_16.pth")
    scored = evaluate.main(["--checkpoint", checkpoint, "--data_root", str(data_root),
                            "--output_dir", str(tmp_path / "eval")])
    assert scored["i2t_map"] == result["i2t_map"] and scored["t2i_map_all"] == result["t2i_map_all"]
    assert (tmp_path / "eval" / "results.json").is_file() and (tmp_path / "eval" / "config.yaml").is_file()
    # map_k is the scoring run's own setting, never the checkpoint's: 0 = the whole ranking
    whole = evaluate.main(["--checkpoint", checkpoint, "--data_root", str(data_root), "--map_k", "0",
                           "--output_dir", str(tmp_path / "eval0")])
    [tested0] = train.main(args(tmp_path, data_root, "--task", "test_hash", "--map_k", "0",
                                "--output_dir", str(tmp_path / "test0")))
    for scores, folder in ((whole, "eval0"), (tested0, "test0")):
        assert scores["map_k"] is None and scores["i2t_map"] == scores["i2t_map_all"] != result["i2t_map"]
        assert json.loads((tmp_path / folder / "results.json").read_text())["map_k"] is None


def test_resume_after_a_crash_gives_the_unbroken_result(tmp_path, data_root, monkeypatch):
    unbroken = train.main(args(tmp_path / "a", data_root, "--epoch", "3"))[0]

    def crash(self):
        if self.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Solver, "after_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        train.main(args(tmp_path / "b", data_root, "--epoch", "3"))
    monkeypatch.undo()
    with open(tmp_path / "b" / "run" / "metrics.jsonl", "a") as metrics:   # a kill -9 half-way through appending
        metrics.write('{"epoch": 3, "loss": 1.2')
    resumed = train.main(args(tmp_path / "b", data_root, "--epoch", "3", "--resume", "true"))[0]
    for key in ("i2t_map", "t2i_map", "i2t_map_all", "t2i_map_all"):
        assert resumed[key] == unbroken[key]
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    a = torch.load(tmp_path / "a" / "ck" / "hash" / "demo_hash_16.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "ck" / "hash" / "demo_hash_16.pth", weights_only=True)
    for name in ("fusion", "image_head", "text_head"):
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_save_checkpoint_false_trains_the_same_and_writes_no_checkpoint(tmp_path, data_root):
    [saved] = train.main(args(tmp_path, data_root, "--epoch", "1"))
    [unsaved] = train.main(args(tmp_path, data_root, "--epoch", "1", "--save_checkpoint", "false", "--checkpoint_dir",
                                str(tmp_path / "none"), "--output_dir", str(tmp_path / "unsaved")))
    assert saved["checkpoint"] and unsaved["checkpoint"] is None and not (tmp_path / "none").exists()
    assert json.loads((tmp_path / "unsaved" / "results.json").read_text())["checkpoint"] is None
    for key in ("i2t_map", "t2i_map", "i2t_map_all", "t2i_map_all"):
        assert unsaved[key] == saved[key]


def test_resume_refuses_changed_training_settings(tmp_path, data_root, capsys):
    train.main(args(tmp_path, data_root, "--epoch", "1"))
    with pytest.raises(SystemExit) as exit_info:
        train.main(args(tmp_path, data_root, "--epoch", "1", "--resume", "true", "--scale_max", "20"))
    assert exit_info.value.code == 2
    assert "--scale_max" in capsys.readouterr().err


@pytest.mark.parametrize("extra,schedule_label", [(["--use_progressive_hash", "false"], False),
                                                  (["--scale_schedule", "hashnet"], True)])
def test_ablation_switches(tmp_path, data_root, capsys, extra, schedule_label):
    [result] = train.main(args(tmp_path, data_root, "--epoch", "1", *extra))
    out = capsys.readouterr().out
    assert result["use_progressive_hash"] is schedule_label
    assert ("Progressive scale" in out) is schedule_label
    # plain tanh: 1; hashnet fitted to the 6-step run: scale_max at its last step
    assert result["eval_scale"] == (10.0 if schedule_label else 1.0)


def test_real_stage_trains_and_tests(tmp_path, data_root):
    [trained] = train.main(args(tmp_path, data_root, "--task", "train_real", "--epoch", "1"))
    assert (tmp_path / "ck" / "real" / "demo_fusion.pth").is_file()
    [tested] = train.main(args(tmp_path, data_root, "--task", "test_real", "--output_dir", str(tmp_path / "t")))
    assert tested["i2t_map"] == trained["i2t_map"] and trained["bits"] is None


@pytest.mark.parametrize("extra,message", [
    (["--dataset", "mirflickr"], "mirflickr/train.pkl not found"),
    (["--task", "test_hash", "--hash_lens", "128"], "checkpoint not found (train it first with --task train_hash"),
    (["--resume", "true", "--hash_lens", "128"], "demo_hash_128.pth: checkpoint not found (--resume continues"),
    (["--bogus", "1"], "unknown option --bogus"),
])
def test_errors_exit_2_with_one_line(tmp_path, data_root, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main(args(tmp_path, data_root, *extra))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


@pytest.mark.skipif(not WIKI_DIR.is_dir(), reason="real wiki data not present (../shared/data/wiki)")
def test_wiki_trains_on_real_data(tmp_path):
    [result] = train.main(["--dataset", "wiki", "--data_root", str(WIKI_DIR.parent), "--epoch", "1",
                           "--checkpoint_dir", str(tmp_path / "ck"), "--output_dir", str(tmp_path / "run"),
                           "--hash_lens", "16", *SMALL])
    assert result["num_query"] == 693 and result["num_retrieval"] == 2173
    assert 0.0 < result["i2t_map"] < 1.0


@pytest.mark.parametrize("source", ["fused", "features", "both", "both plain mean", "shared", "covariance",
                                    "covariance 4 directions"])
def test_the_balanced_loss_finds_neighbours_where_balanced_neighbours_says(tmp_path, data_root, monkeypatch, source):
    import losses
    seen, real = [], losses.neighbour_similarity

    def spy(image, text, k):   # records what each step's neighbours are found in
        seen.append((image.detach().float().clone(), text.detach().float().clone()))
        return real(image, text, k)
    monkeypatch.setattr(losses, "neighbour_similarity", spy)
    flags = {"covariance 4 directions": ("--balanced_neighbours", "covariance", "--balanced_directions", "4"),
             "both plain mean": ("--balanced_neighbours", "both", "--balanced_feature_weight", "0.5")}.get(source, ("--balanced_neighbours", source))
    train.main(args(tmp_path, data_root, *flags))
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "balanced_neighbours: " + source.split()[0] in saved
    assert f"balanced_feature_weight: {0.5 if source == 'both plain mean' else 0.875}" in saved   # 0.875: the default
    image, text = seen[0]
    if source == "fused":        # the fused pair embeddings: fusion_dim / 2 per side
        assert image.shape[1] == text.shape[1] == 32
        return
    from data import load_dataset
    train_split = load_dataset("demo", str(data_root)).train
    unit = torch.nn.functional.normalize
    image_features, text_features = (unit(torch.from_numpy(np.asarray(f, dtype=np.float32)), dim=1)
                                     for f in (train_split.image, train_split.text))
    if source.split()[0] in ("shared", "covariance"):   # the input half: each pair projected on the fitted space
        from selection.criteria import fit_input_space, project_pairs    # (8 directions, or as told), twice
        directions = 4 if "directions" in source else 8
        assert f"balanced_directions: {directions}" in saved
        sides = [np.asarray(side) for side in (train_split.image, train_split.text)]
        fitted = fit_input_space(source.split()[0], *sides, len(sides[0]), seed=0, directions=directions)
        projected = unit(torch.from_numpy(project_pairs(*sides, fitted)).float(), dim=1)
        assert image.shape[1] == 64 and text.shape[1] == 2 * projected.shape[1] == 2 * directions
        both = unit(torch.cat([projected, projected], 1), dim=1)
        assert (text @ both.T).max(1).values / image.norm(dim=1) == pytest.approx((0.875 / 0.125) ** 0.5, abs=1e-4)
        return
    if source.startswith("both"):   # halves: the fused pair (64) and the input pair (512 + 512), each a unit
        weight = 0.5 if source == "both plain mean" else 0.875  # vector, in proportion sqrt(1 - weight) : sqrt(weight)
        fused_norm = image.norm(dim=1)
        assert image.shape[1] == 64 and fused_norm == pytest.approx(fused_norm[0].item(), abs=1e-5)
        both = unit(torch.cat([image_features, text_features], 1), dim=1)
        input_norm = (text @ both.T).max(1).values          # every row is a training pair's, scaled
        assert input_norm / fused_norm == pytest.approx((weight / (1 - weight)) ** 0.5, abs=1e-4)
        return
    for rows, features in ((image, image_features), (text, text_features)):
        assert rows.shape[1] == features.shape[1]       # the input features, each side unit length
        assert (rows @ features.T).max(1).values == pytest.approx(1.0, abs=1e-5)   # every row is a training pair's


def test_fitted_space_neighbours_work_in_a_streamed_run(tmp_path, data_root, monkeypatch):
    """A streamed run reads its pairs a window at a time; the fitted space is the in-memory run's, and
    every step's input half holds projections of that window's rows."""
    import ICMR
    import losses
    seen, real, spaces, solver_init = [], losses.neighbour_similarity, [], ICMR.Solver.__init__
    fit, fitted_on = ICMR.fit_input_space, []            # in memory: the rows the run holds, not a second read

    def record_fit(kind, image, text, rows, seed, directions):
        fitted_on.append(torch.is_tensor(image) and torch.is_tensor(text))
        return fit(kind, image, text, rows, seed, directions)

    def spy(image, text, k):
        seen.append(text.detach().clone())
        return real(image, text, k)

    def keep_space(self, *a, **k):
        solver_init(self, *a, **k)
        spaces.append((self.streamed, self.input_space))
    monkeypatch.setattr(losses, "neighbour_similarity", spy)
    monkeypatch.setattr(ICMR.Solver, "__init__", keep_space)
    monkeypatch.setattr(ICMR, "fit_input_space", record_fit)
    for stream in ("off", "on"):
        train.main(args(tmp_path / stream, data_root, "--balanced_neighbours", "covariance", "--stream_train", stream,
                        "--stream_block_rows", "500", "--stream_window_blocks", "1", "--epoch", "1"))
    (in_memory, memory_space), (streamed, streamed_space) = spaces
    assert not in_memory and streamed and fitted_on == [True, False]
    assert all(torch.equal(a, b) for a, b in zip(memory_space, streamed_space))
    from data import load_dataset
    from selection.criteria import project_pairs
    train_split = load_dataset("demo", str(data_root)).train
    projected = project_pairs(*(torch.from_numpy(np.asarray(side)) for side in (train_split.image, train_split.text)),
                              streamed_space)
    both = torch.nn.functional.normalize(torch.cat([projected, projected], 1), dim=1)
    last = seen[-1]                                      # the streamed run's last step: rows of training pairs
    assert last.shape[1] == both.shape[1] == 2 * 8    # balanced_directions 8 (the default), twice
    assert (last @ both.T).max(1).values / last.norm(dim=1) == pytest.approx(1.0, abs=1e-4)


def test_no_space_is_fitted_where_no_neighbours_are_used(tmp_path, data_root, monkeypatch):
    import ICMR
    monkeypatch.setattr(ICMR, "fit_input_space", lambda *a, **k: pytest.fail("a space was fitted"))
    train.main(args(tmp_path, data_root, "--balanced_loss", "false", "--infonce_mask_neighbours", "false",
                    "--unimodal_balanced", "0", "--epoch", "1"))


@pytest.mark.parametrize("flip, balanced", [(False, "true"), (True, "true"), (False, "false")])
def test_infonce_leaves_out_the_balanced_neighbours_when_told(tmp_path, data_root, monkeypatch, flip, balanced):
    """flip: the mask's default, then the other value; the neighbours are found without the balanced loss too."""
    import losses
    neighbours, passed = [], []
    real_similarity, real_contrastive = losses.neighbour_similarity, losses.contrastive_loss

    def similarity_spy(image, text, k):   # each paired step's neighbour matrix, in order
        neighbours.append(real_similarity(image, text, k))
        return neighbours[-1]

    def contrastive_spy(image, text, temperature=0.5, not_negative=None):   # what each InfoNCE term leaves out
        passed.append(not_negative)
        return real_contrastive(image, text, temperature, not_negative)
    monkeypatch.setattr(losses, "neighbour_similarity", similarity_spy)
    monkeypatch.setattr(losses, "contrastive_loss", contrastive_spy)
    on = Config().infonce_mask_neighbours != flip
    train.main(args(tmp_path, data_root, "--epoch", "1", "--unimodal_epochs", "1", "--balanced_loss", balanced,
                    "--unimodal_balanced", "0",      # the branch's own neighbours: tests/test_unimodal_branch.py
                    *(("--infonce_mask_neighbours", str(on)) if flip else ())))
    assert f"infonce_mask_neighbours: {str(on).lower()}" in (tmp_path / "run" / "config.yaml").read_text()
    paired = passed[:2 * len(neighbours)]            # the paired steps: a fused and a hash term each
    assert neighbours and len(passed) > len(paired)   # then the branch's steps, with every negative
    assert all(p is None for p in passed[len(paired):])
    for step, similar in enumerate(neighbours):
        assert all((p is similar) if on else (p is None) for p in paired[2 * step:2 * step + 2])


def test_histograms_codes_continuous_map_and_balanced_loss(tmp_path, data_root):
    [result] = train.main(args(tmp_path, data_root, "--epoch", "5", "--record_histograms", "true",
                               "--save_codes", "true", "--balanced_loss", "true"))
    histograms = json.loads((tmp_path / "run" / "histograms.json").read_text())
    # after the epochs at 0, 20, ..., 100% of training (e / (E - 1), the schedule's own progress;
    # with 5 epochs 40% and 60% both round to the third), at each epoch's scale
    assert [h["epoch"] for h in histograms["snapshots"]] == [1, 2, 3, 4, 5]
    assert [h["progress"] for h in histograms["snapshots"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [h["scale"] for h in histograms["snapshots"]] == [1.0, 3.25, 5.5, 7.75, 10.0]
    assert all(sum(h["image"]) == result["num_query"] * 16 for h in histograms["snapshots"])
    assert len(histograms["bin_edges"]) == 51
    records = run_records(tmp_path / "run")
    assert all(r["balanced_loss"] > 0 for r in records)
    assert 0 < result["i2t_map_continuous"] <= 1 and 0 < result["t2i_map_continuous"] <= 1
    assert 0 < result["i2t_map_tie"] <= 1 and 0 < result["t2i_map_all_tie"] <= 1
    curves = json.loads((tmp_path / "run" / "curves.json").read_text())
    assert len(curves["i2t"]["pr"]["radius"]) == 17 and curves["t2i"]["pk"]["k"][0] == 1
    with np.load(tmp_path / "run" / "codes.npz") as codes:
        assert codes["query_image"].shape == (result["num_query"], 16)
        assert codes["database_text"].shape == (result["num_retrieval"], 16)
        rescored = evaluate.retrieval_metrics(codes["query_image"], codes["database_text"], codes["query_label"],
                                              codes["database_label"], k=50)
    assert rescored["map_k"] == result["i2t_map"]


def test_heads_train_at_each_steps_scale_and_score_at_the_test_time_scale(tmp_path, data_root, monkeypatch):
    from model import HashHead
    from runio.checkpoint import load_trained_model
    from schedules import hashnet_scale

    seen = []                                   # (training?, scale) of every hash-head call
    forward = HashHead.forward
    monkeypatch.setattr(HashHead, "forward",
                        lambda self, x, scale=1.0: seen.append((self.training, scale)) or forward(self, x, scale))
    one_stage = ("--balanced_neighbours", "covariance")   # no fork: each step's scale once
    [linear] = train.main(args(tmp_path / "a", data_root, "--epoch", "3", "--eval_every", "0", *one_stage))
    steps = 6                                   # 1,500 demo pairs in batches of 256; two heads per step
    assert [s for training, s in seen if training] == [1.0] * 2 * steps + [5.5] * 2 * steps + [10.0] * 2 * steps
    assert {s for training, s in seen if not training} == {10.0} == {linear["eval_scale"]}
    # HashNet's schedule changes every step here; the test-time scale is its last step's (not scale_max)
    seen.clear()
    [result] = train.main(args(tmp_path / "b", data_root, "--epoch", "2", "--eval_every", "0", "--scale_schedule",
                               "hashnet", "--hashnet_step_size", "1", "--hashnet_normalize", "false",
                               "--save_codes", "true",
                               "--record_histograms", "true", *one_stage))
    expected = [hashnet_scale(it, 1.0, 0.005, 0.5, 1) for it in range(2 * steps)]
    assert [s for training, s in seen if training] == [s for s in expected for _ in range(2)]
    assert result["eval_scale"] == expected[-1] != result["scale_max"]
    # evaluation-mode calls: the scoring (test-time scale) and the histograms (each epoch's last scale)
    assert {s for training, s in seen if not training} == {expected[steps - 1], expected[-1]}
    histograms = json.loads((tmp_path / "b" / "run" / "histograms.json").read_text())["snapshots"]
    assert histograms[-1]["scale"] == expected[-1] and histograms[0]["scale"] == expected[steps - 1]
    # the saved continuous outputs are the model's at that scale, and a rebuilt model uses it too
    model, _ = load_trained_model(tmp_path / "b" / "ck" / "hash" / "demo_hash_16.pth", log=lambda m: None)
    assert model.default_scale == expected[-1]
    from data import load_dataset
    query = load_dataset("demo", data_root).query
    with np.load(tmp_path / "b" / "run" / "codes.npz") as codes:
        saved = codes["query_image"]
    assert np.allclose(model.encode_split(query, "paired", 512)[0].numpy(), saved, atol=1e-6)
    assert not np.allclose(model.encode_split(query, "paired", 512, scale=1.0)[0].numpy(), saved, atol=1e-3)


def test_scoring_features_of_another_width_is_a_one_line_error(tmp_path, capsys):
    from tests.test_data import make_arrays, write_dataset

    write_dataset(tmp_path / "data", "mine")                          # 8-d images, 5-d texts
    train.main(["--dataset", "mine", "--data_root", str(tmp_path / "data"), "--checkpoint_dir", str(tmp_path / "ck"),
                "--output_dir", str(tmp_path / "run"), "--hash_lens", "8", "--epoch", "1", *SMALL])
    wider = {split: make_arrays(n=7, di=12, seed=1) for split in ("train", "query", "retrieval")}
    write_dataset(tmp_path / "data", "mine", overrides=wider)         # re-extracted: 12-d images
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--checkpoint", str(tmp_path / "ck" / "hash" / "mine_hash_8.pth"),
                       "--data_root", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "mine_hash_8.pth was trained on 8-d image and 5-d text features, but mine has 12-d and 5-d" in err


@pytest.mark.parametrize("content", [b"not a checkpoint at all", "tensor", "dict"])
def test_evaluate_refuses_files_that_are_not_checkpoints_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "foreign.pth"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "dict":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--checkpoint", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and str(path) in err
