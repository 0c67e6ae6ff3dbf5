"""Train and score UCMFH with progressive hash learning.

    python train.py --dataset demo
    python train.py --dataset flickr --hash_lens 16 32 64 128
    python train.py --dataset demo --use_progressive_hash false
    python train.py --config configs/mirflickr.yaml --task test_hash
    torchrun --nproc_per_node 2 train.py --dataset demo     # data-parallel (docs/scaling.md)

Every config key is a flag (`--key value`); see config.py or docs/training.md for
the list with defaults. One model is trained per code length in --hash_lens.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from config import ConfigError, build_config, resolve_device, to_dict
from data import DataError, load_dataset
from data.splits import without_validation_pairs
from evaluate import score_checkpoint
from ICMR import Solver
from parallel import init_from_env, shutdown
from runio.logs import LOGGER, info, setup_logging
from runio.tables import score_table


def emulated_bf16(cfg) -> bool:
    """True when --train_precision bf16 would run emulated: training on an x86 CPU without avx512_bf16
    or AMX bf16, whose bfloat16 matrix products PyTorch emulates (one zoo epoch took 152 s against 8 s in
    fp32 on a 2-core AMD EPYC without them). Elsewhere (CUDA, other CPUs, an older torch) it cannot tell: False."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if (cfg.train_precision != "bf16" or not cfg.task.startswith("train_") or capabilities is None
            or resolve_device(cfg.device).type != "cpu"):
        return False
    found = capabilities()
    return found.get("architecture") == "x86_64" and not (found.get("avx512_bf16") or found.get("amx_bf16"))


def run(cfg, log=info) -> list:
    """Run cfg.task for every code length (once for the real-valued stages)."""
    if emulated_bf16(cfg):
        LOGGER.warning("warning: --train_precision bf16: this CPU has no bfloat16 instructions (avx512_bf16 or "
                       "AMX), so training runs emulated, many times slower than --train_precision fp32")
    leave_out = cfg.val_unseen and cfg.task.startswith("train_")
    if leave_out and not cfg.val_queries:   # refused before any data are read
        raise ConfigError("--val_unseen true leaves the validation queries' pairs out of training: "
                          "it needs --val_queries N")
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.wiki_text)
    if leave_out:
        data, left_out = without_validation_pairs(data, cfg.val_queries)
        log(f"--val_unseen: {left_out} of the {cfg.val_queries} validation queries were training pairs, "
            "left out of training")
    sizes = (f"{len(data.query)} queries, {len(data.retrieval)} database items" if data.labelled
             else f"no labels (training and indexing only; {len(data.retrieval)} database items)")
    log(f"{data.name}: {len(data.train)} training pairs, {sizes}; image {data.image_dim}-d, "
        f"text {data.text_dim}-d" + (f", {data.num_labels} labels" if data.labelled else ""))
    hash_stage = cfg.task in ("train_hash", "test_hash")
    lengths = cfg.hash_lens if hash_stage else [None]
    results = []
    for bits in lengths:
        run_cfg = dataclasses.replace(cfg)
        if cfg.output_dir and len(lengths) > 1:  # one sub-folder per code length
            run_cfg.output_dir = str(Path(cfg.output_dir) / f"{cfg.dataset}_{bits}bit")
        if bits:
            log(f"=== {cfg.dataset}: {bits}-bit codes, task {cfg.task} ===")
        if cfg.task.startswith("train_"):
            results.append(Solver(run_cfg, bits=bits, data=data, log=log).train())
        else:
            results.append(score_checkpoint(run_cfg, bits, data=data, log=log))
        log(f"results: {Path(results[-1]['output_dir']) / 'results.json'}")
    log("\n" + score_table(results))
    return results


def main(argv=None) -> list:
    """Command-line entry point; returns the list of results (one per code length).
    Bad options or data exit with status 2 and a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return []
    setup_logging()                           # the normal level until the config says otherwise
    try:
        cfg = build_config(argv)
        setup_logging(cfg.quiet, cfg.verbose)   # under torchrun rank 0 alone prints
        LOGGER.debug("config: %s", to_dict(cfg))
        init_from_env(cfg.device)             # torchrun: join its process group
        torch.manual_seed(cfg.seed)
        return run(cfg)
    except (ConfigError, DataError) as err:
        LOGGER.error(f"error: {err}")
        raise SystemExit(2) from None
    finally:
        shutdown()


if __name__ == "__main__":
    main()
