"""--max-drop as a promise: held-out drop measured, recorded, enforced; the float fallback.

The model is built to be sensitive (:func:`tests.lively.sensitize`: one activation with a
1000x wider range, FP32 outputs unchanged). Its held-out ground truth is the FP32 model's own
confident detections, so FP32 scores about 100 points and any INT8 damage shows as a drop.
ONNX Runtime and the TensorRT QDQ graph (both fast, under ORT CPU); OpenVINO has its own test
(test_convert_fallback_openvino.py), TFLite shares the loop (see the BENCHMARKS figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from calibration.sets import Holdout, write_calibration_set  # noqa: E402
from convert import ConvertOptions, export  # noqa: E402
from convert.errors import ConvertError  # noqa: E402
from ssd.sidecar import read_sidecar  # noqa: E402
from tests.voc_dataset import write_voc_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["red", "green", "blue"]
SENSITIVE = {"features.stem.0.0", "features.stem.1.0"}  # the wide activation's producer and consumer


def _images(tmp: Path, n: int, seed: int) -> np.ndarray:
    import cv2

    from calibration.sets import stored_input_spec
    from ssd.preprocess import preprocess

    root = write_voc_dataset(tmp / f"voc{seed}", n, size=128, classes=LABELS, seed=seed)
    spec = stored_input_spec(128, 128)
    return np.concatenate([preprocess(cv2.imread(str(p)), spec) for p in sorted((root / "JPEGImages").glob("*.jpg"))])


def _pseudo_truth(model, images: np.ndarray) -> Holdout:
    """The FP32 model's detections scoring >= 0.3 (at most 4 per image) as ground truth."""
    import torch

    from ssd.postprocess import EVAL, decode_and_nms
    from ssd.priors import default_boxes

    priors = default_boxes(model.spec)
    boxes, labels, image = [], [], []
    with torch.no_grad():
        for i, x in enumerate(images):
            loc, conf = model(torch.from_numpy(x[None].astype(np.float32)))
            det = decode_and_nms(loc.numpy(), conf.numpy(), priors, variances=model.spec.variances, **EVAL._asdict())[0]
            keep = det.scores >= 0.3
            b, lab = det.boxes[keep][:4], det.labels[keep][:4]
            boxes.append(b)
            labels.append(lab)
            image.append(np.full(len(lab), i))
    labels_all = np.concatenate(labels).astype(np.int64)
    assert len(labels_all) >= 10, "the lively model should detect something"
    return Holdout(images, np.concatenate(boxes).astype(np.float32), labels_all, np.zeros(len(labels_all), bool),
                   np.concatenate(image).astype(np.int64))


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    import torch

    from tests.lively import save_lively_checkpoint, sensitize
    from train.checkpoint import load_model, save_checkpoint

    tmp = tmp_path_factory.mktemp("fallback")
    calib_images, held_images = _images(tmp, 16, 1), _images(tmp, 12, 2)
    plain = save_lively_checkpoint(tmp / "plain.pt", "tiny", LABELS, calib_images, seed=0, width=8)
    data = torch.load(plain, weights_only=True)
    loaded = load_model(plain)
    model = loaded.model.eval()
    x = torch.from_numpy(held_images[:2].astype(np.float32))
    with torch.no_grad():
        before = model(x)
        sensitize(model)
        after = model(x)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(before, after, strict=True)), "FP32 unchanged"
    data["model"] = model.state_dict()
    ckpt = save_checkpoint(data, tmp / "sensitive.pt") or tmp / "sensitive.pt"
    write_calibration_set(tmp / "calib", calib_images, {"labels": LABELS}, holdout=_pseudo_truth(model, held_images))
    write_calibration_set(tmp / "calib_noholdout", calib_images, {"labels": LABELS})
    return tmp, Path(ckpt)


