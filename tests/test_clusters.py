"""selection/clusters.py (the `cluster` criterion's relevance): k-means, the silhouette against a
plain loop, the grain chosen by the data, and why the criterion exists (few labels)."""
import numpy as np
import pytest

from selection.clusters import kmeans, same_cluster, silhouette
from selection.criteria import label_free_criteria


def _blobs(rng, groups, per_group, dim, spread):
    centres = rng.standard_normal((groups, dim)) * 4
    truth = np.repeat(np.arange(groups), per_group)
    return centres[truth] + spread * rng.standard_normal((len(truth), dim)), truth


def test_silhouette_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    points, assignment = rng.standard_normal((40, 3)), rng.integers(0, 4, 40)
    assignment[7] = 9                                   # a cluster of one point scores 0
    scores = []
    for i, point in enumerate(points):
        mine = [j for j in range(40) if assignment[j] == assignment[i] and j != i]
        if not mine:
            scores.append(0.0)
            continue
        a = np.mean([np.linalg.norm(point - points[j]) for j in mine])
        b = min(np.mean([np.linalg.norm(point - points[j]) for j in range(40) if assignment[j] == other])
                for other in set(assignment) - {assignment[i]})
        scores.append((b - a) / max(a, b))
    assert silhouette(points, assignment) == pytest.approx(np.mean(scores))


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(1)
    points, truth = _blobs(rng, 5, 30, 6, 0.3)
    _, assignment = kmeans(points, 5, np.random.default_rng(0))
    # the same partition, whatever the clusters' numbering
    assert len({(t, a) for t, a in zip(truth, assignment)}) == 5 == len(set(assignment))


@pytest.mark.parametrize("groups", [4, 16])
def test_the_data_sets_the_number_of_clusters_and_queries_join_theirs(groups):
    rng = np.random.default_rng(groups)
    points, truth = _blobs(rng, groups, 40, 8, 0.3)
    queries = points[::40] + 0.05 * rng.standard_normal((groups, 8))    # one query beside each blob
    relevant, k = same_cluster(queries, points)
    assert k == groups
    assert np.array_equal(relevant, np.arange(groups)[:, None] == truth[None, :])


def test_with_few_labels_cluster_prefers_codes_of_the_groups_and_shared_codes_of_the_detail():
    """Four labels, and within each label a continuous detail that both sides share. Codes of the
    labels alone are what labelled retrieval rewards; `shared` (each query's nearest 5%) prefers
    codes of the detail, `cluster` (the groups the data falls into) prefers the labels' codes."""
    rng = np.random.default_rng(5)
    n, groups = 600, 4
    label = rng.integers(0, groups, n)
    prototypes = rng.standard_normal((groups, 16)) * 3
    detail = rng.standard_normal((n, 16))
    image = prototypes[label] + detail + 0.3 * rng.standard_normal((n, 16))
    text = prototypes[label] + detail + 0.3 * rng.standard_normal((n, 16))
    group_codes = np.sign(prototypes[label] @ rng.standard_normal((16, 32)) + 0.1 * rng.standard_normal((n, 32)))
    detail_codes = np.sign((0.5 * prototypes[label] + detail) @ rng.standard_normal((16, 32)))
    features = ((image[:150], text[:150]), (image[150:], text[150:]))
    found = [label_free_criteria((c[:150], c[:150]), (c[150:], c[150:]), *features) for c in (group_codes, detail_codes)]
    assert found[0]["cluster"] > found[1]["cluster"] + 0.05
    assert found[0]["shared"] < found[1]["shared"]
