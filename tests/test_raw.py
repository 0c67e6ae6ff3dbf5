"""Tests for data.raw: manifests, the MIRFlickr / NUS-WIDE / COCO preparers, splits."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import fake_raw
from data.errors import DataError
from data.raw import (LAYOUTS, PREPARERS, SPLIT_SIZES, RawDataset, RawItem, make_splits,
                      prepare_coco, prepare_mirflickr, prepare_nuswide, read_manifest)
from fake_raw import (MANIFEST_LABELS, make_fake_coco, make_fake_mirflickr, make_fake_nuswide,
                      make_manifest, manifest_rows)


def check_against(dataset, tree):
    """``dataset`` holds exactly the items, texts and labels ``tree`` expects."""
    assert [item.id for item in dataset.items] == tree.ids
    assert dataset.label_names == tree.label_names
    for item in dataset.items:
        assert item.texts == tree.texts[item.id]
        assert [dataset.label_names[i] for i in item.labels] == tree.labels[item.id]
        assert item.image.is_absolute() and item.image.is_file()
    assert not set(tree.dropped) & {item.id for item in dataset.items}
    matrix = dataset.label_matrix()
    assert matrix.dtype == np.uint8 and matrix.shape == (len(tree.ids), len(tree.label_names))
    assert matrix.sum() == sum(len(names) for names in tree.labels.values())


def raises_one_line(match, func, *args, **kwargs):
    """Call ``func``; it must raise a one-line DataError matching ``match``."""
    with pytest.raises(DataError, match=match) as info:
        func(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def remove(path):
    shutil.rmtree(path) if path.is_dir() else path.unlink()


# ------------------------------------------------------------------ records
def test_fake_raw_is_importable_and_label_matrix():
    assert fake_raw.make_manifest is make_manifest
    dataset = RawDataset("x", ["a", "b", "c"], [RawItem("0", Path("/i.jpg"), ["t"], [0, 2]),
                                                RawItem("1", Path("/j.jpg"), ["u"], [])], "src")
    assert len(dataset) == 2
    np.testing.assert_array_equal(dataset.label_matrix(), [[1, 0, 1], [0, 0, 0]])
    assert set(PREPARERS) == set(SPLIT_SIZES) == set(LAYOUTS) == {"mirflickr", "nus-wide", "mscoco"}


# ------------------------------------------------------------------ MIRFlickr
def test_mirflickr_fake_tree(tmp_path):
    tree = make_fake_mirflickr(tmp_path)
    dataset = prepare_mirflickr(tmp_path)
    check_against(dataset, tree)
    assert dataset.name == "mirflickr" and len(dataset) == 27 and len(dataset.label_names) == 24
    assert dataset.source == str(tmp_path)
    by_id = {item.id: item for item in dataset.items}
    assert by_id["im1"].texts == ["sky"]            # "rare" dropped, "SKY" counted once
    assert by_id["im6"].texts == ["café sky"]       # file order; "nineteen" (19 images) dropped
    assert by_id["im5"].labels == [dataset.label_names.index(n) for n in ("clouds", "sky")]
    assert by_id["im1"].image == tmp_path / "mirflickr" / "im1.jpg"


def test_mirflickr_min_tag_count(tmp_path):
    make_fake_mirflickr(tmp_path)
    texts = {item.id: item.texts[0] for item in prepare_mirflickr(tmp_path, min_tag_count=19).items}
    assert texts["im6"] == "café sky nineteen" and "im4" not in texts
    every = prepare_mirflickr(tmp_path, min_tag_count=1)
    texts = {item.id: item.texts[0] for item in every.items}
    assert len(every) == 28 and texts["im4"] == "rare"     # only im2 (no label), im3 (no tags) go
    assert texts["im1"] == "sky rare" and texts["im7"] == "sky café bad\ufffdtag nineteen"
    raises_one_line("min_tag_count", prepare_mirflickr, tmp_path, min_tag_count=0)


def test_mirflickr_counts_images_from_tags_files(tmp_path):
    tree = make_fake_mirflickr(tmp_path, num_images=26)
    check_against(prepare_mirflickr(tmp_path), tree)


@pytest.mark.parametrize("missing", [
    "mirflickr", "mirflickr/meta/tags", "mirflickr25k_annotations_v080",
    "mirflickr25k_annotations_v080/animals.txt", "mirflickr25k_annotations_v080/water.txt",
    "mirflickr/meta/tags/tags5.txt"])
def test_mirflickr_first_missing_file(tmp_path, missing):
    make_fake_mirflickr(tmp_path)
    remove(tmp_path / missing)
    if missing.endswith("water.txt"):  # both missing: the first in label order is named
        remove(tmp_path / "mirflickr25k_annotations_v080/tree.txt")
    message = raises_one_line("prepare_mirflickr expects the MIRFlickr-25K release",
                              prepare_mirflickr, tmp_path)
    named = "mirflickr25k_annotations_v080/tree.txt" if missing.endswith("water.txt") else missing
    assert message.startswith(f"{tmp_path / named} not found")


def test_mirflickr_bad_root_and_annotation(tmp_path):
    raises_one_line("nowhere not found: prepare_mirflickr", prepare_mirflickr, tmp_path / "nowhere")
    make_fake_mirflickr(tmp_path)
    for name in (tmp_path / "mirflickr" / "meta" / "tags").iterdir():
        name.unlink()
    raises_one_line("holds no tags<n>.txt files", prepare_mirflickr, tmp_path)
    make_fake_mirflickr(tmp_path)
    (tmp_path / "mirflickr25k_annotations_v080" / "baby.txt").write_text("3\n\n31\n")
    raises_one_line(r"baby.txt line 3: '31' is not an image number 1..30", prepare_mirflickr,
                    tmp_path)


# ------------------------------------------------------------------ NUS-WIDE
def test_nuswide_fake_tree(tmp_path):
    tree = make_fake_nuswide(tmp_path)
    dataset = prepare_nuswide(tmp_path)
    check_against(dataset, tree)
    assert dataset.name == "nus-wide" and len(dataset) == tree.num_items == 36
    # frequency order; the three concepts tied at 6 images are broken by name
    assert dataset.label_names == ["sky", "clouds", "person", "water", "animal", "grass",
                                   "buildings", "window", "lake", "ocean"]
    by_id = {item.id: item for item in dataset.items}
    assert by_id["100185"].texts == ["sky tag5 café"]   # first All_Tags line wins
    assert by_id["100185"].image == tmp_path / "Flickr" / "animal" / "0006_100185.jpg"
    assert by_id["100148"].image == tmp_path / "Flickr" / "airport" / "0005_100148.jpg"
    assert {"100000", "100037", "100074", "100111"} == set(tree.dropped)


def test_nuswide_num_concepts(tmp_path):
    tree = make_fake_nuswide(tmp_path, num_concepts=12)
    dataset = prepare_nuswide(tmp_path, num_concepts=12)
    check_against(dataset, tree)
    assert tree.labels["100000"] == ["plants", "toy"]   # kept only with all 12 concepts
    assert [item.id for item in prepare_nuswide(tmp_path, num_concepts=1).items][:2] \
        == ["100148", "100185"]
    for bad in (0, 13):
        raises_one_line(r"num_concepts must be 1..12", prepare_nuswide, tmp_path, num_concepts=bad)


def test_nuswide_repeated_photo_id_gets_a_suffix(tmp_path):
    make_fake_nuswide(tmp_path)
    list_path = tmp_path / "ImageList" / "Imagelist.txt"
    lines = list_path.read_text().split("\n")
    lines[7] = lines[5]            # image 7 claims image 5's file, hence its photo id
    list_path.write_text("\n".join(lines))
    ids = [item.id for item in prepare_nuswide(tmp_path).items]
    assert "100185" in ids and "100185#8" in ids and "100259" not in ids


@pytest.mark.parametrize("missing", ["ImageList/Imagelist.txt", "Flickr", "Groundtruth/AllLabels",
                                     "NUS_WID_Tags/All_Tags.txt"])
def test_nuswide_first_missing_file(tmp_path, missing):
    make_fake_nuswide(tmp_path)
    remove(tmp_path / missing)
    message = raises_one_line("prepare_nuswide expects the NUS-WIDE release", prepare_nuswide,
                              tmp_path)
    assert message.startswith(f"{tmp_path / missing} not found")


def test_nuswide_bad_label_files(tmp_path):
    make_fake_nuswide(tmp_path)
    labels = tmp_path / "Groundtruth" / "AllLabels"
    (labels / "Labels_toy.txt").write_text("0\n" * 39)
    raises_one_line(r"Labels_toy.txt: 39 lines but ImageList/Imagelist.txt has 40",
                    prepare_nuswide, tmp_path)
    (labels / "Labels_toy.txt").write_text("0\n" * 5 + "yes\n" + "0\n" * 34)
    raises_one_line(r"Labels_toy.txt line 6: 'yes' is not 0 or 1", prepare_nuswide, tmp_path)
    for path in labels.glob("Labels_*.txt"):
        path.unlink()
    raises_one_line("holds no Labels_<concept>.txt files", prepare_nuswide, tmp_path)


# ------------------------------------------------------------------ MS-COCO
def test_coco_fake_tree(tmp_path):
    tree = make_fake_coco(tmp_path)
    dataset = prepare_coco(tmp_path)
    check_against(dataset, tree)
    assert dataset.name == "mscoco" and len(dataset) == 26
    assert dataset.label_names == ["person", "bicycle", "car", "airplane", "fire hydrant",
                                   "toothbrush"]
    by_id = {item.id: item for item in dataset.items}
    assert by_id["1014"].texts == [f"A café {c} of image 1014." for c in (2, 1, 0)]  # id order
    assert by_id["2021"].image == tmp_path / "val2017" / "000000002021.jpg"
    assert by_id["1021"].labels == [1, 3]      # duplicate instance counted once


def test_coco_one_subset(tmp_path):
    tree = make_fake_coco(tmp_path, num_images_per_subset=6, subsets=("val2014",))
    check_against(prepare_coco(tmp_path, subsets="val2014"), tree)


@pytest.mark.parametrize("missing", ["annotations/captions_train2017.json",
                                     "annotations/instances_val2017.json", "val2017"])
def test_coco_first_missing_file(tmp_path, missing):
    make_fake_coco(tmp_path)
    remove(tmp_path / missing)
    message = raises_one_line("prepare_coco expects the MS-COCO release", prepare_coco, tmp_path)
    assert message.startswith(f"{tmp_path / missing} not found")


def test_coco_bad_files(tmp_path):
    make_fake_coco(tmp_path)
    raises_one_line("in both val2017 and val2017", prepare_coco, tmp_path, ("val2017", "val2017"))
    instances = tmp_path / "annotations" / "instances_val2017.json"
    document = json.loads(instances.read_text(encoding="utf-8"))
    document["categories"] = document["categories"][1:]
    instances.write_text(json.dumps(document))
    raises_one_line("instances_val2017.json: its categories differ", prepare_coco, tmp_path)
    raises_one_line("unknown category_id 90", prepare_coco, tmp_path, "val2017")
    del document["annotations"]
    instances.write_text(json.dumps(document))
    raises_one_line("missing list 'annotations'", prepare_coco, tmp_path, "val2017")
    instances.write_text('{"images": [')
    raises_one_line("instances_val2017.json: not valid JSON", prepare_coco, tmp_path, "val2017")


# ------------------------------------------------------------------ manifests
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("labels", ["names", "indices"])
def test_manifest(tmp_path, fmt, labels):
    path = make_manifest(tmp_path, fmt=fmt, labels=labels)
    dataset = read_manifest(path)
    assert dataset.name == "manifest" and dataset.source == str(path)
    assert dataset.label_names == (list(MANIFEST_LABELS) if labels == "names"
                                   else ["0", "1", "2", "3"])
    rows = manifest_rows()
    assert len(dataset) == len(rows)
    for item, row in zip(dataset.items, rows):
        assert item.id == row["id"] and item.image == tmp_path / row["image"]
        assert item.texts == [row["text"]] and item.labels == row["labels"]
        assert item.image.is_file()
    assert dataset.items[4].labels == [] and dataset.label_matrix()[4].sum() == 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_manifest_ids_roots_and_given_names(tmp_path, fmt):
    path = make_manifest(tmp_path / "m", num_rows=6, fmt=fmt, with_ids=False)
    dataset = read_manifest(path, image_root=tmp_path / "elsewhere")
    assert [item.id for item in dataset.items] == ["0", "1", "2", "3", "4", "5"]
    assert dataset.items[2].image == tmp_path / "elsewhere" / "images" / "img002.jpg"
    given = ["tree", "dog", "cat", "car", "bus"]
    dataset = read_manifest(path, label_names=given)
    assert dataset.label_names == given
    assert [[given[i] for i in item.labels] for item in dataset.items][:2] \
        == [["cat", "car"], ["dog", "cat"]]
    raises_one_line(r"line \d+: unknown label 'car'", read_manifest, path, label_names=["cat"])
    path = make_manifest(tmp_path / "i", num_rows=6, fmt=fmt, labels="indices")
    assert read_manifest(path, label_names=given).label_names == given
    raises_one_line(r"line \d: label index 1 is out of range \(0..0\)", read_manifest, path,
                    label_names=["only"])


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest_csv_details(tmp_path):
    path = write(tmp_path / "m.csv", "Image , TEXT,labels\n\n/abs/a.jpg, hi ,3;1| 3\n"
                                     "b.jpg,two,\n")
    dataset = read_manifest(path)
    assert dataset.items[0].image == Path("/abs/a.jpg") and dataset.items[0].texts == ["hi"]
    assert dataset.items[0].labels == [1, 3] and dataset.label_names == ["0", "1", "2", "3"]
    assert dataset.items[1].id == "1" and dataset.items[1].labels == []


@pytest.mark.parametrize("text, match", [
    ("image,text,labels\na.jpg,x,\nb.jpg,,\n", "m.csv line 3: empty text"),
    ("image,text,labels\na.jpg,x,\n\n  , x, \n", "m.csv line 4: empty image"),
    ("image,caption,labels\n", r"m.csv line 1: the header has no 'text' column \(found: image, "
                               "caption, labels\\)"),
    ("image,text\na.jpg,x\n", "the header has no 'labels' column"),
    ("image,text,labels\na.jpg,x\n", "m.csv line 2: 2 fields but the header has 3"),
    ("id,image,text,labels\n7,a.jpg,x,\n8,b.jpg,y,\n7,c.jpg,z,\n",
     "m.csv: id '7' is on line 2 and line 4"),
    ("id,image,text,labels\n ,a.jpg,x,\n", "m.csv line 2: empty id"),
    ("", r"m.csv: empty manifest \(no header row\)"),
    ("image,text,labels\n\n", "m.csv: the manifest lists no images"),
    ("image,text,labels\na.jpg,x,cat|-1\n", "m.csv line 2: unknown label '-1'"),
])
def test_manifest_csv_errors(tmp_path, text, match):
    label_names = ["cat"] if "-1" in text else None
    raises_one_line(match, read_manifest, write(tmp_path / "m.csv", text), label_names=label_names)


def line(**record):
    return json.dumps(record)


@pytest.mark.parametrize("lines, match", [
    ([line(image="a.jpg", text="x", labels=[]), "{oops"], r"m.jsonl line 2: not valid JSON"),
    (["[1, 2]"], "m.jsonl line 1: expected a JSON object"),
    ([line(image="a.jpg", text="x")], "m.jsonl line 1: missing key 'labels'"),
    (["", line(image="a.jpg", text=["  ", ""], labels=[])], "m.jsonl line 2: empty text"),
    ([line(image="", text="x", labels=[])], "m.jsonl line 1: empty image"),
    ([line(image="a.jpg", text=3, labels=[])], "m.jsonl line 1: text must be a string"),
    ([line(image="a.jpg", text="x", labels={"a": 1})], "m.jsonl line 1: labels must be a list"),
    ([line(image="a.jpg", text="x", labels=[1.5])], "m.jsonl line 1: a label must be"),
    ([line(id=1, image="a.jpg", text="x", labels=[]), "",
      line(id="1", image="b.jpg", text="y", labels=[])], "m.jsonl: id '1' is on line 1 and line 3"),
])
def test_manifest_jsonl_errors(tmp_path, lines, match):
    raises_one_line(match, read_manifest, write(tmp_path / "m.jsonl", "\n".join(lines) + "\n"))


def test_manifest_jsonl_texts_and_mixed_labels(tmp_path):
    path = write(tmp_path / "m.ndjson", line(image="a.jpg", text=["one", " two "], labels=[2, "b"])
                 + "\n" + line(image="b.jpg", text="x", labels="a; b") + "\n")
    dataset = read_manifest(path)
    assert dataset.items[0].texts == ["one", "two"]
    assert dataset.label_names == ["2", "a", "b"]          # not all integers: all names
    assert dataset.items[0].labels == [0, 2] and dataset.items[1].labels == [1, 2]


def test_manifest_missing_or_unknown(tmp_path):
    raises_one_line("manifest .*nope.csv not found", read_manifest, tmp_path / "nope.csv")
    raises_one_line("unknown manifest format '.txt'", read_manifest, write(tmp_path / "m.txt", "x"))


# ------------------------------------------------------------------ splits
def test_make_splits():
    splits = make_splits(100, 10, 30, seed=3)
    query, retrieval, train = splits["query"], splits["retrieval"], splits["train"]
    assert (len(query), len(retrieval), len(train)) == (10, 90, 30)
    for part in splits.values():
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    assert not set(query) & set(retrieval)
    assert sorted(set(query) | set(retrieval)) == list(range(100))
    assert set(train) <= set(retrieval)
    again = make_splits(100, 10, 30, seed=3)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = make_splits(100, 10, 30, seed=4)
    assert not np.array_equal(splits["query"], other["query"])
    full = make_splits(30, 10, 20)
    assert np.array_equal(full["train"], full["retrieval"])


def test_make_splits_usual_sizes():
    sizes = SPLIT_SIZES["mirflickr"]
    splits = make_splits(20015, sizes["query"], sizes["train"])
    assert [len(splits[k]) for k in ("query", "retrieval", "train")] == [2000, 18015, 5000]


@pytest.mark.parametrize("args, match", [
    ((10, 10, 1), "cannot take 10 queries from 10 items"),
    ((10, 4, 7), "cannot draw 7 training items from the 6 retrieval items"),
    ((10, 0, 5), "split sizes must be positive"),
    ((10, -1, 5), "num_query must be a non-negative integer"),
    ((10.0, 1, 5), "num_items must be"),
])
def test_make_splits_errors(args, match):
    raises_one_line(match, make_splits, *args)
