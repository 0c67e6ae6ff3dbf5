"""--modality_dropout auto (selection/): the label-free criteria against plain loops, the budget,
the wiring into training (the chosen value is the one trained with), records, and resume."""

import numpy as np
import pytest
import torch

import ICMR
import train
from config import SELECT_CRITERIA, ConfigError, build_config, to_dict
from conftest import run_records, small_dataset
from runio.checkpoint import merge_checkpoint_config
from selection import choose, criteria
from selection.choose import candidate_epochs, epochs_each, split_for_selection
from selection.criteria import (bit_balance, fit_input_space, held_out_contrastive, instance_retrieval,
                                 label_free_criteria, nearest, project_pairs, relevance_map, shared_space)

TINY = ["--dataset", "small", "--hash_lens", "16", "--epoch", "2", "--fusion_dim", "64", "--fusion_ff_dim", "64",
        "--hash_hidden", "32", "--batch_size", "64", "--unimodal_epochs", "1", "--eval_every", "0", "--device", "cpu"]


def _args(tmp_path, name, *extra):
    return [*TINY, "--data_root", str(small_dataset(tmp_path.parent)), "--output_dir", str(tmp_path / name),
            "--checkpoint_dir", str(tmp_path / name / "ck"), "--balanced_neighbours", "covariance", *extra]


def _map_loop(query_codes, db_codes, relevant, k):
    """mAP@k of a Hamming ranking (ties in database order) written out for the test."""
    aps = []
    for q, code in enumerate(query_codes):
        distance = [int(np.sum(np.sign(code) != np.sign(d))) for d in db_codes]
        order = sorted(range(len(db_codes)), key=lambda j: (distance[j], j))[:k]
        hits, total = 0, 0.0
        for rank, j in enumerate(order, 1):
            if relevant[q][j]:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else 0.0)
    return float(np.mean(aps))


def test_nearest_and_relevance_map_match_plain_loops():
    rng = np.random.default_rng(0)
    query, db = rng.standard_normal((7, 5)), rng.standard_normal((30, 5))
    near = nearest(query, db, 4)
    for q in range(7):
        cos = [query[q] @ d / np.linalg.norm(query[q]) / np.linalg.norm(d) for d in db]
        assert set(np.flatnonzero(near[q])) == set(np.argsort(cos)[::-1][:4])
    codes = [np.sign(rng.standard_normal((n, 12))) for n in (7, 7, 30, 30)]
    relevant = rng.random((7, 30)) < 0.3
    expected = (_map_loop(codes[0], codes[3], relevant, 10) + _map_loop(codes[1], codes[2], relevant, 10)) / 2
    assert relevance_map((codes[0], codes[1]), (codes[2], codes[3]), relevant, 10) == pytest.approx(expected)


def test_instance_retrieval_matches_a_plain_loop_with_ties_at_their_mean_rank():
    rng = np.random.default_rng(1)
    image, text = np.sign(rng.standard_normal((2, 25, 4)))     # 4 bits: many ties
    reciprocal = []
    for queries, items in ((image, text), (text, image)):
        for q, code in enumerate(queries):
            distance = [int(np.sum(code != item)) for item in items]
            nearer = sum(d < distance[q] for d in distance)
            tied = sum(d == distance[q] for d in distance) - 1
            reciprocal.append(1 / (1 + nearer + tied / 2))
    assert instance_retrieval(image, text) == pytest.approx(np.mean(reciprocal))
    assert instance_retrieval(image, image) > instance_retrieval(image, text)   # partners identical: best
    assert instance_retrieval(np.eye(3) * 2 - 1, np.eye(3) * 2 - 1) == 1.0     # distinct and identical: rank 1


def test_held_out_contrastive_matches_a_plain_loop():
    rng = np.random.default_rng(2)
    image, text = np.tanh(rng.standard_normal((2, 6, 8))).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    rows = [unit(v) for v in (*image, *text)]
    losses = []
    for i, row in enumerate(rows):
        partner = (i + 6) % 12
        logits = {j: float(row @ other) / 0.5 for j, other in enumerate(rows) if j != i}
        losses.append(-(logits[partner] - np.log(sum(np.exp(v) for v in logits.values()))))
    assert held_out_contrastive(image, text) == pytest.approx(-np.mean(losses), rel=1e-5)


