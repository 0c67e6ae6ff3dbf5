"""Label-free criteria: how good are codes, judged without labels?

Each criterion scores the codes of held-out pairs (queries) against the codes of
other pairs (a database), using only the input features:

* `consensus`: mAP@K of the Hamming ranking (image codes against text codes and
  back, averaged) when an item counts as relevant to a query if it is among the
  query's `share` nearest items by image features AND by text features. Items
  on which both sides agree are likely to share content, whatever noise either
  side adds of its own, so codes that keep what the two sides share rank them
  first, and codes that keep one side's noise do not.
* `shared`: the same when the relevant items are a query's `share` nearest in the space
  where the two sides agree: both sides' features projected on their top canonical
  directions (CCA fitted on the database pairs, strongly regularised), averaged. Noise
  of one side's own does not correlate with the other side, so it drops out there,
  even where one side is much noisier (where `consensus` can fail: tests/test_selection.py).
* `cluster`: the same when an item is relevant to a query if the two fall in the same
  cluster of that shared space: k-means with the number of clusters the data's own
  silhouette picks (selection/clusters.py). The data sets the grain of relevance
  instead of a fixed 5%, which matters where labels are few (docs/zoo.md).
* `image_knn`, `text_knn`: the same with one side's neighbours alone.
* `balance`: 1 - mean |mean sign| per bit (1 = every bit splits the items in two).
* `instance`: cross-modal instance retrieval among the held-out pairs themselves: the
  reciprocal rank of a pair's own other side when its image code ranks every held-out
  text code by Hamming distance (ties at their mean rank), and back, averaged.
* `contrastive`: minus the training's contrastive loss (losses.contrastive_loss, at the default
  temperature) of the held-out pairs' image and text outputs, all of them one batch.

The rankings use the metric engine of evaluate.py: a relevance matrix R (Q, N)
is passed as labels (query q carries label q, item j carries the labels of the
queries it is relevant to), since "shares a label" then means R[q, j].
"""
from __future__ import annotations

import numpy as np
import torch

from config import Config
from evaluate import retrieval_metrics
from losses import contrastive_loss
from metrics.inputs import to_sign_codes
from selection.clusters import same_cluster
from selection.memo import ContentMemo, content_key
from study.baselines import fit_cca

CCA_COMPONENTS = 16   # canonical directions of the shared space
CCA_RIDGE = 0.1       # ridge relative to the mean variance: few pairs, wide features
FIT_ROWS = 50_000     # training pairs the balanced loss's input space (fit_input_space) is fitted on, at most
TEMPERATURE = Config.temperature   # the contrastive criterion's: the training loss's default
# the last results of the two costly feature-only computations, by content (selection/memo.py): a run's
# fitted space; a fork's two halves' relevances, as packed bits (4000 x 4000 pairs: 10 MB for all five)
_FITTED_SPACES, _RELEVANCES = ContentMemo(kept=2), ContentMemo(kept=2)


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest(query_features, database_features, count: int) -> np.ndarray:
    """(Q, N) bool: item j is among the `count` most cosine-similar items to query q."""
    similarity = _unit(query_features) @ _unit(database_features).T                  # (Q, N)
    top = np.argpartition(-similarity, count - 1, axis=1)[:, :count]
    out = np.zeros(similarity.shape, dtype=bool)
    np.put_along_axis(out, top, True, axis=1)
    return out


def relevance_map(query_codes, database_codes, relevant, k: int) -> float:
    """Mean of I2T and T2I mAP@k of (Q, b) query codes against (N, b) database codes (a pair of
    (image codes, text codes) each) when `relevant` (Q, N) bool says which items count."""
    (q_image, q_text), (d_image, d_text) = query_codes, database_codes
    query_labels = np.eye(len(relevant), dtype=np.float32)                           # (Q, Q)
    database_labels = relevant.T.astype(np.float32)                                   # (N, Q)
    return float(np.mean([retrieval_metrics(q, d, query_labels, database_labels, k=k, want="map_k")["map_k"]
                          for q, d in ((q_image, d_text), (q_text, d_image))]))


