"""Every format for the tiny model: produced, loads in its runtime, agrees with PyTorch, sidecar right.

One conversion of every format runs once for the module (about a minute on 2 cores); the
tests then re-open each artifact independently of the pipeline's own validation.
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
pytest.importorskip("openvino")
pytest.importorskip("litert_torch")

from calibration.sets import load_calibration_set, write_calibration_set  # noqa: E402
from convert import ConvertOptions, export  # noqa: E402
from convert.formats import FORMATS
from convert.runner import run_artifact  # noqa: E402
from convert.targets import TARGETS, resolve_formats  # noqa: E402
from convert.validate import match_detections  # noqa: E402
from ssd.postprocess import decode_and_nms  # noqa: E402
from ssd.preprocess import preprocess  # noqa: E402
from ssd.priors import default_boxes  # noqa: E402
from ssd.sidecar import Sidecar, SidecarError, file_sha256, read_sidecar, sidecar_path  # noqa: E402
from tests.lively import save_lively_checkpoint  # noqa: E402
from tests.voc_dataset import write_voc_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: what --target all converts: every format but the end-to-end ones (tests/test_convert_endtoend.py)
ALL = {name: FORMATS[name] for name in TARGETS["all"]}
LABELS = ["red", "green", "blue"]


def _calibration_images(tmp: Path, n: int, size: int) -> np.ndarray:
    """RGB NCHW uint8 images at ``size`` made from a generated VOC dataset through preprocess."""
    import cv2

    from calibration.sets import stored_input_spec

    root = write_voc_dataset(tmp / "voc", n, size=size, classes=LABELS, seed=1)
    spec = stored_input_spec(size, size)
    frames = [cv2.imread(str(p)) for p in sorted((root / "JPEGImages").glob("*.jpg"))]
    return np.concatenate([preprocess(f, spec) for f in frames])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convert")
    images = _calibration_images(tmp, 16, 128)
    calib_dir = tmp / "calib"
    write_calibration_set(calib_dir, images, {"labels": LABELS, "seed": 0})
    ckpt = save_lively_checkpoint(tmp / "tiny.pt", "tiny", LABELS, images, seed=0, width=16)
    lines: list[str] = []
    report = export(ckpt, "all", tmp / "artifacts", calib=calib_dir,
                    options=ConvertOptions(validate_images=4), log=lines.append)
    return {"report": report, "out": tmp / "artifacts", "calib": load_calibration_set(calib_dir), "ckpt": ckpt,
            "log": lines}


@pytest.fixture(scope="module")
def reference(converted):
    from convert.source import load_source

    source = load_source(converted["ckpt"])
    frames = list(converted["calib"].frames_bgr(limit=4))
    refs = [source.reference(x) for x in converted["calib"].batches(limit=4)]
    return source, frames, refs


def test_targets_cover_the_issue():
    assert resolve_formats("intel") == ["openvino_fp32", "openvino_fp16", "openvino_int8"]
    assert set(resolve_formats("rpi")) == {"tflite_fp32", "tflite_int8", "onnx_int8"}
    assert set(resolve_formats("jetson")) == {"onnx_fp32", "onnx_fp16", "tensorrt_calib", "tensorrt_qdq"}
    assert resolve_formats("all") == list(ALL) and set(TARGETS["all"]) | set(TARGETS["e2e"]) == set(FORMATS)
    assert all(name.endswith("_e2e") for name in TARGETS["e2e"]) and not set(TARGETS["all"]) & set(TARGETS["e2e"])
    assert resolve_formats("rpi,onnx_fp32")[0] == "onnx_fp32"  # table order, not argument order


def test_every_format_is_produced_with_its_sidecar(converted):
    report = converted["report"]
    assert report.ok, report.table()
    out = converted["out"]
    for name, fmt in ALL.items():
        path = report.artifact(name)
        assert path == out / fmt.filename and path.is_file()
        sidecar = read_sidecar(path)  # checks name, shapes and sha256
        assert (sidecar.format, sidecar.runtime, sidecar.precision) == (name, fmt.runtime, fmt.precision)
        for companion, sha in sidecar.files.items():
            assert file_sha256(out / companion) == sha
        assert sidecar.validation is not None and sidecar.validation.passed is True
        expected_kind = {"fp32": "output_diff", "fp16": "output_diff"}.get(fmt.precision, ("detections", "sqnr"))
        if name == "tensorrt_calib":
            expected_kind = "graph_and_table"
        assert sidecar.validation.kind in (expected_kind if isinstance(expected_kind, tuple) else (expected_kind,)), name
        hint = sidecar.runtime_hints.inference_precision
        assert hint == ("f32" if fmt.runtime == "openvino" and fmt.precision in ("fp32", "fp16") else None), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging leftovers"
    # progress lines and the summary table
    n = len(ALL)
    assert any(f"[{n}/{n}] tensorrt_qdq: ok" in line for line in converted["log"])
    table = report.table()
    for header in ("format", "file", "size MB", "validation", "time s"):
        assert header in table.splitlines()[0]
    assert f"{n}/{n} formats valid" in table


def test_sidecars_record_real_tensor_names(converted):
    import openvino as ov

    from edge_app.backends.ort_backend import create_session
    from edge_app.backends.tflite_backend import make_interpreter

    out = converted["out"]
    for name in ("onnx_fp32", "onnx_fp16", "onnx_int8", "tensorrt_calib", "tensorrt_qdq"):
        sc = read_sidecar(out / FORMATS[name].filename)
        session = create_session(out / sc.artifact)
        assert [i.name for i in session.get_inputs()] == [sc.input_name] == ["images"]
        assert {o.name for o in session.get_outputs()} == {sc.outputs["loc"].name, sc.outputs["conf"].name} == {"loc", "conf"}
        assert session.get_inputs()[0].type == "tensor(float)"
    for name in ("openvino_fp32", "openvino_fp16", "openvino_int8"):
        sc = read_sidecar(out / FORMATS[name].filename)
        model = ov.Core().read_model(str(out / sc.artifact))
        assert model.inputs[0].get_any_name() == sc.input_name
        assert {o.get_any_name() for o in model.outputs} >= {sc.outputs["loc"].name, sc.outputs["conf"].name}
    for name in ("tflite_fp32", "tflite_int8"):
        sc = read_sidecar(out / FORMATS[name].filename)
        it, _ = make_interpreter(out / sc.artifact)
        (inp,) = it.get_input_details()
        assert inp["name"] == sc.input_name and list(inp["shape"]) == [1, 128, 128, 3] and sc.input.layout == "NHWC"
        details = {d["name"]: d for d in it.get_output_details()}
        for key, width in (("loc", 4), ("conf", len(LABELS) + 1)):
            d = details[sc.outputs[key].name]
            assert d["shape"][-1] == width
            if name == "tflite_int8" and key == "loc":
                assert np.dtype(d["dtype"]) == np.int8
                assert d["quantization"] == pytest.approx((sc.outputs[key].scale, sc.outputs[key].zero_point))
            elif name == "tflite_int8":  # the class logits stay float by default (convert.int8_default)
                assert np.dtype(d["dtype"]) == np.float32 and sc.outputs[key].dtype == "float32"
        if name == "tflite_int8":
            assert np.dtype(inp["dtype"]) == np.int8 and sc.input.dtype == "int8"
            assert inp["quantization"] == pytest.approx((sc.input.scale, sc.input.zero_point))


def test_fp_artifacts_match_pytorch_in_their_runtimes(converted, reference):
    _, frames, refs = reference
    out = converted["out"]
    limits = {"fp32": 1e-4, "fp16": 2e-2}
    for name in ("onnx_fp32", "onnx_fp16", "openvino_fp32", "openvino_fp16", "tflite_fp32", "tensorrt_calib"):
        outs = run_artifact(out / FORMATS[name].filename, frames)
        limit = limits["fp32" if name == "tensorrt_calib" else FORMATS[name].precision]
        for (loc, conf), (ref_loc, ref_conf) in zip(outs, refs, strict=True):
            scale = max(np.abs(ref_loc).max(), np.abs(ref_conf).max())
            assert np.abs(loc - ref_loc).max() / scale < limit, name
            assert np.abs(conf - ref_conf).max() / scale < limit, name


def test_int8_artifacts_agree_with_pytorch_detections(converted, reference):
    source, frames, refs = reference
    priors = default_boxes(source.spec)
    out = converted["out"]
    for name in ("onnx_int8", "openvino_int8", "tflite_int8", "tensorrt_qdq"):
        outs = run_artifact(out / FORMATS[name].filename, frames)
        matched = same = total_ref = total_out = 0
        for (loc, conf), (ref_loc, ref_conf) in zip(outs, refs, strict=True):
            ref = decode_and_nms(ref_loc, ref_conf, priors, score_threshold=0.3)[0]
            det = decode_and_nms(loc, conf, priors, score_threshold=0.3)[0]
            m, s, _ = match_detections(ref, det, 0.5)
            matched, same, total_ref, total_out = matched + m, same + s, total_ref + len(ref.scores), total_out + len(det.scores)
        assert total_ref >= 20, "the lively tiny model detects things"
        assert 2 * matched / (total_ref + total_out) > 0.6, name
        assert same / matched > 0.8, name


def test_int8_outputs_are_not_clipped(converted, reference):
    """Each head keeps its range: the dequantized outputs reach PyTorch's extremes."""
    _, frames, refs = reference
    out = converted["out"]
    ref_loc = np.concatenate([r[0] for r in refs])
    ref_conf = np.concatenate([r[1] for r in refs])
    for name in ("onnx_int8", "openvino_int8", "tflite_int8", "tensorrt_qdq"):
        outs = run_artifact(out / FORMATS[name].filename, frames)
        loc = np.concatenate([o[0] for o in outs])
        conf = np.concatenate([o[1] for o in outs])
        for got, ref in ((loc, ref_loc), (conf, ref_conf)):
            assert got.max() >= 0.9 * ref.max() and got.min() <= 0.9 * ref.min(), name


