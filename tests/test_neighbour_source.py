"""The cross-modal neighbour overlap (selection/neighbour_source.py), against a plain loop."""
import numpy as np
import pytest

from selection.neighbour_source import cross_modal_overlap


def _plain_overlap(image, text, k):
    """For each row: sort the others by cosine on each side, keep k, count the rows in both lists."""
    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    shares = []
    for i in range(len(image)):
        others = [j for j in range(len(image)) if j != i]
        by_image = sorted(others, key=lambda j: -cosine(image[i], image[j]))[:k]
        by_text = sorted(others, key=lambda j: -cosine(text[i], text[j]))[:k]
        shares.append(len(set(by_image) & set(by_text)) / k)
    return sum(shares) / len(shares)


def test_the_overlap_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((40, 4))
    image = shared @ rng.standard_normal((4, 12)) + 0.8 * rng.standard_normal((40, 12))
    text = shared @ rng.standard_normal((4, 9)) + 0.8 * rng.standard_normal((40, 9))
    for k in (1, 3, 5):
        assert cross_modal_overlap(image, text, k=k) == pytest.approx(_plain_overlap(image, text, k))


def test_sides_that_share_their_structure_agree_more_than_sides_that_do_not():
    rng = np.random.default_rng(1)
    shared = rng.standard_normal((300, 6))
    image = shared + 0.3 * rng.standard_normal((300, 6))
    agreeing = shared + 0.3 * rng.standard_normal((300, 6))
    unrelated = rng.standard_normal((300, 6))
    high, low = cross_modal_overlap(image, agreeing), cross_modal_overlap(image, unrelated)
    assert high > 0.3 and low < 0.1          # chance is k / n = 10 / 300
    assert cross_modal_overlap(image, image) == 1.0


def test_a_large_set_is_sampled_and_bad_input_is_refused():
    rng = np.random.default_rng(2)
    image, text = rng.standard_normal((500, 8)), rng.standard_normal((500, 8))
    sampled = cross_modal_overlap(image, text, sample=200)
    assert sampled == cross_modal_overlap(image, text, sample=200)                  # a fixed seed
    assert sampled != cross_modal_overlap(image, text, sample=200, seed=1)
    assert cross_modal_overlap(image[:200], text[:200]) == cross_modal_overlap(image[:200], text[:200], sample=200)
    with pytest.raises(ValueError, match="400 rows"):
        cross_modal_overlap(image, text[:400])
    with pytest.raises(ValueError, match="too few"):
        cross_modal_overlap(image[:10], text[:10])


def test_first_limits_the_pairs_and_the_sample_is_read_in_increasing_order():
    rng = np.random.default_rng(3)
    image, text = rng.standard_normal((300, 8)), rng.standard_normal((300, 8))
    assert cross_modal_overlap(image, text, first=120) == cross_modal_overlap(image[:120], text[:120])
    seen = []

    class Lazy:    # like an HDF5 dataset: rows must be asked for in increasing order
        def __init__(self, a):
            self.a = a

        def __len__(self):
            return len(self.a)

        def __getitem__(self, rows):
            seen.append(rows)
            assert np.all(np.diff(rows) > 0)
            return self.a[rows]
    assert cross_modal_overlap(Lazy(image), Lazy(text), sample=50) == cross_modal_overlap(image, text, sample=50)
    assert [len(r) for r in seen] == [50, 50]
