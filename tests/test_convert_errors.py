"""Bad input and collapsed models: one-line errors, non-zero exit, nothing that looks valid left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from calibration.sets import write_calibration_set  # noqa: E402
from convert import ConvertOptions, export  # noqa: E402
from convert.errors import ConvertError  # noqa: E402
from convert.validate import Tolerances, compare_outputs  # noqa: E402
from ssd.postprocess import Detections  # noqa: E402
from ssd.priors import default_boxes  # noqa: E402
from ssd.specs import TINY  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["a", "b"]


def _convert_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.lively import save_lively_checkpoint

    tmp = tmp_path_factory.mktemp("errors")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 128, 128), dtype=np.uint8)
    write_calibration_set(tmp / "calib", images, {"labels": LABELS})
    ckpt = save_lively_checkpoint(tmp / "tiny.pt", "tiny", LABELS, images, width=8)
    return tmp, ckpt


def _one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssd-convert: error:"), res.stderr
    for needle in needles:
        assert needle in lines[0]


def test_corrupt_checkpoint(setup):
    tmp, _ = setup
    bad = tmp / "corrupt.pt"
    bad.write_bytes(b"\x80\x04garbage")
    out = tmp / "out_corrupt"
    _one_line_error(_convert_cli("--checkpoint", str(bad), "--target", "all", "--calib", str(tmp / "calib"), "--out", str(out)),
                    "corrupt")
    assert not out.exists()


def test_missing_checkpoint_and_unknown_target(setup):
    tmp, ckpt = setup
    out = tmp / "out_missing"
    _one_line_error(_convert_cli("--checkpoint", str(tmp / "nope.pt"), "--target", "all", "--out", str(out)), "does not exist")
    _one_line_error(_convert_cli("--checkpoint", str(ckpt), "--target", "toaster", "--calib", str(tmp / "calib"),
                                 "--out", str(out)), "unknown target 'toaster'")
    assert not out.exists()


def test_empty_calibration_folder(setup):
    tmp, ckpt = setup
    empty = tmp / "empty_calib"
    empty.mkdir()
    out = tmp / "out_empty"
    _one_line_error(_convert_cli("--checkpoint", str(ckpt), "--target", "rpi", "--calib", str(empty), "--out", str(out)),
                    "is empty", "ssd-calibrate")
    assert not out.exists()


def test_int8_without_calibration_set_is_refused(setup):
    _, ckpt = setup
    with pytest.raises(ConvertError, match="need a calibration set"):
        export(ckpt, "onnx_int8", setup[0] / "out_nocalib")


def test_checkpoint_not_matching_its_spec(setup):
    import torch

    from train.checkpoint import save_checkpoint

    tmp, ckpt = setup
    data = torch.load(ckpt, weights_only=True)
    spec = dict(data["spec"], feature_maps=[16, 8, 4, 1])  # the model's last map is 2x2
    save_checkpoint({**data, "spec": spec}, tmp / "mismatch.pt")
    with pytest.raises(ConvertError, match="does not match its spec|need"):
        export(tmp / "mismatch.pt", "onnx_fp32", tmp / "out_mismatch", calib=tmp / "calib")
    data["model"]["loc_heads.0.weight"] = data["model"]["loc_heads.0.weight"][:4]
    save_checkpoint(data, tmp / "bad_weights.pt")
    with pytest.raises(ConvertError, match="does not match its arch"):
        export(tmp / "bad_weights.pt", "onnx_fp32", tmp / "out_mismatch", calib=tmp / "calib")
    assert not (tmp / "out_mismatch").exists()


def test_calibration_set_for_another_model_is_refused(setup):
    tmp, ckpt = setup
    write_calibration_set(tmp / "calib300", np.zeros((2, 3, 64, 64), np.uint8), {"labels": LABELS})
    with pytest.raises(ConvertError, match="64x64 inputs"):
        export(ckpt, "onnx_int8", tmp / "out_size", calib=tmp / "calib300")


def test_nan_model_fails_naming_the_format_and_leaves_nothing(setup):
    import torch

    from train.checkpoint import save_checkpoint

    tmp, ckpt = setup
    data = torch.load(ckpt, weights_only=True)
    data["model"]["features.stem.0.1.weight"][:] = float("nan")
    save_checkpoint(data, tmp / "nan.pt")
    out = tmp / "out_nan"
    out.mkdir()
    stale = [out / "model_onnx_fp32.onnx", out / "model_onnx_fp32.onnx.json"]
    for p in stale:
        p.write_text("from an earlier run")
    lines: list[str] = []
    report = export(tmp / "nan.pt", "onnx_fp32", out, calib=tmp / "calib", options=ConvertOptions(validate_images=2),
                    log=lines.append)
    assert not report.ok and report.failed == ["onnx_fp32"]
    assert "NaN" in report.results[0].error
    assert any(line.startswith("[1/1] onnx_fp32:") and "NaN" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["ssd-convert.json"], "no artifact, no sidecar, no stale files, no staging"
    from convert.record import read_record

    entry = read_record(out)["onnx_fp32"]
    assert not entry["ok"] and "NaN" in entry["error"] and entry["artifact"] is None, "the failure is recorded for ssd-compare"


def test_collapsed_int8_fails_naming_the_format(setup, monkeypatch):
    """An INT8 step that returns a constant-output model (as a broken calibration would)."""
    import onnx
    from onnx import numpy_helper

    tmp, ckpt = setup

    def collapsing_quantizer(src, dst, batches, work, **kwargs):
        graph = onnx.load(str(src))
        for init in graph.graph.initializer:
            values = numpy_helper.to_array(init)
            if values.dtype == np.float32:  # weights and biases, not shapes
                init.CopyFrom(numpy_helper.from_array(np.zeros_like(values), init.name))
        onnx.save(graph, str(dst))
        return {"calibrate_method": "broken"}

    monkeypatch.setattr("convert.exporters.onnx.quantize_int8", collapsing_quantizer)
    out = tmp / "out_collapse"
    report = export(ckpt, "onnx_fp32,onnx_int8", out, calib=tmp / "calib", options=ConvertOptions(validate_images=2),
                    log=lambda s: None)
    assert report.failed == ["onnx_int8"]
    assert "collapsed" in report.results[1].error
    assert sorted(p.name for p in out.iterdir()) == ["model_onnx_fp32.onnx", "model_onnx_fp32.onnx.json", "ssd-convert.json"]
    assert "FAILED" in report.table()


# ---------------------------------------------------------------- the comparison itself


def _outputs(rng, n=2, priors=1520, classes=3):
    loc = rng.normal(0, 0.5, (n, priors, 4)).astype(np.float32)
    conf = rng.normal(0, 1, (n, priors, classes)).astype(np.float32)
    conf[..., 0] += 3
    hot = rng.choice(priors, 30, replace=False)
    conf[:, hot, 1] += 8
    return loc, conf


def test_compare_outputs_judges_int8_by_detections():
    rng = np.random.default_rng(0)
    loc, conf = _outputs(rng)
    priors, var = default_boxes(TINY), TINY.variances
    ref = [(loc[i : i + 1], conf[i : i + 1]) for i in range(2)]
    noisy = [(a + rng.normal(0, 0.01, a.shape).astype(np.float32), b + rng.normal(0, 0.05, b.shape).astype(np.float32)) for a, b in ref]
    good = compare_outputs("int8", ref, noisy, priors, var)
    assert good.passed and good.metrics["f1"] > 0.9
    # the detections match but the background logits are far off (saturated): SQNR alone warns, it does not fail
    saturated = [(a, np.where(b == b.max(-1, keepdims=True), b, b - 40.0)) for a, b in ref]
    warned = compare_outputs("int8", ref, saturated, priors, var)
    assert warned.metrics["sqnr_conf_db"] < 8.0 and warned.passed, warned.summary
    assert "warning: SQNR below 8 dB, not failed because the detections match" in warned.summary
    assert "need >= 0.5" in warned.summary and "need >= 0.7" in warned.summary, "every threshold is stated"
    swapped = [(a, b[..., [0, 2, 1]]) for a, b in ref]  # every box gets the wrong class
    assert not compare_outputs("int8", ref, swapped, priors, var).passed
    background = [(a, np.concatenate([b.max(-1, keepdims=True) + 5.0, b[..., 1:]], axis=-1)) for a, b in ref]
    verdict = compare_outputs("int8", ref, background, priors, var)
    assert not verdict.passed and "all background" in verdict.summary
    constant = [(a, np.ones_like(b)) for a, b in ref]
    assert "constant" in compare_outputs("int8", ref, constant, priors, var).summary
    nan = [(a * np.nan, b) for a, b in ref]
    assert "NaN" in compare_outputs("fp32", ref, nan, priors, var).summary
    assert compare_outputs("fp32", ref, ref, priors, var).passed
    off = [(a + 0.05, b) for a, b in ref]  # 0.05 on a range of about 11
    assert not compare_outputs("fp32", ref, off, priors, var, Tolerances(fp32=1e-3)).passed


def test_compare_outputs_without_reference_detections_uses_sqnr():
    rng = np.random.default_rng(1)
    loc = rng.normal(0, 0.5, (1, 1520, 4)).astype(np.float32)
    conf = rng.normal(0, 0.1, (1, 1520, 3)).astype(np.float32)
    conf[..., 0] += 4.0  # background everywhere: nothing above the threshold
    priors = default_boxes(TINY)
    close = compare_outputs("int8", [(loc, conf)], [(loc * 1.01, conf * 1.01)], priors, TINY.variances)
    assert close.passed and "too few to compare detections" in close.summary
    far = compare_outputs("int8", [(loc, conf)], [(-loc, -conf)], priors, TINY.variances)
    assert not far.passed
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert empty.boxes.shape == (0, 4)


def test_tensorrt_table_check_catches_clipped_or_missing_ranges(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from convert.tensorrt_table import check_table

    graph = helper.make_graph(
        [helper.make_node("Relu", ["images"], ["mid"]), helper.make_node("Neg", ["mid"], ["loc"]),
         helper.make_node("Identity", ["mid"], ["conf"])],
        "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("loc", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("conf", TensorProto.FLOAT, [1])])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    needed = {"images": 255.0, "mid": 3.0, "loc": 3.0, "conf": 3.0}
    assert check_table(dict(needed), needed, path) is None
    # max(highest, lowest) of an asymmetric range: loc lies in [-3, 0], the table says 0
    assert "smaller than the calibrated" in check_table({**needed, "loc": 0.5}, needed, path)
    assert "zero range" in check_table({**needed, "conf": 0.0}, needed, path)
    assert "misses 1 graph tensors" in check_table({k: v for k, v in needed.items() if k != "mid"}, needed, path)
    assert "lacks ['images']" in check_table({k: v for k, v in needed.items() if k != "images"}, needed, path)
