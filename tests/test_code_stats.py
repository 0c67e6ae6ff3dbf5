"""An epoch's code statistics (runio/code_stats.py) against a plain loop over the pairs."""
import pytest
import torch

from runio.code_stats import EpochCodeStats


def test_the_epoch_statistics_match_a_plain_loop():
    torch.manual_seed(0)
    steps = [(torch.tanh(3 * torch.randn(rows, 8)), torch.tanh(3 * torch.randn(rows, 8)), scale, torch.rand(4))
             for rows, scale in ((5, 1.0), (5, 2.0), (3, 4.0))]        # the last batch short
    stats = EpochCodeStats(balanced=True)
    for image, text, scale, losses in steps:
        stats.add(list(zip(("loss", "fused_loss", "hash_loss", "balanced_loss"), losses)), image, text, scale)
    got = stats.result()
    assert list(got) == ["loss", "fused_loss", "hash_loss", "scale", "abs_h", "saturated", "quant_error",
                         "balanced_loss", "bit_balance", "loss_step_std"]
    pairs = [(i, t, scale, losses) for image, text, scale, losses in steps for i, t in zip(image, text)]
    n = len(pairs)
    for k, key in enumerate(("loss", "fused_loss", "hash_loss", "balanced_loss")):
        assert got[key] == pytest.approx(sum(float(p[3][k]) for p in pairs) / n)     # per pair, not per step
    assert got["scale"] == pytest.approx(sum(p[2] for p in pairs) / n)
    per_pair = lambda f: sum((f(i) + f(t)) / 2 for i, t, _, _ in pairs) / n   # noqa: E731
    assert got["abs_h"] == pytest.approx(per_pair(lambda h: float(h.abs().mean())))
    assert got["saturated"] == pytest.approx(per_pair(lambda h: float((h.abs() > 0.95).float().mean())))
    assert got["quant_error"] == pytest.approx(per_pair(lambda h: float(((h.abs() - 1) ** 2).mean())))
    balance = 0.0
    for bit in range(8):
        signs = [float(torch.sign(h[bit])) for i, t, _, _ in pairs for h in (i, t)]
        balance += abs(sum(signs) / len(signs))
    assert got["bit_balance"] == pytest.approx(1 - balance / 8)
    step_totals = torch.tensor([float(s[3][0]) for s in steps])
    assert got["loss_step_std"] == pytest.approx(float(step_totals.std()))


def test_without_the_balanced_loss_there_is_no_balanced_sum_and_one_step_has_no_spread():
    stats = EpochCodeStats(balanced=False)
    stats.add([("loss", torch.tensor(1.0)), ("fused_loss", torch.tensor(0.5)), ("hash_loss", torch.tensor(0.5))],
              torch.ones(2, 4), -torch.ones(2, 4), 10.0)
    got = stats.result()
    assert "balanced_loss" not in got and got["loss_step_std"] == 0.0
    assert (got["abs_h"], got["saturated"], got["quant_error"], got["bit_balance"]) == (1.0, 1.0, 0.0, 1.0)