def _fit_shared(image, text, directions: int = CCA_COMPONENTS) -> tuple:
    """(mean_x, mean_y, A, B): the top `directions` canonical directions of the (N, Di), (N, Dt) pairs
    (fit_cca). Each canonical variate has unit variance: the directions weigh alike, however much they vary."""
    return fit_cca(np.asarray(image), np.asarray(text), directions, CCA_RIDGE)


def _fit_covariance(image, text, directions: int = CCA_COMPONENTS) -> tuple:
    """(mean_x, mean_y, U, V): the top `directions` singular directions of the (N, Di), (N, Dt) pairs' cross-
    covariance (partial least squares), not whitened: a direction keeps the variance the two sides share
    along it, so the few strong directions (where labels tend to live) are not diluted by many weak ones.
    In torch, float64: every Solver fits one, and numpy's BLAS would start a second pool of threads
    that spins beside torch's (the test suite ran 20% slower)."""
    x, y = (torch.as_tensor(np.asarray(side), dtype=torch.float64) for side in (image, text))
    mean_x, mean_y = x.mean(0), y.mean(0)
    cross = (x - mean_x).T @ (y - mean_y) / max(len(x) - 1, 1)                     # (Di, Dt)
    c = min(directions, *cross.shape)
    # the narrower side's Gram matrix: its eigenvectors are that side's singular directions, and the
    # other side's follow as cross^T u / s (one symmetric eigensolve: about 3x faster than an SVD)
    wide = cross if cross.shape[0] <= cross.shape[1] else cross.T
    values, vectors = torch.linalg.eigh(wide @ wide.T)
    largest = torch.argsort(values, descending=True)[:c]
    first, singular = vectors[:, largest], values[largest].clamp(min=0.0).sqrt()      # (d, c), (c,)
    usable = singular > 1e-12 * max(float(singular[0]), 1e-300)
    second = wide.T @ first / torch.where(usable, singular, torch.full_like(singular, float("inf")))
    u, v = (first, second) if wide is cross else (second, first)
    return tuple(part.numpy() for part in (mean_x, mean_y, u, v))


# balanced_neighbours value -> the fit of the space its input cosine compares the pairs in
INPUT_SPACES = {"shared": _fit_shared, "covariance": _fit_covariance}


def project_pairs(image, text, fitted):
    """(N, c): (N, Di) image and (N, Dt) text features (numpy or torch, like `fitted`'s arrays) projected
    on `fitted` directions (mean_x, mean_y, A (Di, c), B (Dt, c)), the two sides averaged."""
    mean_x, mean_y, a, b = fitted
    return ((image - mean_x) @ a + (text - mean_y) @ b) / 2


def shared_space(query_features, database_features) -> tuple:
    """(Q, c) and (N, c): each item's image and text features projected on the top canonical
    directions of the database pairs, averaged (c = CCA_COMPONENTS or fewer)."""
    fitted = _fit_shared(*database_features)
    return tuple(project_pairs(np.asarray(image), np.asarray(text), fitted)
                 for image, text in (query_features, database_features))


def fit_input_space(kind: str, image, text, rows: int, seed: int, directions: int = CCA_COMPONENTS) -> tuple:
    """The top `directions` INPUT_SPACES[kind] directions of the first `rows`
    training pairs ((N, Di), (N, Dt) numpy arrays, lazily read rows, or the tensors a run already holds on
    its device), fitted on every one of them or on a seeded draw of FIT_ROWS, so a run over millions of
    pairs (streamed or not) reads and fits a bounded sample. Training passes its balanced_directions (8 by
    default); the default here, CCA_COMPONENTS, is the count of the `shared` criterion's space. A process
    keeps its last two fits, by content (selection/memo.py)."""
    chosen = slice(0, rows) if rows <= FIT_ROWS else \
        np.sort(np.random.default_rng([seed, 2718]).choice(rows, FIT_ROWS, replace=False))
    taken = (side[chosen] for side in (image, text))   # torch takes a numpy index array as it is
    image, text = (np.asarray(part.cpu() if torch.is_tensor(part) else part, dtype=np.float32) for part in taken)
    fitted = _FITTED_SPACES(content_key(kind, directions, image, text),
                            lambda: INPUT_SPACES[kind](image, text, directions))
    return tuple(part.copy() for part in fitted)


