"""scripts/export.py: a checkpoint's one-side encoders as ONNX / TorchScript files, their metadata,
and the sign-code check against PyTorch."""
import sys

import numpy as np
import pytest
import torch

from ICMR import Solver
from config import ConfigError, build_config
from conftest import small_dataset
from data import load_dataset
from data.clip_encoder import sha256_of
from hashindex import encoders
from runio.checkpoint import load_trained_model

pytest.importorskip("onnxruntime")
import export_cli  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 16-bit checkpoint of the small set as saved after its unimodal branch's epoch (not trained:
    the export needs weights, not good ones), the branch's weights moved off the paired network's so
    that exporting the wrong network shows."""
    root = tmp_path_factory.mktemp("export")
    data_root = small_dataset(root)
    cfg = build_config(["--dataset", "small", "--data_root", str(data_root), "--hash_lens", "16", "--epoch", "2",
                        "--unimodal_epochs", "1", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden",
                        "32", "--modality_dropout", "0", "--device", "cpu", "--checkpoint_dir", str(root / "ck")])
    solver = Solver(cfg, bits=16, log=lambda *_: None)
    with torch.no_grad():
        for weight in solver.model.unimodal_branch.parameters():
            weight.add_(0.1 * torch.randn_like(weight))
    solver.epoch, solver.iteration = cfg.epoch + 1, 6   # 2 steps an epoch
    solver.save_checkpoint()
    return root, data_root, solver.checkpoint_path


def test_onnx_encoders_give_the_checkpoints_unimodal_codes_and_carry_its_facts(trained, capsys):
    root, data_root, checkpoint = trained
    found = export_cli.main(["--checkpoint", str(checkpoint), "--out", str(root / "onnx"), "--check", "1000"])
    out = capsys.readouterr().out
    assert "check on 600 items of" in out   # the small set's 100 queries and 500 database items
    assert out.count(" 0 differing signs") == 2
    assert all(row["differing"] == 0 and row["max_h_difference"] < 1e-5 for row in found["check"].values())
    model, info = load_trained_model(checkpoint, log=lambda m: None)
    assert model.branch_trained and model.default_scale > 1
    rows = load_dataset("small", data_root).query
    for modality, encode in (("image", model.encode_image), ("text", model.encode_text)):
        encoder = encoders.ExportedEncoder(root / "onnx" / f"{modality}_encoder.onnx")
        facts = encoder.facts
        assert facts["modality"] == modality and facts["bits"] == "16" and facts["protocol"] == "unimodal"
        assert float(facts["scale"]) == model.default_scale and facts["network"] == "unimodal branch"
        assert (facts["image_dim"], facts["text_dim"], facts["input_dim"]) == \
            ("32", "24", str(info[f"{modality}_dim"]))
        assert facts["checkpoint_sha256"] == sha256_of(checkpoint)
        for batch in (1, 7):   # the batch dimension is dynamic
            features = np.asarray(getattr(rows, modality)[:batch], np.float32)
            h, codes = encoder.run(features)
            with torch.no_grad():
                expected = encode(torch.from_numpy(features)).numpy()
            assert h.shape == (batch, 16) and np.allclose(h, expected, atol=1e-5)
            assert np.array_equal(codes, np.where(expected >= 0, 1.0, -1.0))


def test_torchscript_export_checks_out_too(trained, capsys):
    root, _, checkpoint = trained
    found = export_cli.main(["--checkpoint", str(checkpoint), "--out", str(root / "ts"), "--format", "torchscript",
                             "--check", "50"])
    assert "50 items" in capsys.readouterr().out
    assert [path.name for path in found["paths"].values()] == ["image_encoder.pt", "text_encoder.pt"]
    assert all(row["differing"] == 0 for row in found["check"].values())
    assert encoders.ExportedEncoder(found["paths"]["text"]).facts["modality"] == "text"


def test_compare_signs_counts_flips_and_tolerates_only_tiny_h():
    reference = np.array([[0.5, -2e-7, 0.0, -0.3]], np.float32)
    found = encoders.compare_signs(reference, np.array([[1.0, 1.0, 1.0, -1.0]], np.float32))
    assert found == {"differing": 1, "max_abs_h": pytest.approx(2e-7), "beyond_tolerance": 0}
    found = encoders.compare_signs(reference, np.array([[-1.0, -1.0, -1.0, 1.0]], np.float32))
    assert found["differing"] == 3 and found["beyond_tolerance"] == 2 and found["max_abs_h"] == pytest.approx(0.5)


def test_check_exits_1_when_a_sign_differs_where_h_is_not_tiny(trained, capsys, monkeypatch):
    root, _, checkpoint = trained
    run = encoders.ExportedEncoder.run

    def one_flipped(self, features):   # the export's first code bit of every item negated
        h, codes = run(self, features)
        codes[:, 0] *= -1
        return h, codes

    monkeypatch.setattr(encoders.ExportedEncoder, "run", one_flipped)
    with pytest.raises(SystemExit) as stop:
        export_cli.main(["--checkpoint", str(checkpoint), "--out", str(root / "flipped"), "--check", "20"])
    captured = capsys.readouterr()
    assert stop.value.code == 1 and "image side: 20 differing signs" in captured.out
    assert captured.err.strip() == "error: 40 sign codes differ where |h| >= 1e-06"


def test_bench_and_bad_input(trained, capsys, tmp_path, monkeypatch):
    root, _, checkpoint = trained
    found = export_cli.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "b"), "--bench", "3"])
    assert set(found["bench"]) == {"image", "text"} and "median of 3 calls" in capsys.readouterr().out
    assert all(row["mb"] > 0 and row["export_ms"] > 0 and row["pytorch_ms"] > 0 for row in found["bench"].values())
    with pytest.raises(SystemExit) as stop:
        export_cli.main(["--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and "none.pth: checkpoint not found" in capsys.readouterr().err
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "image_encoder.onnx").write_bytes(b"not onnx")
    with pytest.raises(ConfigError, match="image_encoder.onnx: not a readable exported encoder"):
        encoders.ExportedEncoder(tmp_path / "x" / "image_encoder.onnx")
    mixed = tmp_path / "mixed"   # an image encoder where the text encoder should be
    mixed.mkdir()
    for modality in ("image", "text"):
        (mixed / f"{modality}_encoder.onnx").write_bytes(found["paths"]["image"].read_bytes())
    with pytest.raises(ConfigError, match="mixed: its image and text encoders come from different exports"):
        encoders.ExportedEncoders(mixed)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # as if not installed
    with pytest.raises(ConfigError, match="image_encoder.onnx: running an ONNX encoder needs onnxruntime"):
        encoders.ExportedEncoder(found["paths"]["image"])
