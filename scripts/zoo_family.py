"""Judge settings from several zoo grids together: copy them into one folder under new labels,
then write its summary and zoo report (regret, leave-one-set-out, criteria, per-run pick).

    python scripts/zoo_family.py --out runs/family \\
        --take default runs/balanced_weight balanced_weight=0.5 \\
        --take balanced_weight=1 runs/balanced_weight default \\
        --take lr_hash=0.002 runs/lr_hash lr_hash=0.002

Each --take LABEL GRID SETTING copies the runs of SETTING (a folder under GRID/<set>/<bits>bit/)
as LABEL. One take should be labelled `default`: the report judges it. The grids are only read;
--out must be new or empty (docs/zoo.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runio.logs import LOGGER, add_log_flags, info, setup_logging  # noqa: E402
from study.family import FamilyError, Take, assemble_family  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--out", required=True, help="the family's folder (new or empty)")
    p.add_argument("--take", nargs=3, action="append", required=True, metavar=("LABEL", "GRID", "SETTING"),
                   help="the runs of SETTING in GRID, labelled LABEL in the family (repeatable)")
    p.add_argument("--data_root", default="data", help="where demo's data lives (the report's criteria read it)")
    p.add_argument("--wiki_root", default="../shared/data", help="the folder holding wiki/")
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    args.take = [Take(label, Path(grid), setting) for label, grid, setting in args.take]
    if "default" not in [t.label for t in args.take]:
        p.error("no --take is labelled default; the report judges the setting labelled default")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        counts = assemble_family(args.out, args.take)
    except FamilyError as err:
        LOGGER.error(f"error: {err}")
        raise SystemExit(2) from None
    for label, count in counts.items():
        info(f"{label}: {count} runs")
    from study.summary import write_summary
    from study.zoo import write_zoo_report

    write_summary(args.out)
    roots = {"wiki": args.wiki_root, "demo": args.data_root}
    report = write_zoo_report(args.out, roots)
    info(f"zoo report: {Path(args.out) / 'zoo.md'} and {Path(args.out) / 'zoo.json'}")
    return report


if __name__ == "__main__":
    main()
