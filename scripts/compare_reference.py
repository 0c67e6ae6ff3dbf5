"""Run the reference UCMFH code and this project's UCMFH-compatible mode side by side on the same
data and seeds, and say whether their mAP@50 scores match within seed noise.

    git --git-dir=PATH/TO/UCMFH.git archive HEAD | tar -x -C /tmp/ucmfh    # or: git clone ... /tmp/ucmfh
    python scripts/compare_reference.py --reference /tmp/ucmfh --dataset demo --bits 16 --seeds 0 1 2

The reference (github.com/XinyuXia97/UCMFH) runs unmodified from the checkout given by
--reference, one subprocess per run, on the CPU, with its hard-coded data path (any folder) pointed at
<data_root>/<dataset>/ (train.pkl, query.pkl, retrieval.pkl of 512-d features); the compatible
mode is `train.py --preset ucmfh`. Runs go to <out>/<reference|compatible>/<bits>bit/seed<k>/
(results.json, and reference.log or train.log); a run whose results.json exists is skipped, so an
interrupted comparison resumes. Then a table per code length (each side's mean ± std over seeds,
the difference, Welch's t-test p-value for the same mean, seconds per epoch) is printed and
written to <out>/summary.md and <out>/summary.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import ConfigError, build_config  # noqa: E402
from data import DataError, canonical_dataset_name  # noqa: E402
from study.reference import CompareError, RunFailed, compare  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--reference", required=True, metavar="DIR", help="a checkout of XinyuXia97/UCMFH")
    p.add_argument("--dataset", default="demo", help="this project's dataset name (default demo)")
    p.add_argument("--data_root", default="data")
    p.add_argument("--bits", nargs="+", type=int, default=[16])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epoch", type=int, help="epochs of every run (default: the dataset config's)")
    p.add_argument("--out", help="output folder (default runs/compare_reference_<dataset>)")
    p.add_argument("--threads", type=int, help="torch threads of each run (default: torch's)")
    args = p.parse_args(argv)
    args.dataset = canonical_dataset_name(args.dataset)
    for name in ("bits", "seeds"):
        values = getattr(args, name)
        if len(set(values)) != len(values) or min(values) < (1 if name == "bits" else 0):
            p.error(f"--{name}: expected distinct {'positive' if name == 'bits' else 'non-negative'} "
                    f"integers, got {' '.join(map(str, values))}")
    for name in ("epoch", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name}: must be at least 1")
    args.out = Path(args.out or f"runs/compare_reference_{args.dataset}")
    return args


def main(argv=None) -> list:
    """Command-line entry point; returns the summary rows (one per code length). A bad option,
    checkout or dataset exits with status 2, a failed run with status 1, each with a one-line message."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        epoch = args.epoch or build_config(["--dataset", args.dataset]).epoch
        return compare(args.reference, args.dataset, args.data_root, args.bits, args.seeds, epoch, args.out,
                       args.threads)
    except (ConfigError, DataError, CompareError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1 if isinstance(err, RunFailed) else 2) from None


if __name__ == "__main__":
    main()
