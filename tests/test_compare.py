"""ssd-compare on a tiny model and a tiny synthetic set: table, JSON, markdown, PNGs, flags."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from compare.cli import main as compare_main
from compare.report import table, to_dict
from compare.run import (
    ComparisonReport,
    ModelResult,
    discover_artifacts,
    evaluate_predictor,
    load_samples,
)
from ssd import TINY, default_boxes, encode
from ssd.preprocess import InputSpec


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A synthetic set, a tiny checkpoint with trained-like outputs, and two artifacts of it."""
    torch = pytest.importorskip("torch")
    from calibration.cli import main as calibrate_main
    from convert.cli import main as convert_main
    from tests.lively import lively_model
    from train.checkpoint import save_checkpoint
    from train.models import build_model
    from train.synth import CLASSES, SynthConfig, generate

    root = tmp_path_factory.mktemp("compare")
    data = generate(root / "data", SynthConfig(num_train=24, num_val=10, size=128, seed=3))
    torch.manual_seed(0)
    model = build_model("tiny", len(CLASSES) + 1, width=8)
    frames = np.random.default_rng(0).integers(0, 256, (4, 3, 128, 128)).astype(np.float32)
    lively_model(model, [frames])
    checkpoint = root / "tiny.pt"
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8},
                     "spec": TINY.to_dict(), "labels": list(CLASSES)}, checkpoint)
    calib = root / "calib"
    assert calibrate_main(["--data", str(data), "--split", "train", "--num", "16", "--holdout", "4",
                           "--checkpoint", str(checkpoint), "--out", str(calib)]) == 0
    artifacts = root / "artifacts"
    assert convert_main(["--checkpoint", str(checkpoint), "--target", "onnx_fp32,onnx_int8",
                         "--calib", str(calib), "--out", str(artifacts), "--validate-images", "4"]) == 0
    return {"root": root, "data": data, "checkpoint": checkpoint, "artifacts": artifacts}


def test_compare_writes_table_json_markdown_and_plots(pipeline, capsys):
    out = pipeline["root"] / "report"
    code = compare_main(["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(pipeline["artifacts"]),
                         "--data", str(pipeline["data"]), "--split", "val", "--out", str(out), "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    for column in ("format", "precision", "size MB", "mAP50", "mAP50-95", "ms", "FPS", "status"):
        assert column in printed
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["pytorch_fp32", "onnx_fp32", "onnx_int8"]
    assert report["num_images"] == 10 and report["reference"] == "pytorch_fp32"
    for row in report["rows"]:
        assert row["status"] == "ok"
        assert set(row["metrics"]) >= {"mAP@0.5", "mAP@[.5:.95]", "AR@100", "per_class_AP@0.5", "per_class_AP@[.5:.95]"}
        assert row["latency_p50_ms"] > 0 and row["fps"] > 0
    fp32, onnx_fp32 = report["rows"][0], report["rows"][1]
    # the FP32 artifact runs the same network: same detections, so the same mAP
    assert onnx_fp32["metrics"]["mAP@0.5"] == pytest.approx(fp32["metrics"]["mAP@0.5"], abs=1e-6)
    assert onnx_fp32["delta_map50_points"] == pytest.approx(0.0, abs=1e-4)
    assert report["rows"][2]["size_mb"] < onnx_fp32["size_mb"]  # INT8 weights are smaller
    for png in ("map_vs_latency.png", "per_class_ap.png", "pr_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| onnx_int8 |" in md and "![per-class AP](per_class_ap.png)" in md


class OraclePredictor:
    """Head outputs that encode given boxes exactly at their best prior (or nothing)."""

    runtime, precision, path = "oracle", "fp32", None

    def __init__(self, samples, num_classes: int, empty: bool = False) -> None:
        self.name = "empty" if empty else "perfect"
        self.spec = TINY
        self.input_spec = InputSpec(TINY.image_size, TINY.image_size)
        self.priors = default_boxes(TINY)
        self.queue = [] if empty else list(samples)
        self.warm = 2  # evaluate_predictor warms up on the first image twice
        self.empty = empty
        self.num_classes = num_classes

    def infer(self, batch):
        from ssd.box_coding import pairwise_iou

        p = len(self.priors)
        loc = np.zeros((1, p, 4), np.float32)
        conf = np.zeros((1, p, self.num_classes), np.float32)
        conf[0, :, 0] = 20.0
        if self.empty:
            return loc, conf
        if self.warm:
            self.warm -= 1
            return loc, conf
        sample = self.queue.pop(0)
        norm = sample.boxes / np.array([sample.width, sample.height] * 2, np.float32)
        prior_xyxy = np.concatenate([self.priors[:, :2] - self.priors[:, 2:] / 2, self.priors[:, :2] + self.priors[:, 2:] / 2], 1)
        best = pairwise_iou(norm, prior_xyxy).argmax(axis=1)
        loc[0, best] = encode(norm, self.priors[best])
        conf[0, best, 0] = 0.0
        conf[0, best, sample.labels] = 20.0
        return loc, conf


def test_perfect_predictions_score_one_and_empty_zero(pipeline):
    samples = load_samples(pipeline["data"], "val", ["circle", "rectangle", "triangle", "star"], None).samples
    labels = ["circle", "rectangle", "triangle", "star"]
    assert sum(len(s.boxes) for s in samples) > 0
    perfect = evaluate_predictor(OraclePredictor(samples, 5), samples, labels)
    empty = evaluate_predictor(OraclePredictor(samples, 5, empty=True), samples, labels)
    assert perfect.metrics.map50 == pytest.approx(1.0)
    assert perfect.metrics.map == pytest.approx(1.0)
    assert empty.metrics.map50 == 0.0 and empty.metrics.map == 0.0

    empty.precision = "int8"
    report = ComparisonReport([perfect, empty], labels, "synthetic", "val", len(samples), 1, max_drop=2.0)
    assert report.delta(empty)[0] == pytest.approx(-100.0)
    assert report.flagged == ["empty"]
    assert "drop 100.00 > 2 pts" in table(report)
    assert to_dict(report)["rows"][1]["status"].startswith("drop")


def test_broken_artifact_is_reported_and_strict_exits_nonzero(pipeline, tmp_path, capsys):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(pipeline["artifacts"], artifacts)
    model = artifacts / "model_onnx_int8.onnx"
    model.write_bytes(model.read_bytes()[:-100])  # truncated: the sidecar's sha256 no longer matches
    args = ["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(artifacts), "--data", str(pipeline["data"]),
            "--split", "val", "--out", str(tmp_path / "r"), "--threads", "1", "--limit", "3"]
    assert compare_main(args) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "r" / "report.json").read_text())["rows"]}
    assert rows["model_onnx_int8.onnx"]["status"].startswith("error:") and "sha256" in rows["model_onnx_int8.onnx"]["status"]
    assert rows["onnx_fp32"]["status"] == "ok"
    assert compare_main(args + ["--strict"]) == 1


