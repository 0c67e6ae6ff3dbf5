import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config
from schedules import ScaleSchedule, epoch_scale, hashnet_scale, normalized_hashnet, training_progress


def schedule(iters_per_epoch=40, **kw):
    return ScaleSchedule(Config(**kw), iters_per_epoch)


def test_linear_values_pinned_by_the_design_note():
    s = schedule(epoch=101)
    assert s.at(0) == pytest.approx(1.0)
    assert s.at(50) == pytest.approx(5.5)
    assert s.at(100) == pytest.approx(10.0)
    assert s.eval_scale == 10.0


def test_progress_runs_from_zero_to_one_and_survives_one_epoch():
    assert training_progress(0, 10) == 0.0
    assert training_progress(9, 10) == 1.0
    assert training_progress(0, 1) == 0.0  # no division by zero


def test_exponential_and_step_and_constant():
    assert epoch_scale("exponential", 0.0, 1.0, 10.0) == pytest.approx(1.0)
    assert epoch_scale("exponential", 0.5, 1.0, 10.0) == pytest.approx(math.sqrt(10.0))
    assert epoch_scale("exponential", 1.0, 1.0, 10.0) == pytest.approx(10.0)
    assert epoch_scale("step", 0.25, 1.0, 10.0) == 1.0
    assert epoch_scale("step", 0.5, 1.0, 10.0) == 1.0
    assert epoch_scale("step", 0.75, 1.0, 10.0) == pytest.approx(5.5)
    assert epoch_scale("step", 1.0, 1.0, 10.0) == pytest.approx(10.0)
    assert schedule(scale_schedule="constant").at(0) == 10.0


def test_hashnet_is_updated_every_step_size_iterations():
    assert hashnet_scale(0, 1.0, 0.005, 0.5, 200) == 1.0
    assert hashnet_scale(199, 1.0, 0.005, 0.5, 200) == 1.0
    assert hashnet_scale(200, 1.0, 0.005, 0.5, 200) == pytest.approx(math.sqrt(2.0))
    assert hashnet_scale(10_000, 1.0, 0.005, 0.5, 200) == pytest.approx(math.sqrt(51.0))  # about 7.1
    s = schedule(scale_schedule="hashnet", hashnet_normalize=False)
    assert s.per_iteration and s.at(epoch=3, iteration=400) == pytest.approx(math.sqrt(3.0))


def test_raw_hashnet_is_capped_at_scale_max():
    s = schedule(scale_schedule="hashnet", hashnet_normalize=False, scale_max=2.0)
    assert s.at(0, 200) == pytest.approx(math.sqrt(2.0)) and s.at(0, 10_000) == 2.0


def test_normalized_hashnet_fits_the_run_and_reaches_scale_max():
    # HashNet's 200-of-10,000 step is scaled to the run: 20 epochs x 12 steps = 240 -> every 5 steps
    gamma, step = normalized_hashnet(240, 1.0, 10.0, 0.5, 200)
    assert step == 5 and gamma == pytest.approx((10.0 ** 2 - 1) / 235)
    s = schedule(scale_schedule="hashnet", epoch=20, iters_per_epoch=12)
    values = [s.at(it // 12, it) for it in range(240)]
    assert values[:5] == [1.0] * 5 and values[5] == pytest.approx(math.sqrt(1 + 5 * gamma))
    assert values[235] == pytest.approx(10.0) and values[-1] == pytest.approx(10.0)
    assert all(a <= b for a, b in zip(values, values[1:]))              # never falls
    assert len(set(values)) == 48                                        # one value per update
    # a run of HashNet's own length keeps its step; gamma is fitted to scale_max
    assert normalized_hashnet(10_000, 1.0, 7.0, 0.5, 200) == (pytest.approx(48 / 9800), 200)
    assert normalized_hashnet(1, 1.0, 10.0, 0.5, 200) == (0.0, 1)       # a one-step run has no update


def test_the_test_time_scale_is_the_last_training_steps():
    # raw hashnet: 20 epochs x 12 steps, last step 239 -> updated at 200 -> sqrt(2), not scale_max
    raw = schedule(scale_schedule="hashnet", epoch=20, iters_per_epoch=12, hashnet_normalize=False)
    assert raw.eval_scale == pytest.approx(math.sqrt(2))
    for name in ("linear", "exponential", "step", "constant", "hashnet"):
        assert schedule(scale_schedule=name, epoch=7, iters_per_epoch=3).eval_scale == pytest.approx(10.0)


def test_scale_max_per_code_length():
    s = ScaleSchedule(Config(scale_max={16: 8.0, 64: 15.0}, hash_lens=[16, 64], epoch=5), 3, bits=64)
    assert s.scale_max == 15.0 and s.at(4) == 15.0 and s.eval_scale == 15.0
    assert ScaleSchedule(Config(scale_max={16: 8.0}, epoch=5), 3, bits=16).eval_scale == 8.0
    assert ScaleSchedule(Config(scale_max={16: 8.0}), 3, bits=32).scale_max == 10.0   # unnamed: the default


def test_off_means_plain_tanh_in_training_and_test():
    s = schedule(use_progressive_hash=False, epoch=10)
    assert [s.at(e) for e in range(10)] == [1.0] * 10
    assert s.eval_scale == 1.0 and not s.per_iteration


DESIGN_NOTE_LINE = "✅ Using Progressive Hash Learning - Scale from 1.0 to 10.0"   # the note's log line, verbatim
UNMARKED_LINE = DESIGN_NOTE_LINE.removeprefix("✅ ")


@pytest.mark.parametrize("encoding", ["utf-8", "ascii", "latin-1"])
def test_the_design_notes_log_line_verbatim_or_without_the_mark_where_stdout_cannot_encode_it(
        monkeypatch, encoding):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding)        # errors="strict", as a real stdout
    monkeypatch.setattr(sys, "stdout", stream)
    print(schedule(epoch=101).describe())
    print(schedule(epoch=5, scale_min=2.0, scale_max=12.0).describe())   # the run's own numbers
    stream.flush()
    mark = "✅ " if encoding == "utf-8" else ""
    assert raw.getvalue().decode(encoding).splitlines() == [
        mark + UNMARKED_LINE, f"{mark}Using Progressive Hash Learning - Scale from 2.0 to 12.0"]


def test_an_ascii_stdout_prints_the_line_without_the_mark():
    """PYTHONIOENCODING=ascii, as a user's terminal or pipe may set it: no UnicodeEncodeError."""
    code = "from config import Config\nfrom schedules import ScaleSchedule\n" \
           "print(ScaleSchedule(Config(epoch=101), 40).describe())"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=60)
    assert (done.returncode, done.stdout.decode("ascii").strip()) == (0, UNMARKED_LINE), done.stderr