@pytest.mark.parametrize("fmt", ["onnx_int8", "tensorrt_qdq"])
def test_fallback_leaves_the_wide_layer_float_and_meets_the_limit(sensitive, fmt):
    tmp, ckpt = sensitive
    lines: list[str] = []
    report = export(ckpt, fmt, tmp / f"out_{fmt}", calib=tmp / "calib",
                    options=ConvertOptions(max_drop=1.0, validate_images=4), log=lines.append)
    assert report.ok, "\n".join(lines)
    sidecar = read_sidecar(report.artifact(fmt))
    acc = sidecar.accuracy
    assert acc is not None and acc.max_drop_points == 1.0 and acc.images == 12
    assert acc.fp32_map50 > 50, "the pseudo ground truth is the FP32 model's own detections"
    assert acc.full_int8_map50 < acc.fp32_map50 - 1.0, "plain PTQ breaks the sensitive model"
    assert acc.drop_low <= 1.0, "the drop is no longer significantly above the limit"
    assert acc.drop_low <= acc.drop_points <= acc.drop_high and acc.map50 == pytest.approx(acc.fp32_map50 - acc.drop_points)
    assert (acc.bootstrap_resamples, acc.bootstrap_seed, acc.enforced_on) == (1000, 0, "labels")
    assert acc.resolvable_points > 0 and acc.fidelity_low <= acc.fidelity_loss <= acc.fidelity_high
    assert any("12 held-out images resolve mAP@0.5 drops of about" in line for line in lines), lines[:3]
    assert acc.float_layers and set(acc.float_layers) <= SENSITIVE, acc.float_layers
    assert acc.latency_ms is not None and acc.full_int8_latency_ms is not None and acc.latency_cost > 0
    # the excluded nodes really are float in the installed graph
    assert set(sidecar.extra["quantization"]["float_nodes"])
    raw = json.loads(Path(str(report.artifact(fmt)) + ".json").read_text())
    assert raw["accuracy"]["float_layers"] == acc.float_layers
    assert any("float fallback" in line for line in lines)
    if fmt == "tensorrt_qdq":  # the float layers keep the graph inside TensorRT's parser rules
        assert sidecar.runtime_hints.tensorrt_check is not None and sidecar.runtime_hints.tensorrt_check.passed


def test_an_unmeetable_limit_fails_by_name_and_leaves_no_file(sensitive):
    tmp, ckpt = sensitive
    out = tmp / "out_fail"
    report = export(ckpt, "onnx_int8", out, calib=tmp / "calib",
                    options=ConvertOptions(max_drop=1.0, max_float_layers=0, validate_images=4), log=lambda s: None)
    assert not report.ok and report.failed == ["onnx_int8"]
    assert "cannot meet --max-drop 1" in report.results[0].error
    assert sorted(p.name for p in out.iterdir()) == ["ssd-convert.json"]


def test_without_fallback_the_drop_fails_the_format(sensitive):
    tmp, ckpt = sensitive
    out = tmp / "out_nofallback"
    report = export(ckpt, "onnx_int8", out, calib=tmp / "calib",
                    options=ConvertOptions(max_drop=1.0, fallback=False, validate_images=4), log=lambda s: None)
    assert report.failed == ["onnx_int8"] and "significantly above --max-drop 1" in report.results[0].error
    assert sorted(p.name for p in out.iterdir()) == ["ssd-convert.json"]


def test_max_drop_without_held_out_images_is_refused_before_any_export(sensitive):
    tmp, ckpt = sensitive
    with pytest.raises(ConvertError, match="needs held-out images"):
        export(ckpt, "onnx_fp32,onnx_int8", tmp / "out_noholdout", calib=tmp / "calib_noholdout",
               options=ConvertOptions(max_drop=1.0))
    assert not (tmp / "out_noholdout" / "model_onnx_fp32.onnx").exists()


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_max_drop_has_the_same_unit_in_both_clis(tmp_path):
    from compare.cli import parse_args as compare_args
    from convert.cli import parse_args as convert_args
    from convert.context import MaxDrop

    # points of mAP@0.5 in both: 1 means one point, not 100 %
    assert convert_args(["--checkpoint", "c", "--target", "all", "--out", "o", "--max-drop", "1"]).max_drop == 1.0
    assert compare_args(["--checkpoint", "c", "--artifacts", "a", "--data", "d", "--out", "o", "--max-drop", "1"]).max_drop == 1.0
    assert MaxDrop(1.0).fraction == 0.01 and float(MaxDrop(0.5)) == 0.5 and f"{MaxDrop(0.5):g}" == "0.5"
    with pytest.raises(ConvertError, match="points of mAP@0.5"):
        MaxDrop(150.0)
    res = _cli("convert.cli", "--checkpoint", str(tmp_path / "missing.pt"), "--target", "onnx_int8", "--out", str(tmp_path / "o"),
               "--max-drop", "-1")
    assert res.returncode == 2 and "points of mAP@0.5 (0-100" in res.stderr
    assert not (tmp_path / "o").exists()
    for module in ("convert.cli", "compare.cli"):
        help_text = " ".join(_cli(module, "--help").stdout.rsplit("--max-drop POINTS", 1)[1].split())
        assert "POINTS of mAP@0.5 (0-100" in help_text, help_text[:200]
    with pytest.raises(SystemExit):
        compare_args(["--checkpoint", "c", "--artifacts", "a", "--data", "d", "--out", "o", "--max-drop", "101"])


