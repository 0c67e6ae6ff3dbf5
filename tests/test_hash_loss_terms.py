"""The hash stage's two InfoNCE terms: the fused term's own temperature (`fused_temperature`) and the
hash term on sign codes with a straight-through gradient (`hash_loss_sign`), each checked against the
plain loop of test_losses and for its wiring into training."""
import pytest
import torch

import ICMR
import train
from config import ConfigError, build_config
from losses import contrastive_loss, straight_through_sign, ucmfh_loss
from test_losses import loop_loss
from test_train import SMALL


def test_fused_temperature_sets_the_fused_term_only():
    a, b, c, d = (torch.randn(5, 8, dtype=torch.float64) for _ in range(4))
    total, fused, hashed = ucmfh_loss(a, b, c, d, 0.5, 0.5, None, 0.3)
    assert fused.item() == pytest.approx(loop_loss(a, b, 0.3), rel=1e-10)
    assert hashed.item() == pytest.approx(loop_loss(c, d, 0.5), rel=1e-10)
    assert total.item() == pytest.approx(loop_loss(a, b, 0.3) + 0.5 * loop_loss(c, d, 0.5), rel=1e-10)
    assert ucmfh_loss(a, b, c, d, 0.5, 0.5, None, 0.0)[1].item() == pytest.approx(loop_loss(a, b, 0.5), rel=1e-10)


def test_sign_codes_score_the_binary_codes_and_pass_the_gradient_straight_through():
    torch.manual_seed(0)
    c, d = (torch.randn(6, 16, dtype=torch.float64).tanh().requires_grad_() for _ in range(2))
    a, b = (torch.randn(6, 8, dtype=torch.float64) for _ in range(2))
    _, _, hashed = ucmfh_loss(a, b, c, d, 0.5, 0.5, None, 0.0, True)
    assert hashed.item() == pytest.approx(loop_loss(c.sign().detach(), d.sign().detach(), 0.5), rel=1e-10)
    hashed.backward()
    # the gradient is the loss's gradient at the sign codes, handed to h unchanged
    signs = [c.detach().sign().requires_grad_(), d.detach().sign().requires_grad_()]
    contrastive_loss(*signs, 0.5).backward()
    assert torch.allclose(c.grad, signs[0].grad) and torch.allclose(d.grad, signs[1].grad)
    assert c.grad.abs().sum() > 0
    h = torch.tensor([-0.2, 0.0, 0.7], requires_grad=True)
    out = straight_through_sign(h)
    out.sum().backward()
    # an exact 0 is +1, as retrieval maps it (metrics/inputs.signs)
    assert out.tolist() == [-1.0, 1.0, 1.0] and h.grad.tolist() == [1.0, 1.0, 1.0]


def test_training_passes_both_settings_to_every_paired_step_but_not_to_autos_candidates(tmp_path, monkeypatch):
    calls, real = [], ICMR.ucmfh_loss
    monkeypatch.setattr(ICMR, "ucmfh_loss", lambda *args: calls.append(args[7:]) or real(*args))
    train.main(["--dataset", "demo", "--data_root", str(tmp_path / "data"), "--output_dir", str(tmp_path / "run"),
                "--checkpoint_dir", str(tmp_path / "ck"), *SMALL, "--epoch", "2", "--hash_lens", "16",
                "--train_limit", "300", "--eval_every", "0", "--fused_temperature", "0.3", "--hash_loss_sign", "true",
                "--modality_dropout", "auto", "--select_budget", "1", "--balanced_neighbours", "covariance"])
    # auto's two candidates first (1 epoch each on the 225 pairs not held out: one batch), with UCMFH's two
    # terms; then the run's 2 epochs of 300 pairs (two batches of 256 each) with the settings
    assert calls == [(0.0, False)] * 2 + [(0.3, True)] * 4


def test_fused_temperature_must_not_be_negative():
    with pytest.raises(ConfigError, match="--fused_temperature: must be 0 or more, got -0.3"):
        build_config(["--fused_temperature", "-0.3"])
