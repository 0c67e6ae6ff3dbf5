import pytest

from config import Config, ConfigError, build_config, parse_flags


def test_defaults_and_flag_types():
    cfg = build_config(["--dataset", "demo", "--hash_lens", "16", "32", "--use_progressive_hash", "false",
                        "--scale_max=12", "--epoch", "3"])
    assert cfg.hash_lens == [16, 32] and cfg.use_progressive_hash is False
    assert cfg.scale_max == 12.0 and cfg.epoch == 3 and cfg.task == "train_hash"


@pytest.mark.parametrize("number,name", [("0", "train_real"), ("1", "train_hash"),
                                         ("2", "test_real"), ("3", "test_hash")])
def test_ucmfh_task_numbers(number, name):
    assert build_config(["--task", number]).task == name


def test_aliases_and_dataset_yaml(tmp_path):
    cfg = build_config(["--dataset", "flickr"])
    assert cfg.dataset == "mirflickr" and cfg.epoch == 100 and cfg.hash_lens == [16, 32, 64, 128]
    assert build_config(["--dataset", "coco"]).lr_milestones == [200]
    assert build_config(["--dataset", "flickr", "--epoch", "7"]).epoch == 7  # flags beat the yaml


def test_config_file_and_its_errors(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("dataset: nus\nepoch: 4\nscale_schedule: exponential\n")
    cfg = build_config(["--config", str(good)])
    assert (cfg.dataset, cfg.epoch, cfg.scale_schedule) == ("nus-wide", 4, "exponential")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown option --epochs \(did you mean --epoch\?\)"):
        build_config(["--config", str(bad)])
    with pytest.raises(ConfigError, match="config file not found"):
        build_config(["--config", str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize("argv,message", [
    (["--scale_shedule", "linear"], "unknown option --scale_shedule"),
    (["--scale_schedule", "cosine"], "is not one of linear, exponential, step, hashnet, constant"),
    (["--balanced_neighbours", "labels"], "--balanced_neighbours: 'labels' is not one of both, fused, features"),
    (["--balanced_feature_weight", "1.5"], "--balanced_feature_weight: must be in [0, 1], got 1.5"),
    (["--task", "7"], "--task: '7' is not one of train_real"),
    (["--epoch", "ten"], "--epoch: expected int"),
    (["--use_progressive_hash", "maybe"], "expected true or false"),
    (["--scale_min", "5", "--scale_max", "2"], "scale_min <= scale_max"),
    (["--device", "tpu"], "--device: 'tpu' is not one of auto, cpu"),
    (["--hash_lens", "0"], "--hash_lens"),
    (["stray"], "unexpected argument 'stray'"),
    (["--temperature", "nan"], "--temperature: expected a finite number, got 'nan'"),
    (["--scale_max", "inf"], "--scale_max: expected a finite number, got 'inf'"),
    (["--lr_hash", "0"], "--lr_hash: must be positive"),
    (["--lr_fusion", "-1e-4"], "--lr_fusion: must be positive"),
    (["--temperature", "0"], "--temperature: must be positive"),
    (["--unimodal_balanced", "-1"], "--unimodal_balanced: must be 0 or more, got -1.0"),
    (["--device", "cuda:abc"], "--device: 'cuda:abc' is not one of auto, cpu, cuda, cuda:N"),
    (["--hash_lens", "16", "16"], "--hash_lens: [16, 16] repeats a length"),
    (["--adam_betas", "0.5", "1.5"], "--adam_betas: expected two numbers in [0, 1)"),
    (["--epoch=", "--batch_size", "8"], "--epoch: expected int, got ''"),
    (["--dataset", "/data/laion_part"], "--dataset: a folder name under --data_root, not a path: '/data/laion_part' "
                                        "(use --data_root /data --dataset laion_part)"),
    (["--dataset", ".."], "--dataset: a folder name under --data_root, not a path: '..'"),
])
def test_bad_options_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        build_config(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bare_flag_means_true_and_an_equals_sign_alone_an_empty_value():
    assert parse_flags(["--resume"]) == {"resume": True}
    assert Config().use_progressive_hash is True
    assert build_config(["--output_dir="]).output_dir == ""                  # the default folder
    assert build_config(["--output_dir=runs/x"]).output_dir == "runs/x"
    assert build_config(["--device", "cuda:1"]).device == "cuda:1"


@pytest.mark.parametrize("line,message", [("epoch: true", "--epoch: expected int, got True"),
                                          ("lr_hash: .nan", "--lr_hash: expected a finite number"),
                                          ("scale_max: false", "--scale_max: expected float, got False")])
def test_yaml_booleans_and_non_finite_numbers_are_refused(tmp_path, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        build_config(["--config", str(path)])
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_run_settings_come_from_the_run_the_rest_from_the_checkpoint():
    from config import CHECKPOINT_KEYS, RUN_KEYS, to_dict
    from runio.checkpoint import merge_checkpoint_config
    assert {"map_k", "data_root", "output_dir", "eval_batch_size", "device", "task"} <= RUN_KEYS
    assert {"scale_max", "epoch", "fusion_dim", "modality_dropout", "seed"} <= CHECKPOINT_KEYS
    saved = to_dict(Config(scale_max=20.0, map_k=50, epoch=7))
    merged = merge_checkpoint_config(Config(task="test_hash", map_k=0, scale_max=3.0), saved, "ck.pth")
    assert (merged.map_k, merged.scale_max, merged.epoch, merged.task) == (0, 20.0, 7, "test_hash")
    with pytest.raises(ConfigError, match="--resume: ck.pth was trained with other values of --epoch, --scale_max"):
        merge_checkpoint_config(Config(resume=True, scale_max=3.0), saved, "ck.pth")
    # a checkpoint of before balanced_neighbours (5 December 2026) found its neighbours by the fused embeddings
    del saved["balanced_neighbours"]
    assert merge_checkpoint_config(Config(task="test_hash"), saved, "ck.pth").balanced_neighbours == "fused"
    with pytest.raises(ConfigError, match="other values of --balanced_neighbours, --epoch, --scale_max"):
        merge_checkpoint_config(Config(resume=True), saved, "ck.pth")
    assert merge_checkpoint_config(Config(resume=True, balanced_neighbours="fused", epoch=7, scale_max=20.0),
                                   saved, "ck.pth").balanced_neighbours == "fused"
    del saved["balanced_feature_weight"]     # and before balanced_feature_weight (0.75, then 0.875): the plain mean
    assert merge_checkpoint_config(Config(task="test_hash"), saved, "ck.pth").balanced_feature_weight == 0.5
    with pytest.raises(ConfigError, match="other values of --balanced_feature_weight"):
        merge_checkpoint_config(Config(resume=True, balanced_neighbours="fused", epoch=7, scale_max=20.0), saved,
                                "ck.pth")
    del saved["infonce_mask_neighbours"]     # and before infonce_mask_neighbours (stop 39): every negative kept
    assert merge_checkpoint_config(Config(task="test_hash"), saved, "ck.pth").infonce_mask_neighbours is False


def test_docs_document_every_config_key_with_its_default():
    import dataclasses

    from conftest import ROOT
    readme = (ROOT / "docs" / "training.md").read_text()
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{f.name}` |")), None)
        assert row is not None, f"docs/training.md lacks a row for {f.name}"
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert (f"`{shown}`" in row) or (default == "" and "(empty)" in row), row


def test_docs_prose_gives_the_branch_and_demo_lengths_of_the_defaults():
    """The sentences that state the unimodal branch's default length (and the quick start's epochs and
    neighbour fork) follow Config and configs/demo.yaml: stop 51 found three stale ones by hand."""
    import re

    import yaml
    from conftest import ROOT
    branch, fork = Config().unimodal_epochs, Config().neighbour_fork_epochs
    demo_epochs = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["epoch"]
    readme = (ROOT / "README.md").read_text()
    zoo = (ROOT / "docs" / "zoo.md").read_text()
    ladder = (ROOT / "docs" / "ablation-ladder.md").read_text()
    stated = {
        "README quick start": (readme, r"trains 64-bit codes for (\d+) epochs, the first (\d+) of them twice, .{0,200}?"
                                       r"then its unimodal branch for (\d+) more"),
        "README results note": (readme, r"the unimodal branch trains (\d+) epochs, not"),
        "README zoo summary": (readme, r"The unimodal branch trains (\d+) epochs since"),
        "zoo.md summary": (zoo, r"then trains the unimodal branch for (\d+) epochs"),
        "ablation-ladder.md": (ladder, r"its branch trains (\d+) epochs \(`unimodal_epochs`"),
    }
    for place, (text, pattern) in stated.items():
        found = re.search(pattern, " ".join(text.split()))
        assert found is not None, f"{place}: no sentence matches {pattern!r}"
        numbers = [int(n) for n in found.groups()]
        expected = [demo_epochs, fork, branch] if len(numbers) == 3 else [branch]
        assert numbers == expected, f"{place} says {numbers}, the defaults are {expected}"


def test_docs_give_each_configs_epoch_count():
    """training.md's `epoch` row names each dataset config's epoch count: wiki's moved from 30 to 10
    at stop 54, and the docs must move with it."""
    import re

    import yaml
    from conftest import ROOT
    row = next(line for line in (ROOT / "docs" / "training.md").read_text().splitlines() if line.startswith("| `epoch` |"))
    stated = dict(re.findall(r"([a-z-]+) (\d+)", row.split("configs:")[1]))
    configs = {path.stem: yaml.safe_load(path.read_text()) for path in (ROOT / "configs").glob("*.yaml")}
    named = {name: config["epoch"] for name, config in configs.items() if "epoch" in config}
    assert {name: int(n) for name, n in stated.items()} == named, row