def test_sidecar_refuses_a_recorded_drop_above_its_limit(sensitive, tmp_path):
    import dataclasses
    import shutil

    from ssd.sidecar import SidecarError, write_sidecar

    tmp, ckpt = sensitive
    src = tmp / "out_onnx_int8" / "model_onnx_int8.onnx"  # written by the fallback test above, or here when run alone
    if not src.exists():
        assert export(ckpt, "onnx_int8", src.parent, calib=tmp / "calib", options=ConvertOptions(max_drop=1.0, validate_images=4),
                      log=lambda s: None).ok
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    sidecar = read_sidecar(src)
    # a drop above the limit whose interval reaches below it is not significantly above it: accepted
    unsure = dataclasses.replace(sidecar.accuracy, map50=sidecar.accuracy.fp32_map50 - 3.0, drop_points=3.0, drop_low=0.5,
                                 drop_high=5.5)
    write_sidecar(dataclasses.replace(sidecar, accuracy=unsure), dst)
    assert read_sidecar(dst).accuracy.interval_text() == "3.00 [0.50, 5.50]"
    bad = dataclasses.replace(unsure, drop_low=2.0)
    write_sidecar(dataclasses.replace(sidecar, accuracy=bad), dst)
    with pytest.raises(SidecarError, match="significantly above its limit 1"):
        read_sidecar(dst)


def test_sensitivity_report_puts_the_wide_layer_first(sensitive):
    from convert.sensitivity import sensitivity_report

    tmp, ckpt = sensitive
    layers = ["features.stem.1.0", "features.stages.2.0.0", "conf_heads.1"]
    paths = sensitivity_report(ckpt, "onnx_int8", tmp / "sens", tmp / "calib", ConvertOptions(validate_images=4),
                               log=lambda s: None, layers=layers)
    data = json.loads(paths["sensitivity json"].read_text())
    rows = {r["layer"]: r for r in data["formats"][0]["rows"]}
    assert set(rows) == set(layers) | {"class-logit convolutions", "box-offset convolutions"}
    from convert.fallback import head_output_units
    from train.checkpoint import load_model

    logits, offsets = head_output_units(load_model(ckpt).model)
    assert rows["class-logit convolutions"]["layers"] == list(logits.layers)
    assert rows["box-offset convolutions"]["layers"] == list(offsets.layers)
    assert rows["conf_heads.1"]["layers"] == ["conf_heads.1"]
    worst = min(rows.values(), key=lambda r: r["alone_sqnr_db"])
    assert worst["layer"] == "features.stem.1.0", rows
    assert worst["alone_map50_delta"] < -1.0, "quantizing the wide layer alone costs accuracy"
    assert all(0.0 < r["mac_share"] < 1.0 and r["float_latency_cost"] > 0 for r in rows.values())
    table = paths["sensitivity onnx_int8 md"].read_text()
    assert table.index("features.stem.1.0") < table.index("| conf_heads.1 |"), "worst first"
    assert f"- class-logit convolutions: {', '.join(logits.layers)}" in table
    assert paths["sensitivity onnx_int8 png"].stat().st_size > 1000
    assert not list((tmp / "sens").glob(".ssd-sensitivity.*")), "no scratch left"


# ------------------------------------------------------------------ the units (the search: tests/test_convert_bootstrap.py)


