"""Tables of scores: plain text, as train.py, evaluate.py and the scripts print them, and Markdown for reports."""
from __future__ import annotations


def format_table(rows: list, columns: list) -> str:
    """A plain-text table; `columns` are (header, key, format) triples."""
    cells = [[header for header, _, _ in columns]]
    for row in rows:
        cells.append([("-" if row.get(key) is None else fmt.format(row[key])) for _, key, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: list, rows: list) -> str:
    """A Markdown table of `rows` (lists of cells, in the order of `headers`); a missing cell (None) is blank."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows])


# paired = UCMFH's protocol (codes from the pair); unimodal = image alone / text alone
SCORE_COLUMNS = [("dataset", "dataset", "{}"), ("bits", "bits", "{}"),
                 ("progressive", "scale_schedule_label", "{}"),
                 ("I2T mAP@K", "i2t_map", "{:.4f}"), ("T2I mAP@K", "t2i_map", "{:.4f}"),
                 ("I2T mAP@all", "i2t_map_all", "{:.4f}"), ("T2I mAP@all", "t2i_map_all", "{:.4f}"),
                 ("unimodal I2T mAP@K", "unimodal_i2t_map", "{:.4f}"),
                 ("unimodal T2I mAP@K", "unimodal_t2i_map", "{:.4f}"),
                 ("train s", "train_seconds", "{:.0f}")]


def score_table(results: list) -> str:
    """The table of scores that train.py and the scripts print at the end."""
    k = results[0].get("map_k") if results else None
    columns = [(h.replace("@K", f"@{k}" if k else "@all"), key, fmt) for h, key, fmt in SCORE_COLUMNS]
    rows = [dict(r, scale_schedule_label=(r["scale_schedule"] if r.get("use_progressive_hash") else "off"))
            for r in results]
    return format_table(rows, columns)
