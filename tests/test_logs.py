"""What the commands show while they run (runio/logs.py): --quiet, --verbose, bars on a terminal only,
silence on ranks other than 0."""
import io
import logging

import pytest

import train
from config import RUN_KEYS
from conftest import small_dataset
from runio import logs
from test_train import SMALL

import ablation_cli
import build_index_cli
import extract_features_cli


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def normal_logging():
    yield
    logs.setup_logging()          # the next test starts at the normal level


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("small"))


def one_epoch(tmp_path, data_root, *extra):
    return ["--dataset", "small", "--data_root", str(data_root), "--checkpoint_dir", str(tmp_path / "ck"),
            "--output_dir", str(tmp_path / "run"), "--hash_lens", "16", "--epoch", "1", *SMALL, *extra]


def test_quiet_silences_the_epoch_lines_and_bars_stay_out_of_captured_streams(tmp_path, data_root, capsys):
    train.main(one_epoch(tmp_path / "normal", data_root))
    normal = capsys.readouterr()
    assert "  epoch 1: loss " in normal.out and "I2T mAP@50" in normal.out and "config: " not in normal.out
    assert normal.err == ""       # no tqdm bar: stderr is not a terminal here
    train.main(one_epoch(tmp_path / "quiet", data_root, "--quiet"))
    assert capsys.readouterr() == ("", "")


def test_quiet_and_verbose_are_run_settings_and_a_command_inside_another_keeps_its_level():
    assert {"quiet", "verbose"} <= RUN_KEYS          # a resumed run may change them
    logs.setup_logging(quiet=True)
    with logs.logging_kept():                        # as a grid runs train.main into train.log
        logs.setup_logging(verbose=True)
        assert logs.LOGGER.isEnabledFor(logging.DEBUG)
    assert not logs.LOGGER.isEnabledFor(logging.INFO) and logs.LOGGER.isEnabledFor(logging.WARNING)


@pytest.mark.parametrize("level,shown", [([], "normal"), (["--quiet"], "quiet"), (["--verbose"], "verbose")])
def test_errors_show_at_every_level_and_debug_lines_with_verbose(tmp_path, data_root, capsys, level, shown):
    with pytest.raises(SystemExit):
        train.main(one_epoch(tmp_path, data_root, "--dataset", "nosuch", *level))
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and "nosuch" in err and err.count("\n") == 1
    assert ("config: {'dataset': 'nosuch'" in out) is (shown == "verbose")


def test_a_rank_other_than_0_shows_nothing(tmp_path, data_root, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit):
        train.main(one_epoch(tmp_path, data_root, "--dataset", "nosuch", "--verbose"))
    assert capsys.readouterr() == ("", "")


def test_bars_on_a_terminal_only_and_not_under_ci_quiet_or_rank_1(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    shown = {}
    for case, setup in (("terminal", {}), ("quiet", {"quiet": True}), ("rank 1", {"rank": 1}), ("ci", {})):
        if case == "ci":
            monkeypatch.setenv("CI", "true")
        logs.setup_logging(**setup)
        screen = Terminal()
        assert list(logs.progress(range(3), file=screen, desc="steps")) == [0, 1, 2]
        shown[case] = "steps" in screen.getvalue()
    assert shown == {"terminal": True, "quiet": False, "rank 1": False, "ci": False}


@pytest.mark.parametrize("command,argv", [
    (build_index_cli, ["--checkpoint", "nosuch.pth"]),
    (extract_features_cli, ["--manifest", "nosuch.csv"]),
    (ablation_cli, ["--dataset", "nosuch"]),
])
def test_the_scripts_take_quiet_and_verbose(command, argv, capsys):
    for level in ("--quiet", "--verbose"):
        with pytest.raises(SystemExit) as stop:
            command.main([*argv, level])
        out, err = capsys.readouterr()
        assert stop.value.code == 2 and err.startswith("error: ") and "nosuch" in err
        assert ("arguments: {" in out) is (level == "--verbose") and out.count("\n") == (level == "--verbose")
    with pytest.raises(SystemExit):
        command.main([*argv, "--quiet", "--verbose"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_bench_prints_its_numbers_unless_quiet(capsys):
    import bench_unstable_cli

    tiny = ["--queries", "5", "--database", "60", "--bits", "8", "--labels", "3", "--k", "5"]
    bench_unstable_cli.main(tiny)
    assert "mAP@5 " in capsys.readouterr().out
    bench_unstable_cli.main([*tiny, "--quiet"])
    assert capsys.readouterr() == ("", "")
