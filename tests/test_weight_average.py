"""The unimodal branch is scored with a moving average of its weights (config unimodal_average,
model.WeightAverage), each checked against a plain loop written here."""
import pytest
import torch

import ICMR
import train
from config import ConfigError, build_config
from conftest import small_dataset
from model import WeightAverage
from runio.checkpoint import read_checkpoint


def plain_average(steps, horizon):
    """The average after each weight in `steps` (tensors), written out: weight n (from 1) enters
    with share 1/n while n <= horizon (the plain mean so far), then with share 1/horizon."""
    average = None
    for n, weights in enumerate(steps, start=1):
        share = 1.0 / n if n <= horizon else 1.0 / horizon
        average = weights.clone() if average is None else (1 - share) * average + share * weights
    return average


@pytest.mark.parametrize("horizon", [1, 4, 100])
def test_the_average_is_the_plain_mean_then_an_exponential_one(horizon):
    torch.manual_seed(0)
    parameter = torch.zeros(3, 5)
    average, seen = WeightAverage([parameter], horizon), []
    for _ in range(12):
        parameter.add_(torch.randn(3, 5))         # an optimiser step
        seen.append(parameter.clone())
        average.update()
    torch.testing.assert_close(average.average[0], plain_average(seen, horizon))
    if horizon == 100:                            # 12 updates: the mean of them all
        torch.testing.assert_close(average.average[0], torch.stack(seen).mean(0))
    if horizon == 1:                              # the last weights
        torch.testing.assert_close(average.average[0], seen[-1])
    assert not torch.equal(parameter, average.average[0]) or horizon == 1
    average.copy_to_weights()
    torch.testing.assert_close(parameter, plain_average(seen, horizon))


def test_a_saved_average_goes_on_as_if_never_stopped():
    torch.manual_seed(1)
    steps = [torch.randn(4) for _ in range(10)]
    parameter = torch.zeros(4)
    whole = WeightAverage([parameter], 3)
    for weights in steps:
        parameter.copy_(weights)
        whole.update()
    parameter.copy_(steps[5])
    first = WeightAverage([parameter], 3)
    for weights in steps[:6]:
        parameter.copy_(weights)
        first.update()
    second = WeightAverage([parameter], 3)
    second.load_state_dict(first.state_dict())
    for weights in steps[6:]:
        parameter.copy_(weights)
        second.update()
    assert second.updates == 10
    torch.testing.assert_close(second.average[0], whole.average[0])
    empty = WeightAverage([parameter], 3)
    empty.copy_to_weights()                      # nothing averaged yet: the weights stay
    torch.testing.assert_close(parameter, steps[-1])


def _args(tmp_path, name, *extra):
    return ["--dataset", "small", "--data_root", str(small_dataset(tmp_path.parent)), "--hash_lens", "16",
            "--epoch", "1", "--unimodal_epochs", "2", "--fusion_dim", "64", "--fusion_ff_dim", "64",
            "--hash_hidden", "32", "--batch_size", "64", "--modality_dropout", "0", "--balanced_neighbours", "covariance", "--device", "cpu",
            "--output_dir", str(tmp_path / name), "--checkpoint_dir", str(tmp_path / name / "ck"), *extra]


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_the_branch_is_scored_and_saved_as_the_average_of_its_steps(tmp_path, monkeypatch, share):
    """The branch's weights after each of its steps, recorded here, averaged by the plain loop
    over unimodal_average x its steps, are the checkpoint's branch (0: its last weights)."""
    steps, step = [], ICMR.Solver._step

    def recording_step(solver, loss):
        step(solver, loss)
        if solver.epoch >= solver.cfg.epoch:      # a branch epoch
            steps.append({name: p.detach().clone() for name, p in solver.branch.named_parameters()})
    monkeypatch.setattr(ICMR.Solver, "_step", recording_step)
    [result] = train.main(_args(tmp_path, "run", "--unimodal_average", str(share)))
    saved = read_checkpoint(result["checkpoint"], torch.device("cpu"))["unimodal_branch"]
    assert len(steps) >= 8                        # 2 epochs of several steps: the exponential part is reached
    horizon = max(1.0, share * len(steps))
    for name in steps[0]:
        expected = plain_average([s[name] for s in steps], horizon)
        torch.testing.assert_close(saved[name], expected, rtol=1e-5, atol=1e-6, msg=name)
    moved = [name for name in steps[0] if not torch.equal(steps[-1][name], saved[name])]
    assert bool(moved) == bool(share)             # averaged: not the last weights


def test_unimodal_average_outside_0_to_1_is_a_one_line_error():
    with pytest.raises(ConfigError, match="--unimodal_average: must be in \\[0, 1\\], got 1.5"):
        build_config(["--unimodal_average", "1.5"])
    assert build_config([]).unimodal_average == 0.25
