"""The development zoo's sets described (data/zoo.py): sizes, labels, and how hard each is without training."""
from __future__ import annotations

import numpy as np

from data import load_dataset
from data.zoo import ZOO, zoo_spec
from evaluate import retrieval_metrics
from selection.neighbour_source import cross_modal_overlap


def describe_sets(names=None) -> list:
    """Per zoo set: sizes, labels, label cardinality, chance (share of database items relevant to a
    query), and mAP@50 of raw-feature cosine retrieval within each side and across them after a
    least-squares image-to-text map fitted on the training pairs (how hard the set is), and how often
    the two sides agree on a training pair's 10 nearest pairs (selection/neighbour_source.py)."""
    out = []
    for name in names or ZOO:
        data = load_dataset(name)
        train, query, database = data.train, data.query, data.retrieval
        score = lambda q, d: retrieval_metrics(q, d, query.label, database.label, k=50,  # noqa: E731
                                               distance="cosine", want="map_k")["map_k"]
        mapping = np.linalg.lstsq(train.image, train.text, rcond=None)[0]            # (Di, Dt)
        out.append({"set": name, "description": zoo_spec(name).description, "image_dim": data.image_dim,
                    "text_dim": data.text_dim, "labels": data.num_labels, "train": len(train),
                    "query": len(query), "database": len(database),
                    "cardinality": float(database.label.sum(1).mean()),
                    "chance": float(((query.label @ database.label.T) > 0).mean()),
                    "image_to_image": score(query.image, database.image),
                    "text_to_text": score(query.text, database.text),
                    "least_squares_i2t": score(query.image @ mapping, database.text),
                    "cross_modal_overlap": cross_modal_overlap(train.image, train.text)})
    return out