def test_bit_balance_by_hand():
    assert bit_balance(np.array([[1, -1], [-1, -1]]), np.array([[1, -1], [-1, -1]])) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 3])
def test_the_criteria_prefer_codes_of_what_both_sides_share_over_one_sides_noise(seed):
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((400, 8))
    image, noise = shared + 0.5 * rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    projection = rng.standard_normal((8, 32))
    good = np.sign(shared @ projection)                     # codes of the shared part
    found = {}
    for text_noise in (1.0, 2.0):                           # the text side's own noise, mild and strong
        text = shared + text_noise * noise
        bad = np.sign((shared + 3 * text_noise * noise) @ projection)   # codes that keep the text's noise
        features = ((image[:100], text[:100]), (image[100:], text[100:]))
        found[text_noise] = [label_free_criteria((c[:100], c[:100]), (c[100:], c[100:]), *features)
                             for c in (good, bad)]
    assert found[1.0][0]["consensus"] > found[1.0][1]["consensus"] + 0.04
    for text_noise in (1.0, 2.0):                           # shared holds where the text is much noisier
        assert found[text_noise][0]["shared"] > found[text_noise][1]["shared"] + 0.05
    assert found[2.0][0]["consensus"] < found[2.0][1]["consensus"]   # seeds 0 and 3: consensus fails there


def test_the_training_shared_space_ignores_what_one_side_has_alone(monkeypatch):
    # both sides carry 16 shared dimensions plus loud dimensions of their own (balanced_neighbours shared)
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((400, 16))
    image, text = (np.concatenate([latent @ rng.standard_normal((16, width)), 5 * rng.standard_normal((400, width))], 1)
                   for width in (32, 24))
    space = lambda kind, seed=0: project_pairs(image, text, fit_input_space(kind, image, text, 400, seed))  # noqa: E731
    projected = space("shared")
    assert projected.shape == (400, 16)
    assert np.allclose(projected, shared_space((image, text), (image, text))[0], atol=1e-4)   # fitted on every pair
    truth = nearest(latent, latent, 10)
    found = lambda x: (nearest(x, x, 10) & truth).sum() / truth.sum()   # noqa: E731  share of true 10-NN kept
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)       # noqa: E731
    assert found(projected) > 0.7 and found(np.concatenate([unit(image), unit(text)], 1)) < 0.4
    # the cross-covariance space also drops the loud own dimensions, but keeps the random maps' uneven scales
    assert found(space("covariance")) > found(np.concatenate([unit(image), unit(text)], 1)) + 0.05
    monkeypatch.setattr(criteria, "FIT_ROWS", 100)      # above it: fitted on a seeded draw
    for kind in ("shared", "covariance"):
        first, again, other = (space(kind, seed=s) for s in (1, 1, 2))
        assert first.shape == (400, 16) and np.array_equal(first, again) and not np.allclose(first, other)
        # the tensors a run holds give the same fit as the arrays they came from, drawn rows included
        held = fit_input_space(kind, *(torch.from_numpy(side.astype(np.float32)) for side in (image, text)), 400, 1)
        assert all(np.array_equal(a, b) for a, b in zip(held, fit_input_space(kind, image, text, 400, 1)))
    # only the first `rows` pairs are drawn from: the others may be anything
    fitted = fit_input_space("covariance", np.concatenate([image, np.full_like(image, np.nan)]),
                             np.concatenate([text, np.full_like(text, np.nan)]), 400, seed=1)
    assert all(np.isfinite(part).all() for part in fitted)