@pytest.mark.parametrize("arch,kwargs", [("tiny", {"width": 8}), ("ssdlite320_mobilenetv2", {"width": 0.25})])
def test_head_output_units_are_the_convolutions_that_make_the_logits_and_offsets(arch, kwargs):
    import torch

    from convert.fallback import head_output_units
    from train.models import build_model

    model = build_model(arch, len(LABELS) + 1, **kwargs).eval()
    conf, loc = head_output_units(model)
    modules = dict(model.named_modules())
    assert len(conf.layers) == len(model.conf_heads) and len(loc.layers) == len(model.loc_heads)
    for i, (c, b) in enumerate(zip(conf.layers, loc.layers, strict=True)):
        assert c.startswith(f"conf_heads.{i}") and b.startswith(f"loc_heads.{i}")
        assert isinstance(modules[c], torch.nn.Conv2d) and isinstance(modules[b], torch.nn.Conv2d)
        # the last convolution of the head: its channels are boxes x classes (boxes x 4)
        assert modules[c].out_channels % (len(LABELS) + 1) == 0 and modules[b].out_channels % 4 == 0
        head_convs = [n for n, m in model.conf_heads[i].named_modules() if isinstance(m, torch.nn.Conv2d)]
        assert c == f"conf_heads.{i}" + (f".{head_convs[-1]}" if head_convs[-1] else "")


def test_tflite_output_is_float32_only_when_every_head_feeding_it_is_float(sensitive, tmp_path):
    pytest.importorskip("litert_torch")
    from calibration.sets import load_calibration_set
    from convert.exporters.tflite import convert_int8, describe
    from convert.fallback import head_output_units
    from edge_app.backends.tflite_backend import make_interpreter
    from train.checkpoint import load_model

    tmp, _ = sensitive
    model = load_model(tmp / "plain.pt").model.eval()  # the lively model before sensitize: INT8 keeps its features
    calib = load_calibration_set(tmp / "calib")
    conf_layers = head_output_units(model)[0].layers
    results = {}
    for name, layers in (("all_conf", conf_layers), ("one_conf", conf_layers[:1])):
        dst = tmp_path / f"{name}.tflite"
        settings = convert_int8(model, 128, dst, calib.batches("NHWC", "float32"), float_layers=layers)
        assert settings["float_layers"] == list(layers)
        results[name] = describe(dst)
    assert results["all_conf"]["input"]["dtype"] == "int8"
    assert results["all_conf"]["outputs"]["conf"]["dtype"] == "float32", "every class-logit conv is float: so is conf"
    assert results["all_conf"]["outputs"]["loc"]["dtype"] == "int8"
    assert results["one_conf"]["outputs"]["conf"]["dtype"] == "int8", "other heads still feed conf in INT8"
    # the float output carries the logits as PyTorch computes them, up to the INT8 layers before it
    interpreter, _ = make_interpreter(tmp_path / "all_conf.tflite")
    interpreter.allocate_tensors()
    x = next(iter(calib.batches("NHWC", "float32")))
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], (x - 128).round().clip(-128, 127).astype(np.int8))
    interpreter.invoke()
    conf_name = results["all_conf"]["outputs"]["conf"]["name"]
    conf = next(interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details() if d["name"] == conf_name)
    import torch

    with torch.no_grad():
        _, reference = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    reference = reference.numpy()
    assert conf.dtype == np.float32 and conf.shape == reference.shape
    assert np.corrcoef(conf.ravel(), reference.ravel())[0, 1] > 0.98


def test_onnx_int8_leaves_the_class_logits_float_by_default_and_full_integer_quantizes_them(sensitive):
    import onnx

    from convert.fallback import head_output_units
    from train.checkpoint import load_model

    tmp, _ = sensitive
    ckpt = tmp / "plain.pt"  # the lively model before sensitize: plain INT8 passes validation
    logits = head_output_units(load_model(ckpt).model)[0].layers
    graphs = {}
    for name, options in (("default", ConvertOptions(validate_images=4)),
                          ("full", ConvertOptions(validate_images=4, full_integer=True))):
        report = export(ckpt, "onnx_int8", tmp / f"out_default_{name}", calib=tmp / "calib", options=options, log=lambda s: None)
        assert report.ok, report.results[0]
        sidecar = read_sidecar(report.artifact("onnx_int8"))
        graphs[name] = (onnx.load(str(report.artifact("onnx_int8"))).graph, sidecar.extra["quantization"])
    hub_nodes = None
    for name, (graph, settings) in graphs.items():
        # a quantized Conv reads its weight through a DequantizeLinear; a float one reads the initializer itself
        initializers = {i.name for i in graph.initializer}
        float_convs = {n.input[1][: -len(".weight")] for n in graph.node
                       if n.op_type == "Conv" and n.input[1] in initializers and n.input[1].endswith(".weight")}
        if name == "default":
            assert set(logits) <= float_convs, float_convs
            assert settings["class_logits"].startswith("float (default")
            hub_nodes = settings["float_nodes"]
        else:
            assert not set(logits) & float_convs, "--full-integer quantizes the class logits"
            assert settings["class_logits"] == "int8 (--full-integer)" and "float_nodes" not in settings
    assert len(hub_nodes) == len(logits)


