"""Each backend runs a tiny artifact on a synthetic video and agrees with PyTorch + ssd.decode_and_nms.

FP32 artifacts must give the same detections within float tolerance; INT8 artifacts must
find the same objects (same class, IoU >= 0.5) for most detections.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_app.app import RunOptions, run
from edge_app.backends import BackendOptions, open_backend
from edge_app.backends.base import match_outputs
from edge_app.backends.ort_backend import (
    CPU,
    CUDA,
    TRT,
    engine_cache_dir,
    prepare_tensorrt_cache,
    select_providers,
)
from edge_app.backends.tflite_backend import TFLiteBackend, make_interpreter
from edge_app.detector import Detector
from edge_app.errors import BackendError
from edge_app.outputs.jsonl import SCHEMA_KEYS
from ssd.box_coding import pairwise_iou
from ssd.postprocess import LIVE
from ssd.preprocess import InputSpec, preprocess
from ssd.sidecar import OutputSpec, SidecarError, file_sha256, read_sidecar, sidecar_path
from tests import edge_artifacts as ea

FP32 = ["onnx_fp32", "openvino_fp32", "tflite_fp32"]
INT8 = ["onnx_int8", "openvino_int8", "tflite_int8"]


@pytest.fixture(scope="module")
def arts() -> ea.Artifacts:
    return ea.get_artifacts()


@pytest.fixture(scope="module")
def reference(arts):
    """The video's frames as OpenCV decodes them, and PyTorch's detections on them."""
    frames = ea.read_video(arts.video)
    return frames, ea.reference_detections(ea.get_model(), frames, max_detections=100)


def run_app(artifact, video, tmp_path, score: float = ea.SCORE) -> list[dict]:
    out = tmp_path / "dets.jsonl"
    result = run(RunOptions(model=artifact, source=str(video), outputs=(str(out),), backend=BackendOptions(threads=1),
                            postprocess=LIVE._replace(score_threshold=score)))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.frames == len(records) and result.dropped == 0 and result.ended_by == "end"
    return records


def check_schema(record: dict, score: float = ea.SCORE) -> None:
    assert tuple(record) == SCHEMA_KEYS
    assert isinstance(record["frame"], int) and isinstance(record["timestamp"], float)
    assert record["pts"] is None or isinstance(record["pts"], float)
    w, h = record["width"], record["height"]
    boxes = np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4)
    k = len(boxes)
    assert len(record["labels"]) == len(record["class_ids"]) == len(record["scores"]) == k
    assert all(isinstance(x, str) for x in record["labels"])
    assert [ea.LABELS[c - 1] for c in record["class_ids"]] == record["labels"]
    scores = np.asarray(record["scores"])
    assert np.all(scores > score - 1e-4) and np.all(scores <= 1.0) and np.all(np.diff(scores) <= 0)
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= w) and np.all(boxes[:, [1, 3]] <= h)
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])


def assert_same_detections(got_boxes, got_labels, got_scores, boxes, labels, scores, box_tol=0.02, score_tol=2e-4):
    """One-to-one: every expected detection has a detection of the same class with the same box and
    score within tolerance, and nothing else was found (the order of near-tied scores may differ)."""
    got_boxes = np.asarray(got_boxes, np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    assert len(got_boxes) == len(boxes), (len(got_boxes), len(boxes))
    close = (
        (np.abs(got_boxes[:, None, :] - boxes[None, :, :]).max(axis=2) <= box_tol)
        & (np.asarray(got_labels)[:, None] == np.asarray(labels)[None, :])
        & (np.abs(np.asarray(got_scores)[:, None] - np.asarray(scores)[None, :]) <= score_tol)
    )
    taken = np.zeros(len(boxes), bool)
    for row in close:
        free = np.flatnonzero(row & ~taken)
        assert free.size, "a detection has no counterpart"
        taken[free[0]] = True


@pytest.mark.parametrize("name", FP32)
def test_fp32_backend_on_a_video_matches_pytorch(name, arts, reference, tmp_path):
    frames, ref = reference
    records = run_app(arts.all()[name], arts.video, tmp_path)
    assert [r["frame"] for r in records] == list(range(len(frames)))
    total = 0
    for record, dets, frame in zip(records, ref, frames, strict=True):
        check_schema(record)
        h, w = frame.shape[:2]
        assert (record["width"], record["height"]) == (w, h)
        assert_same_detections(record["boxes"], record["class_ids"], record["scores"],
                               dets.boxes * [w, h, w, h], dets.labels, dets.scores)
        np.testing.assert_allclose(record["scores"], dets.scores, atol=2e-4)  # both sorted by score
        total += len(dets.scores)
    assert total >= len(frames)  # the comparison is not vacuous


def _matched(boxes_a, labels_a, boxes_b, labels_b, threshold=0.5) -> int:
    """Greedy one-to-one matches of a against b with the same label and IoU >= threshold."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return 0
    iou = pairwise_iou(np.asarray(boxes_a, np.float32), np.asarray(boxes_b, np.float32))
    iou[np.asarray(labels_a)[:, None] != np.asarray(labels_b)[None, :]] = 0.0
    taken = np.zeros(iou.shape[1], bool)
    count = 0
    for row in iou:
        row = np.where(taken, 0.0, row)
        j = int(np.argmax(row))
        if row[j] >= threshold:
            taken[j] = True
            count += 1
    return count