@pytest.mark.parametrize("image_wide", [True, False])   # the fit solves on the narrower side: both ways round
def test_the_covariance_space_is_the_cross_covariance_s_top_singular_directions(image_wide):
    rng = np.random.default_rng(1)
    wide, narrow = rng.standard_normal((300, 20)), rng.standard_normal((300, 12))
    wide[:, :3] += 3 * narrow[:, :3]
    image, text = (wide, narrow) if image_wide else (narrow, wide)
    mean_x, mean_y, u, v = fit_input_space("covariance", image, text, 300, seed=0)
    cross = (image - image.mean(0)).T @ (text - text.mean(0)) / 299                 # (Di, Dt), written out here
    values = np.linalg.svd(cross, compute_uv=False)                                 # numpy's SVD as the reference
    assert u.shape == (image.shape[1], 12) and v.shape == (text.shape[1], 12)       # min(16, 20, 12) directions
    assert np.allclose(mean_x, image.mean(0)) and np.allclose(mean_y, text.mean(0))
    for j in range(12):                                                             # cross @ v_j = s_j u_j
        assert np.allclose(cross @ v[:, j], values[j] * u[:, j], atol=1e-8)
    for directions in (u, v):                                                       # not whitened: orthonormal
        assert np.allclose(directions.T @ directions, np.eye(12), atol=1e-8)
    few = fit_input_space("covariance", image[:5], text[:5], 5, seed=0)             # rank 4 < 12 directions
    assert all(np.isfinite(part).all() for part in few)


def test_the_covariance_space_keeps_strong_directions_that_whitening_dilutes():
    # label clusters in 3 strong directions, and a pair-specific part both sides share in 40 weak ones (the
    # zoo's `instance`): CCA's variates weigh every direction alike, so its 16 are mostly the weak part
    rng = np.random.default_rng(2)
    cluster = rng.integers(0, 6, 600)
    centres = 2.0 * rng.standard_normal((6, 3))
    latent = np.concatenate([centres[cluster], 0.3 * rng.standard_normal((600, 40))], 1)   # (600, 43)
    image, text = (latent @ rng.standard_normal((43, width)) + 0.5 * rng.standard_normal((600, width))
                   for width in (64, 48))
    same = cluster[:, None] == cluster[None, :]
    precision = {kind: (nearest(p, p, 11) & same).sum() / (600 * 11)
                 for kind in ("shared", "covariance")
                 for p in [project_pairs(image, text, fit_input_space(kind, image, text, 600, seed=0))]}
    assert precision["covariance"] > 0.9 and precision["shared"] < precision["covariance"] - 0.2


def test_the_budget_and_the_held_out_draw():
    cfg = build_config(["--epoch", "20", "--unimodal_epochs", "5", "--select_budget", "0.5"])
    epochs = candidate_epochs(cfg, [0.0, 0.75])
    # at most +0.5x in tokens encoded: an epoch at 0.75 encodes 1.75 times the pairs' tokens
    assert epochs == 5 and (1 + 1.75) * epochs * (1 - cfg.select_holdout) <= cfg.select_budget * 25
    assert candidate_epochs(cfg, [0.0, 0.0]) == 6                # two candidates at 0: 6 epochs each
    assert (epochs_each(1), epochs_each(3)) == ("1 epoch each", "3 epochs each")   # the logged reason's words
    held, fit = split_for_selection(1000, 0.1, seed=3)
    assert len(held) == 200 and len(fit) == 800 and not set(held) & set(fit)   # at least 200 held out
    assert np.array_equal(held, split_for_selection(1000, 0.1, seed=3)[0])
    assert not np.array_equal(held, split_for_selection(1000, 0.1, seed=4)[0])


def test_auto_is_the_default_and_bad_values_name_the_option():
    assert build_config([]).modality_dropout == "auto"
    assert build_config(["--modality_dropout", "0.25"]).modality_dropout == 0.25
    for bad, words in ((["--modality_dropout", "often"], "expected auto or a number"),
                       (["--modality_dropout", "1.5"], "--modality_dropout"),
                       (["--select_candidates", "0", "2"], "--select_candidates"),
                       (["--select_criterion", "vibes"], "consensus, shared, cluster, image_knn")):
        with pytest.raises(ConfigError, match=words):
            build_config(bad)


