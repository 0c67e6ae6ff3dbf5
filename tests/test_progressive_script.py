"""test_progressive_hash.py, the top-level demo command: its schedule printout, its two figures, its
--histograms input and its one-line errors (main(argv) called directly)."""
import json
import re
import struct

import pytest
import torch

import test_progressive_hash as demo
import train
from config import build_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/(\d+)\s+scale\s+([\d.]+)\s+progress\s+([\d.]+)%$")


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def saturated(counts):
    """Share of outputs in the outermost bin each side: |h| >= 0.96 with histograms.json's edges."""
    return (counts[0] + counts[-1]) / sum(counts)


def suptitle(fig):
    """The figure's suptitle (Figure.get_suptitle needs matplotlib 3.8; requirements allow 3.7)."""
    return " ".join(text.get_text() for text in fig.texts)


def histogram_file(path, snapshots=None, edges=None):
    """A hand-written histograms.json (by default 50 bins on [-1, 1], mass moving outwards as the scale
    grows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    edges = edges if edges is not None else [-1 + 0.04 * i for i in range(51)]
    if snapshots is None:
        snapshots = [{"epoch": e + 1, "progress": e / 2, "scale": 1 + 4.5 * e,
                      "image": [10 * e] + [4] * 48 + [10 * e], "text": [5 * e] + [4] * 48 + [5 * e]}
                     for e in range(3)]
    path.write_text(json.dumps({"bin_edges": edges, "snapshots": snapshots}))
    return path


def test_the_printout_has_each_epochs_linear_scale_and_both_pngs_are_written(tmp_path, capsys):
    epochs, low, high = 10, 1.0, 5.5       # scale_min 1 and the linear schedule are the config's defaults
    written = demo.main(["--epochs", str(epochs), "--scale_max", str(high), "--out_dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    rows = [EPOCH_LINE.match(line).groups() for line in out.splitlines() if EPOCH_LINE.match(line)]
    assert [int(r[0]) for r in rows] == list(range(1, epochs + 1)) and {r[1] for r in rows} == {str(epochs)}
    for e, (_, _, scale, progress) in enumerate(rows):   # linear: scale_min + e / (E - 1) * (max - min)
        assert float(scale) == pytest.approx(low + e / (epochs - 1) * (high - low), abs=0.005)
        assert float(progress) == pytest.approx(100 * e / (epochs - 1), abs=0.05)
    assert "test-time scale: 5.50" in out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    for name in ("linear", "exponential", "step", "hashnet", "constant"):
        assert len(table[name]) == 6, name                 # the six stages of 0, 20, ..., 100%
    assert table["linear"][-1] == table["exponential"][-1] == table["constant"][0] == "5.50"
    assert table["step"][:2] == ["1.00", "1.00"]           # step holds scale_min for the first half
    assert set(written) == {"visualization", "scale_comparison"}
    assert written["visualization"] == tmp_path / "out" / "progressive_hash_visualization.png"
    assert written["scale_comparison"] == tmp_path / "out" / "scale_comparison.png"
    for path in written.values():
        assert f"wrote {path}" in out
        width, height = png_size(path)
        assert width > 800 and height > 400 and path.stat().st_size > 30_000


def test_toy_outputs_saturate_as_the_scale_grows():
    rising = demo.toy_histograms(build_config(["--epoch", "10"]), bits=32)
    flat = demo.toy_histograms(build_config(["--epoch", "10", "--scale_max", "1"]), bits=32)
    assert [s["scale"] for s in rising["snapshots"]] == [1.0, 3.0, 5.0, 6.0, 8.0, 10.0]
    assert [s["epoch"] for s in rising["snapshots"]] == [1, 3, 5, 6, 8, 10]
    assert len(rising["bin_edges"]) == 51 and all(sum(s["image"]) == 256 * 32 for s in rising["snapshots"])
    for modality in ("image", "text"):
        first, last = (saturated(rising["snapshots"][i][modality]) for i in (0, -1))
        assert last > first + 0.05, (modality, first, last)
        # the same training at a constant scale of 1 stays continuous: the growth is the scale's doing
        assert last > saturated(flat["snapshots"][-1][modality]) + 0.05
    again = demo.toy_histograms(build_config(["--epoch", "10"]), bits=32)
    assert again == rising                                 # seeded: the figure is reproducible


def test_histograms_of_a_real_run_are_drawn_instead_of_the_toy(tmp_path, capsys, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a model this small gains nothing from threads and loses much on a busy CPU
    try:
        train.main(["--dataset", "demo", "--data_root", str(tmp_path / "data"), "--hash_lens", "16",
                    "--modality_dropout", "0", "--balanced_neighbours", "covariance",
                    "--checkpoint_dir", str(tmp_path / "ck"), "--output_dir", str(tmp_path / "run"), "--epoch", "3",
                    "--fusion_dim", "32", "--fusion_ff_dim", "32", "--fusion_layers", "1", "--hash_hidden", "32",
                    "--batch_size", "512", "--eval_every", "0", "--save_every", "0", "--record_histograms", "true",
                    "--unimodal_epochs", "1"])   # the histograms are the paired codes'; the branch's 20 epochs took 4 s
    finally:
        torch.set_num_threads(threads)
    source = tmp_path / "run" / "histograms.json"
    hist = json.loads(source.read_text())
    monkeypatch.setattr(demo, "toy_histograms", lambda *a: pytest.fail("the toy model ran despite --histograms"))
    capsys.readouterr()
    written = demo.main(["--histograms", str(source), "--out_dir", str(tmp_path / "out")])
    assert png_size(written["visualization"])[0] > 800 and png_size(written["scale_comparison"])[0] > 800
    out = capsys.readouterr().out
    assert f"wrote {written['visualization']}" in out
    # no schedule options: the default config (configs/demo.yaml: 20 epochs, linear 1 -> 20 at 64 bits)
    assert "Scale from 1.0 to 20.0" in out and "epoch  1/20  scale   1.00" in out and "epoch 20/20  scale  20.00" in out
    # one panel per snapshot, titled with its epoch, progress, scale and saturated shares
    fig = demo.histogram_figure(demo.read_histogram_file(tmp_path / "run"), str(source))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(hist["snapshots"]) == 3
    for title, snap in zip(titles, hist["snapshots"]):
        assert f"after epoch {snap['epoch']} · {snap['progress']:.0%} · scale {snap['scale']:.2f}" in title
        assert re.search(r"saturated: image \d+%, text \d+%", title)
    assert str(source) in suptitle(fig)


def test_a_hand_written_file_and_its_saturated_shares(tmp_path):
    path = histogram_file(tmp_path / "histograms.json")
    fig = demo.histogram_figure(demo.read_histogram_file(path), "hand-written")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    # (2 * 10e) / (2 * 10e + 48 * 4) and (2 * 5e) / (2 * 5e + 48 * 4) for e = 2
    assert titles[-1].endswith(f"saturated: image {40 / 232:.0%}, text {20 / 212:.0%}")
    assert titles[0].endswith("saturated: image 0%, text 0%")
    assert "|h| ≥ 0.96" in suptitle(fig)
    assert [ax.axison for ax in fig.axes] == [True, True, True]
    # coarse bins: none lies wholly beyond 0.95, so nothing counts as saturated (and nothing breaks)
    coarse = histogram_file(tmp_path / "coarse" / "histograms.json", edges=[-1, 0, 1], snapshots=[
        {"epoch": 1, "progress": 0, "scale": 1, "image": [3, 4], "text": [4, 3]}])
    fig = demo.histogram_figure(demo.read_histogram_file(coarse.parent), "coarse")
    assert fig.axes[0].get_title().endswith("saturated: image 0%, text 0%") and "no bin" in suptitle(fig)


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("{not json", "not valid JSON"),
    ('{"bin_edges": [-1, 0, 1]}', "needs 'bin_edges' (list) and a non-empty 'snapshots' list"),
    ('{"bin_edges": [-1, 0, 1], "snapshots": [{"epoch": 1, "progress": 0, "scale": 1, "image": [1, 2]}]}',
     "snapshot 0 has no 'text'"),
])
def test_a_bad_histograms_file_is_a_one_line_error_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "histograms.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--histograms", str(path), "--out_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(f"error: {path}: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()                 # nothing written before the check


def test_a_missing_or_renamed_file_is_named_as_given(tmp_path, capsys):
    for path in (tmp_path / "nope.json", histogram_file(tmp_path / "copy.json")):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(["--histograms", str(path), "--out_dir", str(tmp_path)])
        assert exit_info.value.code == 2 and capsys.readouterr().err.startswith(f"error: {path}: ")


@pytest.mark.parametrize("argv, message", [
    (["--scale_max", "-1"], "--scale_min/--scale_max"),
    (["--scale_min", "5", "--scale_max", "2"], "--scale_min/--scale_max"),
    (["--schedule", "nope"], "--scale_schedule: 'nope' is not one of linear, exponential"),
    (["--epochs", "0"], "--epoch: must be at least 1"),
    (["--epochs", "ten"], "--epoch: expected int"),
    (["--bits", "0"], "--bits: must be at least 1"),
])
def test_a_bad_option_value_exits_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        demo.main([*argv, "--out_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bits_picks_its_scale_max_from_a_per_length_mapping(tmp_path, capsys):
    demo.main(["--epochs", "3", "--scale_max", "16:8,64:15", "--bits", "16", "--out_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Scale from 1.0 to 8.0" in out and "test-time scale: 8.00" in out
    demo.main(["--epochs", "3", "--scale_max", "16:8,64:15", "--bits", "64", "--out_dir", str(tmp_path / "b")])
    assert "test-time scale: 15.00" in capsys.readouterr().out
