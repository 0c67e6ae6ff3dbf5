import pytest
import torch

from model import FuseTransEncoder, HashHead, ImageMlp, TextMlp


@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("dims", [(512, 512), (128, 10)])
def test_output_of_a_sample_does_not_depend_on_its_batch(train_mode, dims):
    model = FuseTransEncoder(*dims, fusion_dim=64, num_layers=2, num_heads=4, ff_dim=32, dropout=0.0)
    model.train(train_mode)
    image, text = torch.randn(6, dims[0]), torch.randn(6, dims[1])
    alone_image, alone_text = model(image[:1], text[:1])
    other_image = torch.cat([image[:1], torch.randn(9, dims[0])])
    other_text = torch.cat([text[:1], torch.randn(9, dims[1])])
    with_others = model(other_image, other_text)
    full = model(image, text)
    for mine, theirs in ((alone_image, with_others[0]), (alone_text, with_others[1]),
                         (alone_image, full[0]), (alone_text, full[1])):
        torch.testing.assert_close(mine[0], theirs[0], rtol=1e-5, atol=1e-6)


def test_fused_halves_are_jointly_unit_norm():
    model = FuseTransEncoder(128, 10, fusion_dim=64, num_heads=4, ff_dim=32).eval()
    a, b = model(torch.randn(3, 128), torch.randn(3, 10))
    assert a.shape == b.shape == (3, 32)
    torch.testing.assert_close(torch.cat([a, b], 1).norm(dim=1), torch.ones(3))


def test_head_is_tanh_of_scaled_logits():
    head = HashHead(16, 8, hidden=32, dropout=0.0).eval()
    x = torch.randn(5, 16)
    logits = head.mlp(torch.nn.functional.normalize(x, dim=1))
    torch.testing.assert_close(head(x, scale=3.0), torch.tanh(3.0 * logits))
    torch.testing.assert_close(head(x), torch.tanh(logits))
    plain = HashHead(16, 8, hidden=32, dropout=0.0, use_progressive=False).eval()
    plain.load_state_dict(head.state_dict())
    torch.testing.assert_close(plain(x, scale=3.0), torch.tanh(logits))  # scale ignored when off
    assert ImageMlp is TextMlp is HashHead