def test_tflite_int8_default_has_float_class_logits_and_full_integer_int8_outputs(sensitive):
    pytest.importorskip("litert_torch")
    tmp, _ = sensitive
    ckpt = tmp / "plain.pt"  # the lively model before sensitize: plain INT8 passes validation
    dtypes = {}
    for name, options in (("default", ConvertOptions(validate_images=4)),
                          ("full", ConvertOptions(validate_images=4, full_integer=True))):
        report = export(ckpt, "tflite_int8", tmp / f"out_tfl_{name}", calib=tmp / "calib", options=options, log=lambda s: None)
        assert report.ok, report.results[0].error
        sidecar = read_sidecar(report.artifact("tflite_int8"))
        dtypes[name] = {k: o.dtype for k, o in sidecar.outputs.items()} | {"input": sidecar.input.dtype}
    assert dtypes["default"] == {"input": "int8", "loc": "int8", "conf": "float32"}
    assert dtypes["full"] == {"input": "int8", "loc": "int8", "conf": "int8"}


def test_a_drop_the_images_cannot_resolve_ships_as_exported_with_no_layer_float(monkeypatch, tmp_path):
    """Full INT8 above the limit by value, its interval reaching below it: no export, a statement."""
    from types import SimpleNamespace

    import convert.fallback as fallback
    from convert.meter import Measurement
    from ssd.bootstrap import Interval, Resolution

    full = Measurement(map50=40.0, drop=Interval(0.71, -0.04, 1.58, 32), fidelity=(), fidelity_loss=Interval(0.5, 0.2, 0.8, 182),
                       latency_ms=1.0)
    class FakeMeter:
        frames, fp32_map50, images_from, seen_in_training = [None] * 182, 40.71, "sha", 0

        def __len__(self) -> int:
            return 32

        def measure(self, artifact):
            return full

        def resolution(self):
            return Resolution(32, 0.68, 2.62)

    meter = FakeMeter()
    lines: list[str] = []
    ctx = SimpleNamespace(options=ConvertOptions(max_drop=0.1), log=lines.append, source=SimpleNamespace(model=None),
                          meter=lambda: meter)

    def no_export(*args):
        raise AssertionError("nothing may be re-exported for a drop the images cannot resolve")

    monkeypatch.setattr(fallback, "export_variant", no_export)
    exported = SimpleNamespace(artifact=tmp_path / "model.onnx")
    out, sidecar, acc = fallback.enforce_max_drop(ctx, "tensorrt_qdq", exported, tmp_path)
    assert out is exported and sidecar is None and acc.float_layers == []
    assert (acc.drop_points, acc.drop_low, acc.drop_high) == pytest.approx((0.71, -0.04, 1.58))
    said = [line for line in lines if "cannot resolve" in line]
    assert said and "32 held-out images cannot resolve the limit" in said[0] and "--max-drop 0.1 would need about 839 images" in said[0], lines


def test_the_fp32_reference_in_batches_equals_image_by_image_and_restores_the_threads(sensitive):
    import torch

    from calibration.sets import load_calibration_set
    from convert.meter import REFERENCE_BATCH, fp32_outputs
    from convert.source import load_source

    tmp, ckpt = sensitive
    src = load_source(ckpt)
    inputs = list(load_calibration_set(tmp / "calib").batches("NCHW", "float32"))
    assert len(inputs) > REFERENCE_BATCH, "more than one batch, the last one partial"
    threads = torch.get_num_threads()
    batched = fp32_outputs(src, inputs, 1, lambda s: None)
    assert torch.get_num_threads() == threads
    assert len(batched) == len(inputs)
    for x, (loc, conf) in zip(inputs, batched, strict=True):
        ref_loc, ref_conf = src.reference(x)
        assert loc.shape == ref_loc.shape and conf.shape == ref_conf.shape
        np.testing.assert_allclose(conf, ref_conf, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(loc, ref_loc, rtol=1e-4, atol=1e-4)
