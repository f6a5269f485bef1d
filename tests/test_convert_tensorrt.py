"""The Jetson target without TensorRT: what can be proven about its two TensorRT artifacts here.

One ``ssd-convert --target jetson`` of the lively tiny model runs once for the module: the
QDQ artifact (explicit quantization) is validated under ONNX Runtime CPU against PyTorch and
checked statically against TensorRT's parser rules; the calibration-table artifact keeps its
table in both formats; the backend's TensorRT provider options are tested for both; the
README's Jetson commands name only what the target makes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from calibration.sets import load_calibration_set, write_calibration_set  # noqa: E402
from convert import ConvertOptions, export  # noqa: E402
from convert.formats import FORMATS
from convert.ort_quant import quantize_int8  # noqa: E402
from convert.runner import run_artifact  # noqa: E402
from convert.targets import TARGETS  # noqa: E402
from convert.tensorrt_check import TENSORRT_OPS, check_tensorrt_qdq  # noqa: E402
from convert.tensorrt_table import read_native_table, read_table, write_native_table  # noqa: E402
from convert.validate import match_detections  # noqa: E402
from edge_app.backends.ort_backend import (  # noqa: E402
    CPU,
    CUDA,
    TRT,
    engine_cache_dir,
    prepare_tensorrt_cache,
    select_providers,
)
from ssd.postprocess import decode_and_nms  # noqa: E402
from ssd.priors import default_boxes  # noqa: E402
from ssd.sidecar import file_sha256, read_sidecar, sidecar_path  # noqa: E402
from tests.lively import save_lively_checkpoint  # noqa: E402

from .test_convert import LABELS, _calibration_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


@pytest.fixture(scope="module")
def jetson(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jetson")
    images = _calibration_images(tmp, 16, 128)
    write_calibration_set(tmp / "calib", images, {"labels": LABELS, "seed": 0})
    ckpt = save_lively_checkpoint(tmp / "tiny.pt", "tiny", LABELS, images, seed=0, width=16)
    report = export(ckpt, "jetson", tmp / "artifacts", calib=tmp / "calib", options=ConvertOptions(validate_images=4),
                    log=lambda _line: None)
    assert report.ok, report.table()
    return {"out": tmp / "artifacts", "ckpt": ckpt, "calib": load_calibration_set(tmp / "calib"), "tmp": tmp}


def _qdq(jetson) -> Path:
    return jetson["out"] / FORMATS["tensorrt_qdq"].filename


def _mutated(jetson, tmp_path, edit) -> Path:
    """A copy of the QDQ graph with ``edit(model)`` applied."""
    model = onnx.load(str(_qdq(jetson)))
    edit(model)
    path = tmp_path / "mutated.onnx"
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------- the QDQ artifact


def test_jetson_target_makes_the_qdq_and_the_table_artifacts(jetson):
    assert TARGETS["jetson"] == ("onnx_fp32", "onnx_fp16", "tensorrt_calib", "tensorrt_qdq")
    sidecar = read_sidecar(_qdq(jetson))
    assert (sidecar.format, sidecar.precision, sidecar.runtime) == ("tensorrt_qdq", "int8", "onnxruntime")
    assert sidecar.runtime_hints.execution_provider == "TensorrtExecutionProvider"
    assert sidecar.runtime_hints.tensorrt_calibration is None, "a QDQ graph takes no table"
    # validated like every INT8 artifact: ORT CPU against PyTorch's detections
    assert sidecar.validation is not None and sidecar.validation.passed
    assert sidecar.validation.kind in ("detections", "sqnr") and "static check" in sidecar.validation.summary
    assert sidecar.calibration_sha256 == jetson["calib"].manifest_sha256
    q = sidecar.extra["quantization"]
    assert (q["activation_type"], q["weight_type"], q["symmetric"], q["per_channel"]) == ("int8", "int8", True, True)
    assert q["calibration_images"] == len(jetson["calib"])


def test_static_tensorrt_check_is_recorded_and_describes_the_file(jetson):
    recorded = read_sidecar(_qdq(jetson)).runtime_hints.tensorrt_check
    fresh = check_tensorrt_qdq(_qdq(jetson))
    assert recorded == fresh and fresh.passed and fresh.problems == []
    assert fresh.quantized_nodes == fresh.weighted_nodes == 19  # every conv of the tiny model runs in INT8
    assert fresh.activation_pairs >= fresh.quantized_nodes and fresh.weight_pairs == fresh.weighted_nodes
    assert fresh.opset <= 17 and set(fresh.ops) <= TENSORRT_OPS
    # the JSON carries it as a typed record
    data = json.loads(sidecar_path(_qdq(jetson)).read_text())
    assert data["runtime_hints"]["tensorrt_check"]["passed"] is True


def test_qdq_graph_is_symmetric_per_channel_and_only_on_weighted_op_inputs(jetson):
    """The same rules, read straight from the graph (independently of convert.tensorrt_check)."""
    graph = onnx.load(str(_qdq(jetson))).graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {o: n for n in graph.node for o in n.output}
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero = inits[node.input[2]]
        assert zero.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero).any(), node.name
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            assert {c.op_type for c in consumers[node.output[0]]} <= WEIGHTED | {"Add"}, node.name
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        data_dq, weight_dq = producer[conv.input[0]], producer[conv.input[1]]
        assert data_dq.op_type == weight_dq.op_type == "DequantizeLinear"
        weight_q = producer[weight_dq.input[0]]
        weight = numpy_helper.to_array(inits[weight_q.input[0]])
        scales = numpy_helper.to_array(inits[weight_q.input[1]])
        assert scales.shape == (weight.shape[0],), "one scale per output channel"
        assert np.abs(np.round(weight / scales.reshape(-1, 1, 1, 1))).max() <= 127
        assert numpy_helper.to_array(inits[producer[data_dq.input[0]].input[1]]).size == 1, "activations per tensor"
        if len(conv.input) > 2:
            assert conv.input[2] in inits, "biases stay float"


def test_qdq_artifact_detects_what_pytorch_detects_under_onnxruntime_cpu(jetson):
    from convert.source import load_source

    source = load_source(jetson["ckpt"])
    frames = list(jetson["calib"].frames_bgr(limit=4))
    refs = [source.reference(x) for x in jetson["calib"].batches(limit=4)]
    outs = run_artifact(_qdq(jetson), frames)
    priors = default_boxes(source.spec)
    matched = total_ref = total_out = 0
    for (loc, conf), (ref_loc, ref_conf) in zip(outs, refs, strict=True):
        ref = decode_and_nms(ref_loc, ref_conf, priors, score_threshold=0.3)[0]
        det = decode_and_nms(loc, conf, priors, score_threshold=0.3)[0]
        m, _, _ = match_detections(ref, det, 0.5)
        matched, total_ref, total_out = matched + m, total_ref + len(ref.scores), total_out + len(det.scores)
    assert total_ref >= 20
    assert 2 * matched / (total_ref + total_out) > 0.8


def _zero_point_one(model):
    zp = next(t for t in model.graph.initializer if t.name.endswith("_zero_point") and "weight" not in t.name)
    zp.CopyFrom(numpy_helper.from_array(np.array(1, np.int8), zp.name))


def _per_tensor_weights(model):
    for t in model.graph.initializer:
        if t.name.endswith("weight_scale"):
            arr = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(np.array(arr.max(), np.float32), t.name))
            zp = next(z for z in model.graph.initializer if z.name == t.name.replace("_scale", "_zero_point"))
            zp.CopyFrom(numpy_helper.from_array(np.array(0, np.int8), zp.name))
            return


def _qdq_before_transpose(model):
    graph = model.graph
    node = next(n for n in graph.node if n.op_type == "Transpose")
    x = node.input[0]
    graph.initializer.extend([numpy_helper.from_array(np.array(0.1, np.float32), "extra_scale"),
                              numpy_helper.from_array(np.array(0, np.int8), "extra_zp")])
    q = helper.make_node("QuantizeLinear", [x, "extra_scale", "extra_zp"], ["extra_q"], name="extra_Q")
    dq = helper.make_node("DequantizeLinear", ["extra_q", "extra_scale", "extra_zp"], ["extra_dq"], name="extra_DQ")
    node.input[0] = "extra_dq"
    index = list(graph.node).index(node)
    graph.node.insert(index, dq)
    graph.node.insert(index, q)


def _unsupported_op(model):
    node = next(n for n in model.graph.node if n.op_type == "Relu")
    node.op_type = "Mish"


def _opset_18(model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 18


@pytest.mark.parametrize("edit, message", [
    (_zero_point_one, "is not 0"),
    (_per_tensor_weights, "per output channel"),
    (_qdq_before_transpose, "feeds Transpose"),
    (_unsupported_op, "Mish"),
    (_opset_18, "opset 18"),
])
def test_static_check_catches_what_tensorrt_would_refuse(jetson, tmp_path, edit, message):
    check = check_tensorrt_qdq(_mutated(jetson, tmp_path, edit))
    assert not check.passed and any(message in p for p in check.problems), check.problems


def test_onnx_runtime_int8_artifact_fails_the_tensorrt_check(jetson, tmp_path):
    """ORT's CPU INT8 (uint8 activations, Q/DQ after every op) is not a TensorRT graph."""
    dst = tmp_path / "ort_int8.onnx"
    quantize_int8(jetson["out"] / "model_onnx_fp32.onnx", dst, jetson["calib"].inputs[:4], tmp_path, activation_type="uint8")
    check = check_tensorrt_qdq(dst)
    assert not check.passed
    assert any("not int8" in p for p in check.problems) and any("is not 0" in p for p in check.problems)