def test_a_format_that_failed_in_ssd_convert_is_a_row_that_says_why_and_strict_fails(pipeline, tmp_path, monkeypatch, capsys):
    import onnx
    from onnx import numpy_helper

    from convert import ConvertOptions, export

    def collapsing_quantizer(src, dst, batches, work, **kwargs):  # as a broken calibration would
        graph = onnx.load(str(src))
        for init in graph.graph.initializer:
            values = numpy_helper.to_array(init)
            if values.dtype == np.float32:
                init.CopyFrom(numpy_helper.from_array(np.zeros_like(values), init.name))
        onnx.save(graph, str(dst))
        return {"calibrate_method": "broken"}

    artifacts = tmp_path / "artifacts"
    shutil.copytree(pipeline["artifacts"], artifacts)
    monkeypatch.setattr("convert.exporters.onnx.quantize_int8", collapsing_quantizer)
    converted = export(pipeline["checkpoint"], "onnx_int8", artifacts, calib=pipeline["root"] / "calib",
                       options=ConvertOptions(validate_images=2), log=lambda s: None)
    assert converted.failed == ["onnx_int8"] and not (artifacts / "model_onnx_int8.onnx").exists()
    args = ["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(artifacts), "--data", str(pipeline["data"]),
            "--split", "val", "--out", str(tmp_path / "r"), "--threads", "1", "--limit", "3"]
    assert compare_main(args) == 0
    printed = capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads((tmp_path / "r" / "report.json").read_text())["rows"]}
    assert set(rows) == {"pytorch_fp32", "onnx_fp32", "onnx_int8"}, "the failed format keeps its row"
    failed = rows["onnx_int8"]
    assert failed["status"].startswith("error: ssd-convert failed:") and "collapsed" in failed["status"]
    assert failed["precision"] == "int8" and failed["metrics"] is None
    assert "ssd-convert failed" in printed and "ssd-convert failed" in (tmp_path / "r" / "report.html").read_text()
    assert compare_main(args + ["--strict"]) == 1