def test_auto_trains_with_the_value_it_chose_and_records_why(tmp_path, monkeypatch, capsys):
    # the criterion says the second candidate is better: the run must then equal a fixed 0.75 run
    monkeypatch.setattr(choose, "label_free_criteria", lambda *a, **k: dict.fromkeys(SELECT_CRITERIA, next(values)))
    values = iter([0.1, 0.2])
    saved, save = [], ICMR.Solver.save_checkpoint
    monkeypatch.setattr(ICMR.Solver, "save_checkpoint",
                        lambda solver: saved.append(solver.cfg.output_dir) or save(solver))
    [auto] = train.main(_args(tmp_path, "auto", "--modality_dropout", "auto"))
    assert saved and set(saved) == {str(tmp_path / "auto")}   # the run's alone: a candidate keeps nothing but its codes
    [fixed] = train.main(_args(tmp_path, "fixed", "--modality_dropout", "0.75"))
    out = capsys.readouterr().out
    assert "modality_dropout auto: chose 0.75, highest shared" in out and "0: 0.1000, 0.75: 0.2000" in out
    assert auto["modality_dropout"] == 0.75 and auto["selection"]["chosen"] == 0.75
    assert auto["selection"]["values"] == [0.1, 0.2] and auto["selection"]["candidates"] == [0.0, 0.75]
    for key in ("i2t_map", "t2i_map", "unimodal_i2t_map", "unimodal_t2i_map"):
        assert auto[key] == fixed[key], key
    first = run_records(tmp_path / "auto")[0]
    assert first["epoch"] == 1 and first["selection"]["chosen"] == 0.75
    assert fixed["selection"] is None


def test_a_resumed_run_reads_its_choice_from_the_checkpoint(tmp_path, monkeypatch):
    args = _args(tmp_path, "run", "--modality_dropout", "auto", "--select_candidates", "0", "0.5")
    [first] = train.main(args)
    monkeypatch.setattr(ICMR, "choose_modality_dropout", lambda *a, **k: pytest.fail("chose again on resume"))
    [again] = train.main([*args, "--resume", "true"])
    assert again["selection"] == first["selection"] and again["modality_dropout"] == first["modality_dropout"]
    assert sorted(first["selection"]["all_criteria"][0]) == sorted(SELECT_CRITERIA)


@pytest.mark.parametrize("mode, scales", [("ramp", [1.0, 5.5, 10.0]), ("final", [10.0] * 3), ("plain", [1.0] * 3),
                                          (None, [10.0] * 3)])
def test_the_branch_and_its_teacher_get_the_scale_of_unimodal_scale(tmp_path, monkeypatch, mode, scales):
    """The teacher (the frozen paired network) encodes every training row once per scale: in each epoch of
    ramp, in the first branch epoch only at a constant scale; each batch's targets are its rows' codes."""
    seen = {"branch": {}, "teacher": {}, "teacher_rows": {}}            # epoch -> the scales passed in it; rows
    real, real_teacher = ICMR.Solver.trainbranch, ICMR.Solver._teacher

    def spy(self, mode):
        forward, teacher = self.branch.forward, self.model.encode_pair
        self.branch.forward = lambda image, text, scale=None, unimodal=None: (
            seen["branch"].setdefault(self.epoch, set()).add(scale) or forward(image, text, scale, unimodal))

        def encode_pair(image, text, scale=None):
            seen["teacher"].setdefault(self.epoch, set()).add(scale)
            seen["teacher_rows"][self.epoch] = seen["teacher_rows"].get(self.epoch, 0) + len(image)
            return teacher(image, text, scale)
        self.model.encode_pair = encode_pair
        try:
            return real(self, mode)
        finally:
            del self.model.encode_pair

    def targets(self, idx, image, text, scale):   # as the batch itself would be encoded
        found = real_teacher(self, idx, image, text, scale)
        with torch.no_grad():
            for side, direct in zip(found, self.model.__class__.encode_pair(self.model, image, text, scale)):
                torch.testing.assert_close(side, direct, rtol=0, atol=1e-6)
        return found
    monkeypatch.setattr(ICMR.Solver, "trainbranch", spy)
    monkeypatch.setattr(ICMR.Solver, "_teacher", targets)
    flags = ["--modality_dropout", "0", "--unimodal_epochs", "3", "--scale_max", "10"]
    train.main(_args(tmp_path, "run", *flags, *(["--unimodal_scale", mode] if mode else [])))   # None: the default
    assert [seen["branch"][epoch] for epoch in (2, 3, 4)] == [{scale} for scale in scales]
    computed = (2, 3, 4) if mode == "ramp" else (2,)
    assert seen["teacher"] == {epoch: {scales[epoch - 2]} for epoch in computed}
    assert seen["teacher_rows"] == {epoch: 250 for epoch in computed}          # the small set's training rows
    records = run_records(tmp_path / "run")
    assert [r["scale"] for r in records[2:]] == scales


