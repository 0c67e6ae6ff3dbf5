"""The search API's relevance (webui/relevance.py: which results share a label with an id query's item,
and P@k) and its random item (/api/random), over small indexes made directly: no model, no images."""
import random

import numpy as np
import pytest

pytest.importorskip("fastapi")
from hashindex.index_file import CodeIndex  # noqa: E402
from hashindex.query import SearchEngine  # noqa: E402
from test_serve import client_of  # noqa: E402
from webui.app import create_app  # noqa: E402


def labelled(size=40, labels=None, seed=0):
    """An index of `size` items with random 16-bit codes and random labels of 3 classes (or `labels`)."""
    rng = np.random.default_rng(seed)
    codes = {m: rng.integers(0, 256, (size, 2), dtype=np.uint8) for m in ("image", "text")}
    if labels is None:
        labels = (rng.random((size, 3)) < 0.4).astype(np.uint8)
    return CodeIndex(bits=16, ids=[f"x{i}" for i in range(size)], codes=codes, labels=labels,
                     label_names=[f"class {c}" for c in range(labels.shape[1])])


def app_over(index, **options):
    return client_of(create_app(SearchEngine(index, "labelled.npz"), **options))


@pytest.fixture(scope="module")
def client():
    return app_over(labelled())


@pytest.mark.parametrize("item_id, modality, target", [("x7", "text", "image"), ("x0", "image", "text"),
                                                       ("x9", "image", "image")])
def test_an_id_querys_results_are_marked_where_they_share_a_label(client, item_id, modality, target):
    found = client.get("/api/search", params={"id": item_id, "modality": modality, "target": target,
                                              "k": 15}).json()
    asked = set(found["query"]["labels"])
    shares = [bool(asked & set(result["labels"])) for result in found["results"]]
    assert [result["relevant"] for result in found["results"]] == shares and 0 < sum(shares) < 15
    assert found["precision_at_k"] == sum(shares) / 15
    assert found["relevance"] == f"shares a label with item {item_id}"


def test_an_item_without_labels_has_no_relevant_results():
    client = app_over(labelled(2, labels=np.array([[0, 0], [1, 1]], np.uint8)))
    found = client.get("/api/search", params={"id": "x0"}).json()
    assert [result["relevant"] for result in found["results"]] == [False, False] and found["precision_at_k"] == 0


def test_random_gives_ids_of_the_index_drawn_from_all_of_it(client):
    engine = client.app.state.engine
    drawn = [client_of(create_app(engine, draw=random.Random(seed))).get("/api/random").json()["id"]
             for seed in (0, 0, 1, 2, 3, 4)]
    assert set(drawn) <= {f"x{i}" for i in range(40)} and drawn[0] == drawn[1] and len(set(drawn)) > 2
    assert client.get("/api/search", params={"id": client.get("/api/random").json()["id"]}).status_code == 200
    empty = CodeIndex(bits=8, ids=np.array([], "U1"), codes={"image": np.zeros((0, 1), np.uint8)})
    answer = app_over(empty).get("/api/random")
    assert answer.status_code == 404 and answer.json()["detail"] == "the index is empty: there is no item to draw"
