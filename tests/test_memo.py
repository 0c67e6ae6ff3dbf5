"""selection/memo.py: the feature-only results a process keeps (the input space, the forks' relevances)
are exactly what the computation gives, computed once per content, and handed out as fresh copies."""
import numpy as np

from selection import criteria
from selection.memo import ContentMemo, content_key


def _pairs(seed, rows=120):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 12)).astype(np.float32), rng.standard_normal((rows, 10)).astype(np.float32)


def test_a_memo_keeps_the_last_results_by_content_and_forgets_the_oldest():
    memo, calls = ContentMemo(kept=2), []

    def compute(name):
        return lambda: calls.append(name) or name
    one, two, three = (np.arange(6.0) + shift for shift in (0, 1, 2))
    assert memo(content_key(one), compute("one")) == "one"
    assert memo(content_key(one.copy()), compute("again")) == "one"          # equal content: kept
    assert memo(content_key(one.astype(np.float32)), compute("float32")) == "float32"   # the dtype counts
    assert memo(content_key(one.reshape(2, 3)), compute("2x3")) == "2x3"              # and the shape
    assert memo(content_key(one), compute("one, forgotten")) == "one, forgotten"      # two kept: the oldest went
    assert memo(content_key(two), compute("two")) == "two" and memo(content_key(three), compute("three")) == "three"
    assert calls == ["one", "float32", "2x3", "one, forgotten", "two", "three"]
    assert content_key(one[::2]) == content_key(np.array([0.0, 2.0, 4.0]))     # a strided view: its values


def test_the_fitted_space_is_computed_once_per_content_and_handed_out_as_copies(monkeypatch):
    image, text = _pairs(0)
    criteria._FITTED_SPACES.clear()
    fit, calls = criteria.INPUT_SPACES["covariance"], []
    monkeypatch.setitem(criteria.INPUT_SPACES, "covariance", lambda *a: calls.append(1) or fit(*a))
    first = criteria.fit_input_space("covariance", image, text, len(image), seed=0, directions=4)
    first[2][:] = 0                                                          # a caller's change stays its own
    second = criteria.fit_input_space("covariance", image.copy(), text, len(image), seed=1, directions=4)
    assert len(calls) == 1
    for kept, computed in zip(second, fit(image, text, 4)):
        np.testing.assert_array_equal(kept, computed)
    changed = image.copy()
    changed[5, 3] += 1e-3                                                    # one value changed: fitted again
    criteria.fit_input_space("covariance", changed, text, len(image), seed=0, directions=4)
    criteria.fit_input_space("covariance", image, text, len(image), seed=0, directions=3)    # as is another count
    assert len(calls) == 3


def test_the_relevances_are_computed_once_per_content_and_equal_the_computation(monkeypatch):
    (image, text), calls = _pairs(1), []
    criteria._RELEVANCES.clear()
    compute = criteria._feature_relevance
    monkeypatch.setattr(criteria, "_feature_relevance", lambda *a: calls.append(1) or compute(*a))
    queries, database = (image[:40], text[:40]), (image[40:], text[40:])
    first = criteria.feature_relevance(queries, database)
    first["shared"][:] = False                                               # a caller's change stays its own
    second = criteria.feature_relevance((image[:40].copy(), text[:40]), database)
    assert len(calls) == 1
    expected = compute(queries, database, 0.05)
    assert second.keys() == expected.keys()
    for name, relevant in expected.items():
        assert second[name].dtype == bool and second[name].shape == (40, 80)
        np.testing.assert_array_equal(second[name], relevant, err_msg=name)
    criteria.feature_relevance(queries, database, share=0.1)                 # another share: computed
    criteria.feature_relevance(database, queries)                            # the other way round: computed
    assert len(calls) == 3