def test_a_saved_config_with_the_retired_ramp_switch_loads_as_it_trained(tmp_path):
    for ramp, mode in (("true", "ramp"), ("false", "final")):
        (tmp_path / "config.yaml").write_text(f"dataset: demo\nunimodal_scale_ramp: {ramp}\n")
        assert build_config(["--config", str(tmp_path / "config.yaml")]).unimodal_scale == mode
    (tmp_path / "config.yaml").write_text("unimodal_scale_ramp: maybe\n")
    with pytest.raises(ConfigError, match=r"config.yaml: --unimodal_scale_ramp: expected true or false"):
        build_config(["--config", str(tmp_path / "config.yaml")])
    saved = {**to_dict(build_config([])), "unimodal_scale_ramp": False}   # a checkpoint's config of before
    del saved["unimodal_scale"]
    assert merge_checkpoint_config(build_config(["--task", "test_hash"]), saved, "x.pth").unimodal_scale == "final"
    with pytest.raises(ConfigError, match="unimodal_scale: .*final, plain, ramp"):
        build_config(["--unimodal_scale", "steep"])


@pytest.mark.parametrize("anneal, shares", [(1.0, [1.0, 0.5, 0.0]), (0.5, [1.0, 0.0, 0.0]), (0.0, [1.0, 1.0, 1.0])])
def test_annealed_modality_dropout_falls_to_zero_on_schedule(tmp_path, monkeypatch, anneal, shares):
    seen = {}
    real = ICMR.Solver._forward

    def spy(self, idx, scale=None):
        model_forward = self.model.forward
        self.model.forward = lambda image, text, scale=None, unimodal=None: (
            seen.setdefault(self.epoch, []).append(0.0 if unimodal is None else unimodal.float().mean().item())
            or model_forward(image, text, scale, unimodal))
        try:
            return real(self, idx, scale)
        finally:
            self.model.forward = model_forward

    monkeypatch.setattr(ICMR.Solver, "_forward", spy)
    train.main(_args(tmp_path, "anneal", "--modality_dropout", "1", "--modality_dropout_anneal", str(anneal),
                     "--epoch", "3", "--unimodal_epochs", "0"))
    found = [float(np.mean(seen[epoch])) for epoch in range(3)]
    assert found[0] == 1.0 and found[2] == shares[2]
    assert found[1] == pytest.approx(shares[1], abs=0.15)


def test_balanced_directions_sets_how_many_directions_the_input_space_keeps():
    rng = np.random.default_rng(3)
    image, text = rng.standard_normal((300, 20)), rng.standard_normal((300, 12))
    text[:, :3] += image[:, :3]
    full = fit_input_space("covariance", image, text, 300, seed=0)                  # min(16, 20, 12) = 12
    five = fit_input_space("covariance", image, text, 300, seed=0, directions=5)
    assert full[2].shape == (20, 12) and five[2].shape == (20, 5) and five[3].shape == (12, 5)
    assert np.allclose(five[2], full[2][:, :5]) and np.allclose(five[3], full[3][:, :5])  # the top 5 of the 12
    assert fit_input_space("shared", image, text, 300, seed=0, directions=5)[2].shape == (20, 5)
    assert build_config(["--balanced_directions", "12"]).balanced_directions == 12
    for dataset in ("demo", "zoo-fewlabels"):   # the default, chosen on zoo validation at stop 46 (docs/zoo.md)
        assert build_config(["--dataset", dataset]).balanced_directions == 8
    with pytest.raises(ConfigError, match="--balanced_directions: must be at least 1, got 0"):
        build_config(["--balanced_directions", "0"])
    saved = {k: v for k, v in to_dict(build_config([])).items() if k != "balanced_directions"}  # saved before the key
    merged = merge_checkpoint_config(build_config([]), saved, "old.pth")
    assert merged.balanced_directions == 16