# ---------------------------------------------------------------- the calibration-table artifact


def test_tensorrt_native_table_carries_the_flatbuffers_ranges(jetson, tmp_path):
    out = jetson["out"]
    sidecar = read_sidecar(out / "model_tensorrt_calib.onnx")
    native = out / "model_tensorrt_calib.calibration.trt"
    assert native.name in sidecar.files and file_sha256(native) == sidecar.files[native.name]
    assert native.read_text().splitlines()[0] == "TRT-8601-EntropyCalibration2"
    flat, trt = read_table(out / sidecar.runtime_hints.tensorrt_calibration.table), read_native_table(native)
    assert set(flat) == set(trt) and {"images", "loc", "conf"} <= set(trt)
    for name, value in flat.items():
        assert trt[name] == pytest.approx(value, rel=1e-6), name
    # literal: range 127 is scale 1.0 = 0x3f800000
    path = write_native_table({"x": 127.0, "y": 254.0}, tmp_path / "t.trt")
    assert path.read_text().splitlines()[1:] == ["x: 3f800000", "y: 40000000"]


# ---------------------------------------------------------------- what the backend passes to TensorRT


def test_tensorrt_provider_options_for_both_artifacts(jetson, tmp_path):
    out = jetson["out"]
    qdq, calib = _qdq(jetson), out / "model_tensorrt_calib.onnx"
    everything = [TRT, CUDA, CPU]
    q_side, c_side = read_sidecar(qdq), read_sidecar(calib)

    (name, q_opts), *rest = select_providers(everything, "TENSORRT", q_side, qdq)
    assert name == TRT and [p for p, _ in rest] == [CPU]
    assert q_opts["trt_int8_enable"] and q_opts["trt_fp16_enable"] and q_opts["trt_engine_cache_enable"]
    assert "trt_int8_calibration_table_name" not in q_opts, "TensorRT refuses a table for a QDQ graph"
    assert Path(q_opts["trt_engine_cache_path"]) == out / "trt_cache" / f"model_tensorrt_qdq-{q_side.artifact_sha256[:16]}"

    (_, c_opts), *_ = select_providers(everything, "TENSORRT", c_side, calib)
    table = c_side.runtime_hints.tensorrt_calibration.table
    assert c_opts["trt_int8_enable"] and c_opts["trt_int8_calibration_table_name"] == table
    assert c_opts["trt_int8_use_native_calibration_table"] is False
    c_cache = Path(c_opts["trt_engine_cache_path"])
    assert c_cache.parent == out / "trt_cache" and c_cache != Path(q_opts["trt_engine_cache_path"])

    # --cache-dir moves the folders, the keys stay
    (_, moved), *_ = select_providers(everything, "AUTO", q_side, qdq, cache_dir=str(tmp_path / "engines"))
    assert Path(moved["trt_engine_cache_path"]) == tmp_path / "engines" / "trt_cache" / Path(q_opts["trt_engine_cache_path"]).name

    # the table is resolvable relative to trt_engine_cache_path once the backend prepared it
    prepare_tensorrt_cache([(TRT, c_opts)], c_side, calib)
    assert file_sha256(c_cache / table) == c_side.files[table]