def bit_balance(*codes) -> float:
    """1 - mean over bits of |mean sign|, over all rows of `codes` ((N, b) each)."""
    signs = to_sign_codes(np.concatenate([np.asarray(c) for c in codes]), "codes").numpy()
    return float(1.0 - np.abs(signs.mean(0)).mean())


def instance_retrieval(image_codes, text_codes) -> float:
    """Mean reciprocal rank of each pair's partner, image -> text and text -> image, over (Q, b)
    codes of Q pairs ranked by Hamming distance among all Q of the other side. A partner tied with
    others counts at the mean rank of the tie (1 + the items strictly nearer + half the others tied),
    so the score does not depend on an order among equals."""
    image, text = to_sign_codes(image_codes, "image codes").numpy(), to_sign_codes(text_codes, "text codes").numpy()
    distance = (image.shape[1] - image @ text.T) / 2                                  # (Q, Q) Hamming
    partner = np.diag(distance)[:, None]                                              # (Q, 1)
    scores = []
    for d in (distance, distance.T):                                                   # rows: queries
        nearer = (d < partner).sum(1)
        tied = (d == partner).sum(1) - 1                                               # others at the same distance
        scores.append(np.mean(1.0 / (1.0 + nearer + tied / 2)))
    return float(np.mean(scores))


def held_out_contrastive(image_codes, text_codes) -> float:
    """Minus the symmetric InfoNCE loss of the training (losses.contrastive_loss) of (Q, b) image
    and text outputs of Q held-out pairs taken as one batch: higher is better, like every criterion."""
    with torch.no_grad():
        loss = contrastive_loss(torch.as_tensor(np.asarray(image_codes, dtype=np.float32)),
                                torch.as_tensor(np.asarray(text_codes, dtype=np.float32)), TEMPERATURE)
    return -float(loss)


def feature_relevance(query_features, database_features, share: float = 0.05) -> dict:
    """criterion -> (Q, N) bool: which database items count as relevant to each query, from the
    input features alone ((image, text) pairs of (Q, Di)/(Q, Dt) and (N, Di)/(N, Dt)). `share`: the
    fraction of the database that counts as a query's nearest items (at least 5 items). It does not
    depend on the codes: compute it once for every set of codes scored on the same items (a process keeps
    the last two, by content: selection/memo.py)."""
    arrays = [np.asarray(side) for side in (*query_features, *database_features)]
    shape = (len(arrays[0]), len(arrays[2]))                                          # (Q, N)
    packed = _RELEVANCES(content_key(share, *arrays), lambda: {
        name: np.packbits(relevant) for name, relevant in _feature_relevance(arrays[:2], arrays[2:], share).items()})
    return {name: np.unpackbits(bits, count=shape[0] * shape[1]).view(bool).reshape(shape)
            for name, bits in packed.items()}


def _feature_relevance(query_features, database_features, share: float) -> dict:
    """feature_relevance's computation."""
    count = min(len(database_features[0]), max(5, round(share * len(database_features[0]))))
    by_image = nearest(query_features[0], database_features[0], count)
    by_text = nearest(query_features[1], database_features[1], count)
    shared_query, shared_database = shared_space(query_features, database_features)
    by_cluster, _ = same_cluster(_unit(shared_query), _unit(shared_database))
    return {"consensus": by_image & by_text, "shared": nearest(shared_query, shared_database, count),
            "cluster": by_cluster, "image_knn": by_image, "text_knn": by_text}


def label_free_criteria(query_codes, database_codes, query_features=None, database_features=None,
                        share: float = 0.05, k: int = 50, relevance: dict | None = None) -> dict:
    """Every criterion of CRITERIA for codes ((image, text) pairs of (Q, b) and (N, b) arrays) of
    queries and database items, with the relevances of feature_relevance: `relevance` as it
    returned, or computed here from the features and `share`."""
    if relevance is None:
        relevance = feature_relevance(query_features, database_features, share)
    k = min(k, len(database_codes[0]))
    return {**{name: relevance_map(query_codes, database_codes, relevant, k) for name, relevant in relevance.items()},
            "balance": bit_balance(*query_codes, *database_codes),
            "instance": instance_retrieval(*query_codes), "contrastive": held_out_contrastive(*query_codes)}