@pytest.mark.parametrize("name", INT8)
def test_int8_backend_on_a_video_matches_pytorch_by_iou(name, arts, reference, tmp_path):
    """Same objects, with hysteresis so that scores wobbling across one threshold do not count:
    confident (> 0.6) PyTorch detections must be found among the INT8 ones above 0.4, and
    confident INT8 detections among PyTorch's above 0.4."""
    frames, _ = reference
    low, high = 0.4, 0.6
    ref = ea.reference_detections(ea.get_model(), frames, score=low, max_detections=100)
    records = run_app(arts.all()[name], arts.video, tmp_path, score=low)
    assert len(records) == len(frames)
    found = confident_ref = kept = confident_got = 0
    for record, dets, frame in zip(records, ref, frames, strict=True):
        check_schema(record, low)
        h, w = frame.shape[:2]
        ref_boxes = dets.boxes * [w, h, w, h]
        got_boxes = np.reshape(record["boxes"], (-1, 4))
        got_labels, got_scores = np.asarray(record["class_ids"]), np.asarray(record["scores"])
        sure_ref, sure_got = dets.scores > high, got_scores > high
        found += _matched(ref_boxes[sure_ref], dets.labels[sure_ref], got_boxes, got_labels)
        kept += _matched(got_boxes[sure_got], got_labels[sure_got], ref_boxes, dets.labels)
        confident_ref += int(sure_ref.sum())
        confident_got += int(sure_got.sum())
    # not vacuous: confident reference objects in at least half the frames
    assert confident_ref >= len(frames) // 2 and confident_got > 0
    recall, precision = found / confident_ref, kept / confident_got
    assert recall >= 0.7 and precision >= 0.7, (recall, precision)


@pytest.mark.parametrize("name", FP32 + INT8)
def test_backend_infer_gives_float32_heads_close_to_pytorch(name, arts, reference):
    import torch

    frames, _ = reference
    model = ea.get_model()
    with open_backend(arts.all()[name], threads=1) as backend:
        batch = preprocess(frames[3], backend.input_spec)
        loc, conf = backend.infer(batch)
    with torch.no_grad():
        ref_loc, ref_conf = (t.numpy() for t in model(torch.from_numpy(preprocess(frames[3], InputSpec(128, 128)))))
    assert loc.dtype == conf.dtype == np.float32
    assert loc.shape == ref_loc.shape and conf.shape == ref_conf.shape
    if name in FP32:
        np.testing.assert_allclose(loc, ref_loc, atol=1e-3)
        np.testing.assert_allclose(conf, ref_conf, atol=1e-3)
    else:  # quantization error stays a small fraction of the signal
        assert np.abs(conf - ref_conf).mean() < 0.2 * ref_conf.std()
        assert np.abs(loc - ref_loc).mean() < 0.2 * ref_loc.std()


def test_detector_api_runs_one_frame(arts, reference):
    frames, ref = reference
    with open_backend(arts.onnx_fp32, threads=1) as backend:
        dets = Detector(backend).detect(frames[5])
    np.testing.assert_array_equal(dets.labels, ref[5].labels)
    np.testing.assert_allclose(dets.boxes, ref[5].boxes, atol=1e-5)


