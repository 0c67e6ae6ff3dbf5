import math

import pytest
import torch

from losses import contrastive_loss, ucmfh_loss


def loop_loss(image, text, temperature, not_negative=None):
    """UCMFH's NT-Xent written out element by element; pair j is no negative of pair i where
    not_negative[i][j] (then neither of j's embeddings is in either of i's denominators)."""
    z = [v / v.norm() for v in list(image) + list(text)]
    n, batch = len(z), len(image)
    total = 0.0
    for i in range(n):
        partner = (i + batch) % n
        sims = [float(z[i] @ z[j]) / temperature for j in range(n)]

        def in_denominator(j):
            if j == i:
                return False
            if j == partner or not_negative is None:
                return True
            return not (i % batch != j % batch and not_negative[i % batch][j % batch])
        denominator = sum(math.exp(s) for j, s in enumerate(sims) if in_denominator(j))
        total += -math.log(math.exp(sims[partner]) / denominator)
    return total / n


@pytest.mark.parametrize("batch", [1, 2, 5, 17])
def test_matches_plain_loop(batch):
    g = torch.Generator().manual_seed(batch)
    image = torch.randn(batch, 8, generator=g, dtype=torch.float64)
    text = torch.randn(batch, 8, generator=g, dtype=torch.float64)
    assert contrastive_loss(image, text, 0.5).item() == pytest.approx(loop_loss(image, text, 0.5), rel=1e-10)


@pytest.mark.parametrize("batch", [1, 2, 6, 11])
def test_neighbours_left_out_of_the_negatives_match_plain_loop(batch):
    g = torch.Generator().manual_seed(batch)
    image, text = (torch.randn(batch, 8, generator=g, dtype=torch.float64) for _ in range(2))
    not_negative = torch.rand(batch, batch, generator=g) < 0.4     # any pattern: asymmetric, diagonal either way
    expected = loop_loss(image, text, 0.5, not_negative.tolist())
    assert contrastive_loss(image, text, 0.5, not_negative).item() == pytest.approx(expected, rel=1e-10)
    if batch > 1:   # leaving negatives out lowers the loss; none left out is the plain loss
        assert contrastive_loss(image, text, 0.5, ~torch.eye(batch, dtype=torch.bool)).item() < loop_loss(
            image, text, 0.5)
    none = torch.zeros(batch, batch, dtype=torch.bool)
    assert contrastive_loss(image, text, 0.5, none).item() == pytest.approx(loop_loss(image, text, 0.5), rel=1e-10)


def test_stable_for_extreme_temperature_and_has_gradients():
    image = torch.randn(6, 4, requires_grad=True)
    text = torch.randn(6, 4)
    loss = contrastive_loss(image, text, temperature=1e-3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(image.grad).all()


def test_hash_stage_loss_is_weighted_sum():
    a, b, c, d = (torch.randn(4, 8) for _ in range(4))
    total, fused, hashed = ucmfh_loss(a, b, c, d, 0.5, 0.5)
    assert total.item() == pytest.approx(contrastive_loss(a, b).item() + 0.5 * contrastive_loss(c, d).item())
    assert fused.item() == pytest.approx(contrastive_loss(a, b).item())
    assert hashed.item() == pytest.approx(contrastive_loss(c, d).item())
    not_negative = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    total, fused, hashed = ucmfh_loss(a, b, c, d, 0.5, 0.5, not_negative)   # both terms leave them out
    assert fused.item() == pytest.approx(contrastive_loss(a, b, 0.5, not_negative).item())
    assert hashed.item() == pytest.approx(contrastive_loss(c, d, 0.5, not_negative).item())
    assert hashed.item() != pytest.approx(contrastive_loss(c, d).item())


def test_neighbour_similarity_is_symmetric_knn_from_features():
    from losses import neighbour_similarity

    fused_image, fused_text = torch.randn(7, 4), torch.randn(7, 4)
    similar = neighbour_similarity(fused_image, fused_text, k=2)
    pair = torch.nn.functional.normalize(torch.cat([fused_image, fused_text], 1), dim=1)
    cos = pair @ pair.T
    for i in range(7):
        others = sorted((j for j in range(7) if j != i), key=lambda j: -cos[i, j].item())[:2]
        for j in range(7):
            expected = i == j or j in others or i in sorted((m for m in range(7) if m != j),
                                                             key=lambda m: -cos[j, m].item())[:2]
            assert similar[i, j].item() == expected


def test_neighbour_space_both_compares_pairs_by_the_mean_of_the_fused_and_the_input_cosine():
    from losses import neighbour_space

    g = torch.Generator().manual_seed(5)
    fused_image, fused_text, image, text = (torch.randn(6, d, generator=g, dtype=torch.float64) for d in (4, 4, 9, 3))
    assert neighbour_space("fused", fused_image, fused_text, image, text) == (fused_image, fused_text)

    def cosine(u, v):
        return (u @ v / (u.norm() * v.norm())).item()

    def unit(v):
        return v / v.norm()
    space = torch.cat(neighbour_space("both", fused_image, fused_text, image, text), 1)
    only_features = torch.cat(neighbour_space("features", fused_image, fused_text, image, text), 1)
    weighted = torch.cat(neighbour_space("both", fused_image, fused_text, image, text, feature_weight=0.75), 1)
    for i in range(6):
        for j in range(6):
            fused_cos = cosine(torch.cat([fused_image[i], fused_text[i]]), torch.cat([fused_image[j], fused_text[j]]))
            input_cos = cosine(torch.cat([unit(image[i]), unit(text[i])]), torch.cat([unit(image[j]), unit(text[j])]))
            assert cosine(only_features[i], only_features[j]) == pytest.approx(input_cos, abs=1e-6)   # float32 inside
            assert cosine(space[i], space[j]) == pytest.approx((fused_cos + input_cos) / 2, abs=1e-6)
            assert cosine(weighted[i], weighted[j]) == pytest.approx(0.25 * fused_cos + 0.75 * input_cos, abs=1e-6)


def test_balanced_loss_matches_weighted_loop():
    from losses import balanced_pairwise_loss

    g = torch.Generator().manual_seed(3)
    hi, ht = torch.tanh(torch.randn(5, 8, generator=g, dtype=torch.float64)), torch.tanh(
        torch.randn(5, 8, generator=g, dtype=torch.float64))
    similar = torch.rand(5, 5, generator=g) < 0.3
    similar |= torch.eye(5, dtype=torch.bool)
    s1 = int(similar.sum()); s0 = 25 - s1
    total = 0.0
    for i in range(5):
        for j in range(5):
            theta = 10.0 / 8 * float(hi[i] @ ht[j])
            s = float(similar[i, j])
            weight = 25 / s1 if s else 25 / s0
            total += weight * (math.log1p(math.exp(theta)) - s * theta)
    assert balanced_pairwise_loss(hi, ht, similar).item() == pytest.approx(total / 25, rel=1e-10)