def test_int8_sidecars_record_calibration_and_quantization(converted):
    out, calib = converted["out"], converted["calib"]
    for fmt in ALL.values():
        sc = read_sidecar(out / fmt.filename)
        assert sc.checkpoint_sha256 == file_sha256(converted["ckpt"])
        if fmt.needs_calibration:
            assert sc.calibration_sha256 == calib.manifest_sha256
            assert sc.extra["quantization"]["calibration_images"] == len(calib)
        assert sc.tool_versions["numpy"] == np.__version__
    tfl = read_sidecar(out / "model_tflite_int8.tflite")
    assert (tfl.input.scale, tfl.input.zero_point) == (1.0, -128), "pixels map losslessly to int8"
    assert tfl.outputs["loc"].dtype == "int8" and tfl.outputs["loc"].scale > 0
    assert set(tfl.extra["signature"]["outputs"]) == {"loc", "conf"}


def test_tensorrt_table_sits_next_to_its_onnx_model(converted):
    from onnxruntime.quantization.CalTableFlatBuffers import TrtTable

    out = converted["out"]
    sc = read_sidecar(out / "model_tensorrt_calib.onnx")
    calib = sc.runtime_hints.tensorrt_calibration
    assert calib is not None and calib.native is False
    assert sc.runtime_hints.execution_provider == "TensorrtExecutionProvider"
    table = out / calib.table
    assert calib.table in sc.files and file_sha256(table) == sc.files[calib.table]
    buf = table.read_bytes()
    parsed = TrtTable.TrtTable.GetRootAsTrtTable(buf, 0)
    keys = {parsed.Dict(i).Key().decode() for i in range(parsed.DictLength())}
    assert {"images", "loc", "conf"} <= keys
    values = [float(parsed.Dict(i).Value()) for i in range(parsed.DictLength())]
    assert all(np.isfinite(values))


