"""ssd-convert's happy path: progress lines, the summary table, exit status 0."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def test_cli_converts_prints_progress_and_summary(tmp_path, capsys):
    from calibration.sets import write_calibration_set
    from convert.cli import main
    from ssd.sidecar import read_sidecar
    from tests.lively import save_lively_checkpoint

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 128, 128), dtype=np.uint8)
    write_calibration_set(tmp_path / "calib", images, {"labels": ["x"]})
    ckpt = save_lively_checkpoint(tmp_path / "m.pt", "tiny", ["x"], images, width=8)
    out = tmp_path / "artifacts"
    code = main(["--checkpoint", str(ckpt), "--target", "onnx_fp32,onnx_int8", "--calib", str(tmp_path / "calib"),
                 "--out", str(out), "--validate-images", "2", "--calib-method", "onnxruntime=percentile", "--dynamic-batch"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "[1/2] onnx_fp32: exporting" in stdout and "[2/2] onnx_int8: ok" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("format "))
    assert header.split() == ["format", "file", "size", "MB", "validation", "time", "s"]
    assert "2/2 formats valid" in stdout
    sc = read_sidecar(out / "model_onnx_int8.onnx")
    assert sc.extra["quantization"]["calibrate_method"] == "percentile"
    assert sc.outputs["loc"].shape[0] == -1 and sc.extra["dynamic_batch"] is True
    # a dynamic-batch artifact runs a batch of 2
    from edge_app.backends import open_backend

    with open_backend(out / "model_onnx_fp32.onnx", device="CPU") as backend:
        loc, conf = backend.infer(images[:2].astype(np.float32))
    assert loc.shape[0] == 2 and conf.shape[0] == 2


def test_cli_rejects_an_unknown_calibration_method(tmp_path, capsys):
    from convert.cli import main

    code = main(["--checkpoint", str(tmp_path / "m.pt"), "--target", "rpi", "--out", str(tmp_path / "o"),
                 "--calib-method", "tflite=entropy"])
    err = capsys.readouterr().err
    assert code == 2 and "tflite offers histogram, minmax" in err and not (tmp_path / "o").exists()
