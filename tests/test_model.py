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


def _library_encoder(encoder, image, text):
    """The fused embeddings by PyTorch's own TransformerEncoder, each item a length-1 sequence."""
    tokens = torch.cat([image, text], dim=1).unsqueeze(1)                       # (B, 1, F)
    fused = torch.nn.functional.normalize(encoder.encoder(tokens).squeeze(1), dim=1)
    return fused[:, :encoder.half], fused[:, encoder.half:]


def test_length_one_fast_path_equals_the_library_layer_in_evaluation():
    torch.manual_seed(0)
    encoder = FuseTransEncoder(32, 32, fusion_dim=64, num_heads=4, ff_dim=96).eval()
    image, text = torch.randn(20, 32), torch.randn(20, 32)
    for ours, library in zip(encoder(image, text), _library_encoder(encoder, image, text)):
        torch.testing.assert_close(ours, library, rtol=0, atol=1e-6)


def test_length_one_fast_path_has_the_library_gradients_without_dropout():
    torch.manual_seed(0)
    encoder = FuseTransEncoder(32, 32, fusion_dim=64, num_heads=4, ff_dim=96, dropout=0.0).train()
    image, text = torch.randn(20, 32), torch.randn(20, 32)
    grads = []
    for run in (encoder, lambda i, t: _library_encoder(encoder, i, t)):
        encoder.zero_grad()
        fused_image, fused_text = run(image, text)
        (fused_image.sum() * 3 + fused_text.pow(2).sum()).backward()
        grads.append({n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_fast_path_keeps_attention_dropout_per_head():
    """With length-1 sequences, dropout on the attention weights keeps or drops each head's value
    (scaled by 1/(1-p)); the mean output over many draws is the output without dropout."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True).train()
    layer.dropout1.p = layer.dropout.p = layer.dropout2.p = 0.0      # only the attention dropout left
    from model import _length_one_layer
    x = torch.randn(1, 8).expand(4000, 8)
    with torch.no_grad():
        draws = _length_one_layer(layer, x)
        library = layer(x.unsqueeze(1)).squeeze(1)
        distinct = torch.unique(draws.round(decimals=4), dim=0)
        library_distinct = torch.unique(library.round(decimals=4), dim=0)
    assert len(distinct) == len(library_distinct) == 4               # 2 heads kept or dropped: 4 outcomes
    torch.testing.assert_close(distinct, library_distinct, rtol=0, atol=2e-4)


def test_batch_as_sequence_reproduces_ucmfh_evaluation():
    """UCMFH's evaluation reads a (B, F) batch as one sequence: an item's output then depends on
    its batch neighbours; the default (length-1 sequences) does not."""
    torch.manual_seed(0)
    encoder = FuseTransEncoder(32, 32, fusion_dim=64, num_heads=4, ff_dim=96).eval()
    image, text = torch.randn(10, 32), torch.randn(10, 32)
    alone = encoder(image[:5], text[:5])[0]
    assert torch.allclose(alone, encoder(image, text)[0][:5], atol=1e-6)
    encoder.batch_as_sequence = True
    together = encoder(image, text)[0][:5]
    assert not torch.allclose(encoder(image[:5], text[:5])[0], together, atol=1e-3)
    tokens = torch.cat([image, text], 1).unsqueeze(0)
    expected = torch.nn.functional.normalize(encoder.encoder(tokens).squeeze(0), dim=1)[:5, :32]
    torch.testing.assert_close(together, expected)


def test_head_dropout_applies_in_training_only():
    torch.manual_seed(0)
    head = HashHead(16, 8, hidden=64, dropout=0.5)
    x = torch.randn(6, 16)
    head.train()
    assert not torch.allclose(head(x), head(x))
    head.eval()
    assert torch.equal(head(x), head(x))


def test_dropout_drops_at_rate_p_and_keeps_the_expectation():
    from model import _dropout
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    for p in (0.1, 0.3, 0.75):
        out = _dropout(x, p, training=True)
        kept = out != 0
        assert abs(1 - kept.float().mean().item() - p) < 0.003              # 1e6 draws: sd 5e-4
        assert torch.allclose(out[kept], torch.tensor(2.0 / (1 - round(p * 65536) / 65536)))
        assert abs(out.mean().item() - 2.0) < 0.01
        rows = kept.float().mean(1)                                         # every row, not one lane
        assert rows.min() > 1 - p - 0.07 and rows.max() < 1 - p + 0.07
    assert torch.equal(_dropout(x, 0.3, training=False), x)
    assert torch.equal(_dropout(x, 1.0, training=True), torch.zeros_like(x))
    odd = torch.ones(7, 3)                                                  # sizes not a multiple of 4
    assert _dropout(odd, 0.5, training=True).shape == (7, 3)


def test_training_the_value_views_equals_training_in_proj():
    """trainable_parameters() trains the value rows through views of in_proj: the same Adam
    update as on the whole in_proj, query and key rows untouched, and the state dict sees it."""
    torch.manual_seed(0)
    image, text = torch.randn(12, 32), torch.randn(12, 32)
    models = [FuseTransEncoder(32, 32, fusion_dim=64, num_heads=4, ff_dim=96, dropout=0.0) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = {k: v.clone() for k, v in models[0].state_dict().items()}
    optimizers = [torch.optim.Adam(models[0].parameters(), lr=0.01),
                  torch.optim.Adam(models[1].trainable_parameters(), lr=0.01)]
    assert sum(p.numel() for p in models[1].trainable_parameters()) == \
        sum(p.numel() for p in models[1].parameters()) - 2 * (2 * 64 * 64 + 2 * 64)
    for _ in range(3):
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            fused_image, fused_text = model(image, text)
            (fused_image.sum() * 3 + fused_text.pow(2).sum()).backward()
            optimizer.step()
    after = [m.state_dict() for m in models]
    for key in after[0]:
        torch.testing.assert_close(after[1][key], after[0][key], rtol=1e-5, atol=1e-6)
    weight = after[1]["encoder.layers.0.self_attn.in_proj_weight"]
    assert torch.equal(weight[:128], start["encoder.layers.0.self_attn.in_proj_weight"][:128])
    assert not torch.equal(weight[128:], start["encoder.layers.0.self_attn.in_proj_weight"][128:])
    assert [id(p) for p in models[1].trainable_parameters()] == [id(p) for p in optimizers[1].param_groups[0]["params"]]
    models[1].encoder.layers[0].self_attn.in_proj_weight.data = weight.clone()   # as .to(device) would
    with pytest.raises(RuntimeError, match="moved after trainable_parameters"):
        models[1](image, text)


def test_an_adam_state_of_whole_in_proj_is_cut_to_the_value_rows():
    from runio.checkpoint import value_rows_only
    encoder = FuseTransEncoder(32, 32, fusion_dim=64, num_heads=4, ff_dim=96)
    old = torch.optim.Adam(encoder.parameters())
    encoder(torch.randn(4, 32), torch.randn(4, 32))[0].sum().backward()
    old.step()
    new = torch.optim.Adam(encoder.trainable_parameters())
    new.load_state_dict(value_rows_only(old.state_dict(), new))
    cut = [param for param in new.param_groups[0]["params"] if param.shape[0] == 64]
    assert len(cut) >= 4 and all(new.state[param]["exp_avg"].shape == param.shape for param in cut)
    encoder(torch.randn(4, 32), torch.randn(4, 32))[0].sum().backward()
    new.step()                                                              # shapes agree: no error