def test_sidecar_round_trip_and_tamper_detection(converted, tmp_path):
    src = converted["out"] / "model_onnx_int8.onnx"
    sc = read_sidecar(src)
    again = Sidecar.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert again == sc
    copy = tmp_path / src.name
    copy.write_bytes(src.read_bytes())
    sidecar_path(copy).write_text(sidecar_path(src).read_text())
    assert read_sidecar(copy) == sc
    copy.write_bytes(src.read_bytes() + b"\0")
    with pytest.raises(SidecarError, match="sha256"):
        read_sidecar(copy)


def test_reading_a_sidecar_and_running_an_artifact_need_no_torch(converted):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from ssd.sidecar import read_sidecar\n"
        "from convert.runner import run_artifact\n"
        "import numpy as np\n"
        f"out = {str(converted['out'])!r}\n"
        "for name in ('model_onnx_int8.onnx', 'model_tflite_int8.tflite', 'model_openvino_int8.xml'):\n"
        "    sc = read_sidecar(out + '/' + name)\n"
        "    ((loc, conf),) = run_artifact(out + '/' + name, [np.zeros((128, 128, 3), np.uint8)])\n"
        "    assert loc.shape == (1, sc.spec.num_priors, 4) and conf.dtype == np.float32\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


def test_convert_edge_and_compare_run_each_artifact_bit_identically(converted, reference):
    """What ssd-convert validated is what ssd-edge deploys and what ssd-compare measures:
    the same head outputs, bit for bit, for every format (OpenVINO FP16 IR included, which
    this CPU's plugin would otherwise run in bf16)."""
    from compare.predictors import ArtifactPredictor
    from edge_app.app import opened_backend
    from edge_app.cli import build_parser, options_from_args
    from edge_app.detector import Detector

    frame = reference[1][0]
    for name, fmt in ALL.items():
        path = converted["out"] / fmt.filename
        ((validated_loc, validated_conf),) = run_artifact(path, [frame], threads=1)
        # ssd-edge: its CLI's options, its backend (device AUTO), its detector's preprocessing
        options = options_from_args(build_parser().parse_args(["--model", str(path), "--source", "synthetic://",
                                                               "--threads", "1", "--output", "-"]))
        with opened_backend(options) as backend:
            edge_loc, edge_conf = backend.infer(Detector(backend, options.postprocess).preprocess(frame))
        predictor = ArtifactPredictor(path, threads=1)
        try:
            compare_loc, compare_conf = predictor.infer(preprocess(frame, predictor.input_spec))
            if fmt.runtime == "openvino" and fmt.precision != "int8":
                precision = str(predictor.backend.compiled.get_property("INFERENCE_PRECISION_HINT"))
                assert "float32" in precision, (name, precision)
        finally:
            predictor.close()
        for got in ((edge_loc, edge_conf), (compare_loc, compare_conf)):
            np.testing.assert_array_equal(got[0], validated_loc, err_msg=name)
            np.testing.assert_array_equal(got[1], validated_conf, err_msg=name)
