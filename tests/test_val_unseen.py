"""--val_unseen: the validation queries' pairs left out of training (data.splits.without_validation_pairs),
checked against a plain loop, and through train.py."""
import pickle

import numpy as np
import pytest

import train
from conftest import run_records, small_dataset
from data.splits import DatasetSplits, FeatureSplit, validation_rows, without_validation_pairs


def _data(rng):
    """A 40-row database; training pairs: 30 of its rows shuffled, one with a held-out row's image but
    another text, and 3 rows of their own."""
    image, text = rng.standard_normal((40, 5)).astype(np.float32), rng.standard_normal((40, 3)).astype(np.float32)
    label = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 40)]
    retrieval = FeatureSplit(image, text, label, "database")
    chosen, _ = validation_rows(retrieval, 10)
    rows = rng.permutation(30)
    train_image = np.concatenate([image[rows], image[chosen[:1]], rng.standard_normal((3, 5)).astype(np.float32)])
    train_text = np.concatenate([text[rows], rng.standard_normal((4, 3)).astype(np.float32)])
    train_label = np.concatenate([label[rows], label[:4]])
    train = FeatureSplit(train_image, train_text, train_label, "train")
    return DatasetSplits("toy", train, FeatureSplit(image[:5], text[:5], label[:5], "query"), retrieval), chosen


def test_exactly_the_pairs_equal_to_a_validation_query_are_left_out():
    data, chosen = _data(np.random.default_rng(1))
    train, held = data.train, data.retrieval
    expected = [i for i in range(len(train)) if not any(                       # the plain loop
        np.array_equal(train.image[i], held.image[c]) and np.array_equal(train.text[i], held.text[c]) for c in chosen)]
    assert 0 < len(train) - len(expected) < len(chosen)     # some held-out rows were trained on, not all
    out, dropped = without_validation_pairs(data, 10, block=7)                    # blocks that cut unevenly
    assert dropped == len(train) - len(expected) and len(out.train) == len(expected)
    for column in ("image", "text", "label"):
        np.testing.assert_array_equal(np.asarray(getattr(out.train, column)[:]), getattr(train, column)[expected])
    assert out.query is data.query and out.retrieval is data.retrieval and "without" in out.train.source
    # none of them trained on: the same data back
    disjoint = DatasetSplits("toy", FeatureSplit(train.image[30:], train.text[30:], train.label[30:], "train"),
                             data.query, data.retrieval)
    assert without_validation_pairs(disjoint, 10) == (disjoint, 0)


def test_train_py_trains_without_them_and_says_how_many(tmp_path, capsys):
    """small's training pairs become its first 200 database rows: the run leaves out those of its 60
    validation queries among them and trains on the rest; without --val_queries it is a one-line error."""
    root = small_dataset(tmp_path)
    database = pickle.loads((root / "small" / "retrieval.pkl").read_bytes())
    (root / "small" / "train.pkl").write_bytes(pickle.dumps({k: v[:200] for k, v in database.items()}, protocol=4))
    chosen, _ = validation_rows(FeatureSplit(database["image"], database["text"], database["label"], "db"), 60)
    trained_on = int((chosen < 200).sum())
    args = ["--dataset", "small", "--data_root", str(root), "--hash_lens", "16", "--epoch", "1", "--batch_size", "64",
            "--fusion_dim", "32", "--fusion_ff_dim", "32", "--hash_hidden", "32", "--modality_dropout", "0", "--balanced_neighbours", "covariance",
            "--unimodal_epochs", "0", "--val_queries", "60", "--output_dir", str(tmp_path / "run"),
            "--checkpoint_dir", str(tmp_path / "ck")]
    [results] = train.main([*args, "--val_unseen", "true"])
    out = capsys.readouterr().out
    assert f"--val_unseen: {trained_on} of the 60 validation queries were training pairs" in out
    assert f"small: {200 - trained_on} training pairs" in out
    assert "val_unseen: true" in (tmp_path / "run" / "config.yaml").read_text()
    assert run_records(tmp_path / "run")[-1]["val_i2t_map"] == pytest.approx(results["val_i2t_map"])
    with pytest.raises(SystemExit):
        train.main([*args[:-6], "--val_unseen", "true"])      # no --val_queries
    assert "--val_unseen true leaves the validation queries' pairs out of training" in capsys.readouterr().err
