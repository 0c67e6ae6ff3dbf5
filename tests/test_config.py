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
    (["--task", "7"], "--task: '7' is not one of train_real"),
    (["--epoch", "ten"], "--epoch: expected int"),
    (["--use_progressive_hash", "maybe"], "expected true or false"),
    (["--scale_min", "5", "--scale_max", "2"], "scale_min <= scale_max"),
    (["--device", "tpu"], "--device: 'tpu' is not one of auto, cpu"),
    (["--hash_lens", "0"], "--hash_lens"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_bad_options_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        build_config(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bare_flag_means_true():
    assert parse_flags(["--resume"]) == {"resume": True}
    assert Config().use_progressive_hash is True


def test_readme_documents_every_config_key_with_its_default():
    import dataclasses

    from conftest import ROOT
    readme = (ROOT / "README.md").read_text()
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{f.name}` |")), None)
        assert row is not None, f"README lacks a row for {f.name}"
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert (f"`{shown}`" in row) or (default == "" and "(empty)" in row), row