def test_openvino_async_queue_matches_sync(arts, reference):
    frames, _ = reference
    with open_backend(arts.openvino_fp32, threads=1, hint="THROUGHPUT", num_requests=3) as backend:
        batches = [preprocess(f, backend.input_spec) for f in frames[:6]]
        futures = [backend.submit(b) for b in batches]
        results = [f.result(timeout=60) for f in futures]
        for batch, result in zip(batches, results, strict=True):
            loc, conf = backend.infer(batch)
            np.testing.assert_allclose(result.loc, loc, atol=1e-6)
            np.testing.assert_allclose(result.conf, conf, atol=1e-6)
            assert result.seconds > 0


@pytest.mark.parametrize("device", ["AUTO", "CPU"])
def test_openvino_thread_count_reaches_the_cpu_under_auto(arts, monkeypatch, device):
    """``--threads`` is a CPU device property: with the default AUTO device it must still apply."""
    import openvino as ov

    calls: list[tuple[str, dict]] = []

    class RecordingCore(ov.Core):
        def set_property(self, *args):
            if len(args) == 2:
                calls.append((args[0], dict(args[1])))
            return super().set_property(*args)

    monkeypatch.setattr(ov, "Core", RecordingCore)
    with open_backend(arts.openvino_fp32, threads=1, device=device) as backend:
        assert backend.compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
        if device == "CPU":
            assert int(backend.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    cpu = {k: v for name, props in calls if name == "CPU" for k, v in props.items()}
    assert cpu.get("INFERENCE_NUM_THREADS") == "1" and cpu.get("INFERENCE_PRECISION_HINT") == "f32"


def test_tflite_int8_outputs_use_the_models_own_quantization(arts):
    with open_backend(arts.tflite_int8) as backend:
        details = {d["index"]: d for d in backend.interpreter.get_output_details()}
        for (scale, zero_point), index in zip(backend._quant, backend._output_index, strict=True):
            assert details[index]["dtype"] == np.int8
            assert (scale, zero_point) == details[index]["quantization"]


def test_interpreter_package_can_be_pinned(arts):
    """The Pi check compares two interpreter packages through the one loader; an unknown one is refused."""
    interp, module_name = make_interpreter(arts.tflite_int8, threads=1, package="ai_edge_litert")
    assert module_name == "ai_edge_litert.interpreter"
    interp.allocate_tensors()
    with pytest.raises(BackendError, match="unknown TFLite interpreter package 'tflite'"):
        make_interpreter(arts.tflite_int8, package="tflite")


# ---------------------------------------------------------------- faults: model and sidecar


def _copy_artifact(src, folder):
    dst = folder / src.name
    shutil.copy(src, dst)
    shutil.copy(sidecar_path(src), sidecar_path(dst))
    if src.suffix == ".xml":
        shutil.copy(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    return dst


def _edit_sidecar(path, **changes):
    side = sidecar_path(path)
    data = json.loads(side.read_text())
    for key, value in changes.items():
        target = data
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    side.write_text(json.dumps(data))


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(SidecarError, match="does not exist"):
        open_backend(tmp_path / "nope.onnx")


def test_model_without_sidecar(arts, tmp_path):
    dst = tmp_path / arts.onnx_fp32.name
    shutil.copy(arts.onnx_fp32, dst)
    with pytest.raises(SidecarError, match="no sidecar"):
        open_backend(dst)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    with pytest.raises(BackendError, match=".onnx, .xml"):
        open_backend(path)


@pytest.mark.parametrize("name", ["onnx_fp32", "openvino_fp32", "tflite_fp32"])
def test_sidecar_whose_input_does_not_match_the_model(name, arts, tmp_path):
    dst = _copy_artifact(arts.all()[name], tmp_path)
    _edit_sidecar(dst, input__height=300, input__width=300)
    with pytest.raises(SidecarError, match="does not match the model's input"):
        open_backend(dst)


@pytest.mark.parametrize("name", ["onnx_fp32", "openvino_fp32", "tflite_fp32"])
def test_sidecar_naming_outputs_the_model_lacks(name, arts, tmp_path):
    dst = _copy_artifact(arts.all()[name], tmp_path)
    _edit_sidecar(dst, outputs__loc__name="boxes")  # loc and conf have the same shape here: no fallback
    with pytest.raises(SidecarError, match="boxes"):
        open_backend(dst)


def test_sidecar_for_another_runtime(arts, tmp_path):
    dst = _copy_artifact(arts.onnx_fp32, tmp_path)
    _edit_sidecar(dst, runtime="openvino")
    with pytest.raises(SidecarError, match="runtime 'openvino'"):
        open_backend(dst)


def test_changed_model_file_is_refused(arts, tmp_path):
    dst = _copy_artifact(arts.onnx_fp32, tmp_path)
    dst.write_bytes(dst.read_bytes() + b"\0")
    with pytest.raises(SidecarError, match="sha256"):
        open_backend(dst)


# ---------------------------------------------------------------- pieces, without a runtime


def test_outputs_fall_back_to_shape_when_names_differ(arts):
    sidecar = read_sidecar(arts.onnx_fp32)
    side = type(sidecar)(**{**sidecar.__dict__, "outputs": {
        "loc": OutputSpec("loc", (1, 10, 4)), "conf": OutputSpec("conf", (1, 10, 6))}})
    found = match_outputs(side, [("Identity_1", (1, 10, 6)), ("Identity", (1, 10, 4))], arts.onnx_fp32)
    assert found == {"loc": 1, "conf": 0}
    with pytest.raises(SidecarError, match="does not pick one out"):
        match_outputs(side, [("a", (1, 10, 4)), ("b", (1, 10, 4))], arts.onnx_fp32)
    with pytest.raises(SidecarError, match="should be"):
        match_outputs(side, [("loc", (1, 12, 4)), ("conf", (1, 10, 6))], arts.onnx_fp32)


def test_onnxruntime_provider_order_and_tensorrt_int8_options(arts, tmp_path):
    dst = _copy_artifact(arts.onnx_int8, tmp_path)
    (tmp_path / "calib.table").write_text("TRT-table")
    _edit_sidecar(dst, runtime_hints={"tensorrt_calibration": {"table": "calib.table", "native": True},
                                      "provider_options": {"trt_max_workspace_size": 1 << 30, "trt_engine_cache_path": "/tmp"}},
                  files={"calib.table": file_sha256(tmp_path / "calib.table")})
    sidecar = read_sidecar(dst)
    everything = [TRT, CUDA, CPU]
    providers = select_providers(everything, "AUTO", sidecar, dst)
    assert [p for p, _ in providers] == [TRT, CUDA, CPU]
    trt = providers[0][1]
    assert trt["trt_int8_enable"] and trt["trt_int8_calibration_table_name"] == "calib.table"
    assert trt["trt_int8_use_native_calibration_table"] is True
    # the sidecar's provider options are added, never over what the backend derives
    assert trt["trt_max_workspace_size"] == 1 << 30
    # the engine cache: a folder per artifact + table content, beside the artifact
    cache = Path(trt["trt_engine_cache_path"])
    assert trt["trt_engine_cache_enable"] and cache == engine_cache_dir(sidecar, dst) and cache.parent == tmp_path / "trt_cache"
    assert not cache.exists(), "select_providers writes nothing"
    assert [p for p, _ in select_providers([CUDA, CPU], "AUTO", sidecar, dst)] == [CUDA, CPU]
    assert [p for p, _ in select_providers(everything, "CPU", sidecar, dst)] == [CPU]
    assert [p for p, _ in select_providers([CPU], "AUTO", sidecar, dst)] == [CPU]
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        select_providers([CPU], "TENSORRT", sidecar, dst)
    # ORT reads the table from the cache folder: the backend puts the checked table there
    prepare_tensorrt_cache(providers, sidecar, dst)
    assert (cache / "calib.table").read_text() == "TRT-table"
    (tmp_path / "calib.table").unlink()
    with pytest.raises(SidecarError, match="calib.table"):
        prepare_tensorrt_cache(providers, sidecar, dst)


def test_tensorrt_refuses_a_qdq_graph_it_cannot_import(arts):
    """onnx_int8 has asymmetric uint8 activations and no TensorRT check: TENSORRT says what to run
    instead, AUTO goes to CUDA."""
    sidecar = read_sidecar(arts.onnx_int8)
    assert sidecar.runtime_hints.tensorrt_check is None
    with pytest.raises(BackendError, match="model_tensorrt_qdq.onnx"):
        select_providers([TRT, CUDA, CPU], "TENSORRT", sidecar, arts.onnx_int8)
    assert [p for p, _ in select_providers([TRT, CUDA, CPU], "AUTO", sidecar, arts.onnx_int8)] == [CUDA, CPU]


def test_fp32_artifact_gets_no_int8_tensorrt_options(arts):
    providers = select_providers([TRT, CPU], "AUTO", read_sidecar(arts.onnx_fp32), arts.onnx_fp32)
    assert "trt_int8_enable" not in providers[0][1] and not providers[0][1]["trt_fp16_enable"]


class _StubTFLiteRuntime:
    """A full-integer model's interface: int8 input and outputs with their own quantization."""

    def __init__(self, loc_shape, conf_shape):
        self.loc_shape, self.conf_shape = loc_shape, conf_shape
        self.fed = None

    def allocate_tensors(self):
        pass

    def get_input_details(self):
        return [{"name": "serving_default_args_0", "index": 0, "shape": np.array([1, 128, 128, 3]), "dtype": np.int8,
                 "quantization": (0.5, -10), "quantization_parameters": {"scales": np.array([0.5])}}]

    def get_output_details(self):  # conf first: TFLite may reorder outputs
        return [
            {"name": "StatefulPartitionedCall:1", "index": 8, "shape": np.array(self.conf_shape), "dtype": np.int8,
             "quantization": (0.25, 3), "quantization_parameters": {"scales": np.array([0.25])}},
            {"name": "StatefulPartitionedCall:0", "index": 7, "shape": np.array(self.loc_shape), "dtype": np.int8,
             "quantization": (0.125, -1), "quantization_parameters": {"scales": np.array([0.125])}},
        ]

    def get_signature_list(self):
        return {"serving_default": {"outputs": ["output_0", "output_1"]}}

    def get_signature_runner(self, key):
        details = {d["name"]: d for d in self.get_output_details()}
        runner = type("Runner", (), {})()
        runner.get_output_details = lambda: {"output_0": details["StatefulPartitionedCall:0"],
                                             "output_1": details["StatefulPartitionedCall:1"]}
        return runner

    def set_tensor(self, index, value):
        assert index == 0
        self.fed = value

    def invoke(self):
        pass

    def get_tensor(self, index):
        shape = self.loc_shape if index == 7 else self.conf_shape
        return np.full(shape, 7 if index == 7 else 11, np.int8)


def test_tflite_int8_input_and_outputs_use_the_models_quantization(arts):
    sidecar = read_sidecar(arts.tflite_int8)
    p = sidecar.spec.num_priors
    spec = InputSpec(128, 128, layout="NHWC", dtype="int8", scale=0.9, zero_point=0)  # stale sidecar values
    sidecar = type(sidecar)(**{**sidecar.__dict__, "input": spec, "outputs": {
        "loc": OutputSpec("output_0", (1, p, 4), "int8"), "conf": OutputSpec("output_1", (1, p, 4), "int8")}})
    fake = _StubTFLiteRuntime((1, p, 4), (1, p, 4))
    backend = TFLiteBackend(arts.tflite_int8, sidecar, BackendOptions(), interpreter=fake)
    assert (backend.input_spec.scale, backend.input_spec.zero_point) == (0.5, -10)  # the model's, not the sidecar's
    frame = np.full((60, 80, 3), 100, np.uint8)
    loc, conf = backend.infer(preprocess(frame, backend.input_spec))
    assert fake.fed.dtype == np.int8 and np.all(fake.fed == 127)  # 100 / 0.5 - 10 = 190 -> clipped to 127
    assert loc.dtype == conf.dtype == np.float32
    np.testing.assert_allclose(loc, 0.125 * (7 + 1))  # loc is found by signature key although listed second
    np.testing.assert_allclose(conf, 0.25 * (11 - 3))


def test_dynamic_batch_artifacts_run_at_the_sidecars_shape(arts, reference):
    """An ONNX/IR exported with a dynamic batch axis runs (OpenVINO reshapes it to the static sidecar shape)."""
    import openvino as ov

    frames, ref = reference
    assert ov.Core().read_model(str(arts.openvino_dynamic)).input(0).get_partial_shape().is_dynamic
    for path in (arts.onnx_dynamic, arts.openvino_dynamic):
        with open_backend(path, threads=1) as backend:
            dets = Detector(backend).detect(frames[1])
        np.testing.assert_array_equal(dets.labels, ref[1].labels)
        np.testing.assert_allclose(dets.boxes, ref[1].boxes, atol=1e-4)