def test_a_reexported_model_never_reuses_an_old_engine_folder(jetson, tmp_path):
    """Same file name, same tensor names (what ONNX Runtime keys engines by), new weights or a
    new table: a new cache folder."""
    out = jetson["out"]
    copy = tmp_path / "model_tensorrt_qdq.onnx"
    shutil.copy(_qdq(jetson), copy)
    shutil.copy(sidecar_path(_qdq(jetson)), sidecar_path(copy))
    before = engine_cache_dir(read_sidecar(copy), copy)
    model = onnx.load(str(copy))
    scale = next(t for t in model.graph.initializer if t.name.endswith("weight_scale"))
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(1.01), scale.name))
    onnx.save(model, str(copy))
    data = json.loads(sidecar_path(copy).read_text())
    data["artifact_sha256"] = file_sha256(copy)
    sidecar_path(copy).write_text(json.dumps(data))
    after = engine_cache_dir(read_sidecar(copy), copy)
    assert after != before and after.parent == before.parent

    side = read_sidecar(out / "model_tensorrt_calib.onnx")
    import dataclasses

    new_table = dataclasses.replace(side, files={**side.files, side.runtime_hints.tensorrt_calibration.table: "0" * 64})
    assert engine_cache_dir(new_table, out / "model_tensorrt_calib.onnx") != engine_cache_dir(side, out / "model_tensorrt_calib.onnx")


# ---------------------------------------------------------------- README


def _jetson_section() -> str:
    return (ROOT / "docs" / "jetson.md").read_text()


def test_readme_jetson_commands_name_only_what_the_jetson_target_makes():
    section = _jetson_section()
    made = {FORMATS[name].filename for name in TARGETS["jetson"]}
    named = set(re.findall(r"model_\w+\.onnx", section))
    assert named, "the Jetson section names its artifacts"
    assert named <= made, f"README's Jetson section names {sorted(named - made)}, which --target jetson does not make"
    assert {"model_tensorrt_qdq.onnx", "model_tensorrt_calib.onnx"} <= named
    # the trtexec lines: QDQ without a table, the FP32 graph with the TensorRT-format table
    trtexec = [line for line in section.splitlines() if "trtexec" in line and "--onnx=" in line]
    assert any("model_tensorrt_qdq.onnx" in line and "--int8" in line and "--calib" not in line for line in trtexec)
    assert any("model_tensorrt_calib.onnx" in line and "--calib=model_tensorrt_calib.calibration.trt" in line for line in trtexec)
    assert "--target jetson" in section