def test_every_drop_has_its_interval(pipeline, tmp_path):
    out = tmp_path / "r"
    assert compare_main(["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(pipeline["artifacts"]),
                         "--data", str(pipeline["data"]), "--split", "val", "--out", str(out), "--threads", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["bootstrap"] == {"method": "paired percentile bootstrap over images", "resamples": 1000, "seed": 0,
                                   "level": 0.95}
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["pytorch_fp32"]["delta_map50_interval"] is None
    for name in ("onnx_fp32", "onnx_int8"):
        interval = rows[name]["delta_map50_interval"]
        assert interval["images"] == 10 and interval["low"] <= interval["change"] <= interval["high"]
    assert rows["onnx_fp32"]["delta_map50_interval"]["high"] - rows["onnx_fp32"]["delta_map50_interval"]["low"] < 1e-6, \
        "the FP32 artifact's detections are PyTorch's: no uncertainty in a zero change"
    for page in ("report.md", "report.html"):
        text = (out / page).read_text()
        assert "d mAP50 95% CI" in text and "1000 resamples, seed 0" in text


def test_bad_input_is_one_line_and_exit_2(pipeline, tmp_path, capsys):
    code = compare_main(["--checkpoint", str(tmp_path / "missing.pt"), "--artifacts", str(pipeline["artifacts"]),
                         "--data", str(pipeline["data"]), "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.pt" in err
    code = compare_main(["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(tmp_path / "none"),
                         "--data", str(pipeline["data"]), "--out", str(tmp_path / "r")])
    assert code == 2 and "ssd-convert" in capsys.readouterr().err


def test_discover_orders_fp32_before_int8(pipeline):
    names = [p.name for p in discover_artifacts(pipeline["artifacts"])]
    assert names == ["model_onnx_fp32.onnx", "model_onnx_int8.onnx"]


def test_model_result_latency_median():
    row = ModelResult("x", "r", "fp32", None, None, latency_ms=[3.0, 1.0, 2.0])
    assert row.latency_p50 == 2.0


def test_tensorrt_table_without_tensorrt_counts_as_fp32(pipeline, tmp_path, capsys):
    """Without TensorRT the table is unused: the row must say FP32 ran, not report an INT8 loss of zero."""
    from convert.cli import main as convert_main

    artifacts = tmp_path / "artifacts"
    assert convert_main(["--checkpoint", str(pipeline["checkpoint"]), "--target", "tensorrt_calib",
                         "--calib", str(pipeline["root"] / "calib"), "--out", str(artifacts), "--validate-images", "2"]) == 0
    out = tmp_path / "r"
    assert compare_main(["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(artifacts), "--data",
                         str(pipeline["data"]), "--split", "val", "--out", str(out), "--threads", "1", "--limit", "3"]) == 0
    assert "note: tensorrt_calib: INT8 needs TensorrtExecutionProvider" in capsys.readouterr().out
    row = json.loads((out / "report.json").read_text())["rows"][1]
    assert row["name"] == "tensorrt_calib" and row["precision"] == "fp32"
    assert row["executed_by"] == "onnxruntime CPUExecutionProvider" and "FP32 graph" in row["note"]
    assert "ok (see note)" in (out / "report.md").read_text()


def test_executed_precision_keeps_int8_where_the_provider_ran(tmp_path):
    import dataclasses

    from compare.predictors import executed_precision
    from ssd.sidecar import RuntimeHints, TensorRTCalibration

    from .test_preprocess_sidecar import _sidecar

    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model")
    plain = dataclasses.replace(_sidecar(artifact), precision="int8")
    trt = dataclasses.replace(plain, runtime_hints=RuntimeHints(
        execution_provider="TensorrtExecutionProvider", tensorrt_calibration=TensorRTCalibration("model.table")))
    assert executed_precision(trt, "onnxruntime TensorrtExecutionProvider") == ("int8", None)
    assert executed_precision(plain, "onnxruntime CPUExecutionProvider") == ("int8", None)
    assert executed_precision(trt, "onnxruntime CUDAExecutionProvider")[0] == "fp32"
    # a QDQ graph made for TensorRT carries its scales: INT8 under every provider
    qdq = dataclasses.replace(plain, runtime_hints=RuntimeHints(execution_provider="TensorrtExecutionProvider"))
    assert executed_precision(qdq, "onnxruntime CPUExecutionProvider") == ("int8", None)


def test_train_eval_and_compare_report_one_map_for_one_checkpoint(pipeline, tmp_path):
    """ssd-train's periodic evaluation, ssd-eval and ssd-compare's PyTorch row: one mAP."""
    from train.checkpoint import read_checkpoint
    from train.cli import main as train_main
    from train.eval_cli import main as eval_main

    overrides = {
        "name": "t", "output_dir": str(tmp_path), "data.format": "voc", "data.root": str(pipeline["data"]),
        "data.workers": 0, "optim.epochs": 1, "optim.batch_size": 8, "optim.lr": 0.01, "eval.every": 0,
        "eval.batch_size": 4, "model.kwargs": "{width: 8}", "runtime.tensorboard": False, "runtime.threads": 1,
    }
    assert train_main(["--config", "tiny_synth", *[f"{k}={v}" for k, v in overrides.items()]]) == 0
    checkpoint = tmp_path / "t" / "last.pt"
    trained = read_checkpoint(checkpoint)["metrics"]
    assert eval_main(["--checkpoint", str(checkpoint), "--data", str(pipeline["data"]), "--split", "val",
                      "--json", str(tmp_path / "eval.json"), "--threads", "1"]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    evaluated = {"map50": evaluated["mAP@0.5"], "map": evaluated["mAP@[.5:.95]"]}
    from convert.cli import main as convert_main

    artifacts = tmp_path / "artifacts"
    assert convert_main(["--checkpoint", str(checkpoint), "--target", "onnx_fp32", "--out", str(artifacts),
                         "--validate-images", "1"]) == 0
    assert compare_main(["--checkpoint", str(checkpoint), "--artifacts", str(artifacts), "--data", str(pipeline["data"]),
                         "--split", "val", "--out", str(tmp_path / "report"), "--threads", "1"]) == 0
    row = json.loads((tmp_path / "report" / "report.json").read_text())["rows"][0]
    assert row["name"] == "pytorch_fp32"
    compared = {"map50": row["metrics"]["mAP@0.5"], "map": row["metrics"]["mAP@[.5:.95]"]}
    assert trained["map50"] > 0, "a measurable mAP, so equality means something"
    assert trained["map50"] == evaluated["map50"] == compared["map50"]
    assert trained["map"] == evaluated["map"] == compared["map"]


def test_compare_reports_voc07_beside_coco(pipeline, tmp_path, capsys):
    out = tmp_path / "voc"
    assert compare_main(["--checkpoint", str(pipeline["checkpoint"]), "--artifacts", str(pipeline["artifacts"]),
                         "--data", str(pipeline["data"]), "--split", "val", "--out", str(out), "--threads", "1",
                         "--metric", "voc07", "--limit", "6"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("format"))
    assert "mAP50 voc07" in header and "mAP50-95" in header
    rows = json.loads((out / "report.json").read_text())["rows"]
    for row in rows:
        assert row["voc"]["metric"] == "voc07" and row["metrics"]["mAP@0.5"] is not None
        assert 0.0 <= row["voc"]["mAP@0.5 (voc07)"] <= 1.0
    assert "mAP50 voc07" in (out / "report.md").read_text()


def test_the_float_fallback_and_its_latency_cost_are_shown():
    from compare.report import markdown
    from compare.results import ModelResult
    from ssd.sidecar import HeldOutAccuracy

    ref = ModelResult("pytorch_fp32", "pytorch", "fp32", None, None)
    held = HeldOutAccuracy(fp32_map50=70.0, map50=69.6, drop_points=0.4, images=50, max_drop_points=0.5,
                           float_layers=["conf_heads.0"], full_int8_map50=68.0, latency_ms=1.1, full_int8_latency_ms=1.0)
    row = ModelResult("onnx_int8", "onnxruntime", "int8", None, None, held_out=held)
    report = ComparisonReport([ref, row], ["a"], "synthetic", "val", 0, 1, max_drop=0.5)
    text = markdown(report, {})
    assert ("onnx_int8: ssd-convert held-out drop 0.40 points on 50 images, limit 0.5 on labels; float fallback conf_heads.0 "
            "(1.10x the full-INT8 latency); held-out drop 2.00 -> 0.40 points (limit 0.5, 50 images)") in text
    entry = to_dict(report)["rows"][1]
    assert entry["float_layers"] == ["conf_heads.0"] and entry["float_latency_cost"] == pytest.approx(1.1)


def test_the_default_float_class_logits_are_named_next_to_the_held_out_drop():
    from compare.report import markdown
    from compare.results import ModelResult
    from convert.int8_default import CLASS_LOGITS_NOTE
    from ssd.sidecar import HeldOutAccuracy

    ref = ModelResult("pytorch_fp32", "pytorch", "fp32", None, None)
    held = HeldOutAccuracy(fp32_map50=70.0, map50=69.9, drop_points=0.1, images=50, max_drop_points=0.5)
    rows = [ModelResult("onnx_int8", "onnxruntime", "int8", None, None, held_out=held, class_logits=CLASS_LOGITS_NOTE[True]),
            ModelResult("tflite_int8", "tflite", "int8", None, None, held_out=held, class_logits=CLASS_LOGITS_NOTE[False])]
    text = markdown(ComparisonReport([ref, *rows], ["a"], "synthetic", "val", 0, 1, max_drop=0.5), {})
    assert "onnx_int8: ssd-convert held-out drop 0.10 points on 50 images, limit 0.5 on labels; no layer left float by the " \
           "fallback; class-logit convolutions float by default" in text
    assert "tflite_int8: ssd-convert held-out drop 0.10 points on 50 images, limit 0.5 on labels; no layer left float by the " \
           "fallback; class-logit convolutions int8" in text
    entry = to_dict(ComparisonReport([ref, *rows], ["a"], "synthetic", "val", 0, 1, max_drop=0.5))["rows"][1]
    assert entry["class_logits"].startswith("float (default")
