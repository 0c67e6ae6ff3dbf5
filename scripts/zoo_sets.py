"""Describe the development zoo's generated sets (data/zoo.py): sizes, labels, and how hard each is.

    python scripts/zoo_sets.py            # a table
    python scripts/zoo_sets.py --json     # the same as JSON

Columns: label cardinality (labels per item), chance (the share of database items relevant to a
query), and mAP@50 of raw-feature cosine retrieval within the image side, within the text side,
and image-to-text after a least-squares map fitted on the training pairs; the 10-NN overlap is
how often the image side and the text side agree on a training pair's neighbours
(selection/neighbour_source.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.zoo import zoo_spec  # noqa: E402
from runio.tables import markdown_table  # noqa: E402
from study.zoo_sets import describe_sets  # noqa: E402


def _zoo_set(name: str) -> str:
    try:
        zoo_spec(name)                      # its error lists the named sets and the random pattern
    except KeyError as error:
        raise argparse.ArgumentTypeError(error.args[0]) from None
    return name


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--sets", nargs="+", type=_zoo_set,
                        help="these sets only (default: every named one); zoo-random-<k> too")
    args = parser.parse_args(argv)
    rows = describe_sets(args.sets)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(markdown_table(["set", "image / text dims", "labels", "per item", "chance", "image→image",
                              "text→text", "least-squares I2T", "10-NN overlap"],
                             [[r["set"], f"{r['image_dim']} / {r['text_dim']}", r["labels"], f"{r['cardinality']:.2f}",
                               f"{r['chance']:.2f}", f"{r['image_to_image']:.3f}", f"{r['text_to_text']:.3f}",
                               f"{r['least_squares_i2t']:.3f}", f"{r['cross_modal_overlap']:.3f}"] for r in rows]))
    return rows


if __name__ == "__main__":
    main()
