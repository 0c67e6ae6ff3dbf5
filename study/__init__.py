"""The study: grids of trainings, their summaries, baselines and figures.

- `ablation`: the grid behind scripts/ablation.py (datasets x bits x methods x seeds), resumable;
- `workers`: its runs, each in a fresh spawned process that ends with the grid (imports nothing heavy);
- `summary`: mean +- std over seeds and paired tests against plain tanh (summary.csv / .md);
- `baselines`: CCA sign codes, scored by the same metric code;
- `run_files`: readers of a run folder's files (metrics.jsonl, histograms.json, curves.json, ...);
- `plots`: one function per figure (PNG), each built as a matplotlib figure first;
- `figures`: every figure a grid folder allows (scripts/plot.py all).
"""
