"""End-to-end artifacts (decode + NMS in the graph) and the identity every model file carries.

One module fixture converts a tiny checkpoint into the raw formats and every ``*_e2e`` format,
and a second checkpoint into one float format per runtime (the "other checkpoint"). The tests
re-open each artifact through the edge app's backends, the comparison and ``ssd-edge``, read
the identity back with each format's own tools, refuse forged sidecars per runtime, and run the
real consumers (MediaPipe's ObjectDetector, Intel's OpenVINO Model API) in their own virtual
environments (``make reference-mediapipe reference-model-api``, prerequisites of ``make test``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("litert_torch")

from convert import ConvertOptions, export  # noqa: E402
from convert.endtoend.check import compare_detections  # noqa: E402
from convert.targets import TARGETS  # noqa: E402
from edge_app.backends import open_backend  # noqa: E402
from edge_app.detector import Detector  # noqa: E402
from ssd.identity import ModelIdentity, identity_of  # noqa: E402
from ssd.postprocess import LIVE, Detections  # noqa: E402
from ssd.sidecar import SidecarError, file_sha256, read_sidecar, sidecar_path, write_sidecar  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
E2E = TARGETS["e2e"]
RAW = ("onnx_fp32", "onnx_int8", "openvino_fp32", "openvino_int8", "tflite_fp32", "tflite_int8")
OPS = {"onnx": "NonMaxSuppression", "openvino": "DetectionOutput", "tflite": "TFLite_Detection_PostProcess",
       "tensorrt": "EfficientNMS_TRT"}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}


def _checkpoint(root: Path, name: str, seed: int, classes: list[str]) -> Path:
    import torch

    from ssd import TINY
    from tests.lively import lively_model
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    torch.manual_seed(seed)
    model = build_model("tiny", len(classes) + 1, width=8)
    frames = np.random.default_rng(seed).integers(0, 256, (4, 3, 128, 128)).astype(np.float32)
    lively_model(model, [frames])
    path = root / name
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8},
                     "spec": TINY.to_dict(), "labels": list(classes)}, path)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from calibration.cli import main as calibrate_main
    from train.synth import CLASSES, SynthConfig, generate

    root = tmp_path_factory.mktemp("e2e")
    data = generate(root / "data", SynthConfig(num_train=24, num_val=10, size=128, seed=3))
    ckpt = _checkpoint(root, "a.pt", 0, list(CLASSES))
    other = _checkpoint(root, "b.pt", 1, list(CLASSES))
    calib = root / "calib"
    assert calibrate_main(["--data", str(data), "--split", "train", "--num", "16", "--holdout", "4",
                           "--checkpoint", str(ckpt), "--out", str(calib)]) == 0
    options = ConvertOptions(validate_images=6)
    report = export(ckpt, [*RAW, *E2E], root / "a", calib=calib, options=options, log=lambda _: None)
    other_report = export(other, ["onnx_fp32", "openvino_fp32", "tflite_fp32"], root / "b", calib=calib,
                          options=options, log=lambda _: None)
    return {"root": root, "data": data, "ckpt": ckpt, "calib": calib, "report": report, "a": root / "a",
            "b": root / "b", "other_report": other_report}


def _frames(converted, n: int = 6) -> list[np.ndarray]:
    from calibration.sets import load_calibration_set

    return list(load_calibration_set(converted["calib"]).frames_bgr(limit=n))


def _path(folder: Path, fmt: str) -> Path:
    runtime = fmt.split("_")[0]
    return folder / f"model_{fmt}{SUFFIX.get(runtime, '.onnx')}"


def _detect(path: Path, frames: list[np.ndarray]) -> list[Detections]:
    with open_backend(path, device="CPU", threads=1) as backend:
        detector = Detector(backend, LIVE)
        return [detector.detect(f) for f in frames]


# ---------------------------------------------------------------- the artifacts


def test_every_end_to_end_format_converts_and_matches_the_apps_decode_and_nms(converted):
    report = converted["report"]
    assert report.ok, report.table()
    for fmt in E2E:
        sidecar = read_sidecar(report.artifact(fmt))
        post = sidecar.postprocess
        assert post is not None and post.op == OPS[fmt.split("_")[0]]
        assert (post.score_threshold, post.iou_threshold, post.max_detections) == (
            LIVE.score_threshold, LIVE.iou_threshold, LIVE.max_detections)
        assert set(sidecar.outputs) == set(post.output_keys)
        v = sidecar.validation
        assert v is not None and v.kind == "end_to_end" and v.passed
        if fmt != "tensorrt_qdq_e2e":
            assert v.metrics["unexplained"] == 0 and v.metrics["matched"] > 10
            assert v.metrics["max_score_diff"] <= v.metrics["score_step"] + 1e-6
        else:
            assert v.metrics["decode_box_diff"] <= 1e-4 and v.metrics["decode_score_diff"] <= 1e-4


@pytest.mark.parametrize("fmt", [f for f in E2E if f != "tensorrt_qdq_e2e"])
def test_ssd_edge_detector_gives_the_raw_twins_detections(converted, fmt):
    """The edge app's Detector on the end-to-end artifact against the installed raw-head artifact of
    the same format through the app's own decode + NMS (LIVE), on the same frames."""
    frames = _frames(converted)
    e2e = _detect(converted["report"].artifact(fmt), frames)
    raw = _detect(converted["report"].artifact(fmt.removesuffix("_e2e")), frames)
    ok, metrics, text = compare_detections(raw, e2e, LIVE.score_threshold, LIVE.iou_threshold,
                                           1 / 256 if fmt == "tflite_int8_e2e" else 1e-4)
    assert ok, text
    assert metrics["matched"] >= 0.9 * metrics["reference_detections"] > 0


def test_ssd_edge_cli_runs_an_end_to_end_artifact_as_its_raw_twin(converted, tmp_path):
    from edge_app.cli import main

    rows = {}
    for fmt in ("openvino_int8", "openvino_int8_e2e"):
        out = tmp_path / f"{fmt}.jsonl"
        code = main(["--model", str(converted["report"].artifact(fmt)), "--source",
                     "synthetic://?width=128&height=128&objects=6&frames=8", "--output", str(out), "--every-frame",
                     "--threads", "1"])
        assert code == 0
        rows[fmt] = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    raw, e2e = rows["openvino_int8"], rows["openvino_int8_e2e"]
    assert len(raw) == len(e2e) == 8 and sum(len(r["scores"]) for r in raw) > 0
    for a, b in zip(raw, e2e, strict=True):
        assert a["labels"] == b["labels"] and np.allclose(a["scores"], b["scores"], atol=2e-4)
        assert np.allclose(a["boxes"], b["boxes"], atol=0.02)


def test_ssd_compare_shows_end_to_end_rows_beside_the_raw_ones(converted, tmp_path):
    from compare.cli import main as compare_main

    folder = tmp_path / "arts"
    folder.mkdir()
    for fmt in ("onnx_int8", "onnx_int8_e2e", "openvino_fp32_e2e", "tflite_int8_e2e"):
        path = converted["report"].artifact(fmt)
        for f in [path, sidecar_path(path), *( [path.with_suffix(".bin")] if path.suffix == ".xml" else [])]:
            shutil.copy(f, folder / f.name)
    out = tmp_path / "report"
    assert compare_main(["--checkpoint", str(converted["ckpt"]), "--artifacts", str(folder), "--data",
                         str(converted["data"]), "--split", "val", "--out", str(out), "--threads", "1"]) == 0
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert {"onnx_int8", "onnx_int8_e2e", "openvino_fp32_e2e", "tflite_int8_e2e"} <= set(rows)
    for name in ("onnx_int8_e2e", "openvino_fp32_e2e", "tflite_int8_e2e"):
        assert rows[name]["status"] == "ok" and "in the graph" in (rows[name].get("note") or "")
        assert 0.0 <= rows[name]["metrics"]["mAP@0.5"] <= 1.0


def test_tensorrt_graph_breaking_the_efficient_nms_contract_is_named(converted, tmp_path):
    import onnx

    from convert.endtoend.tensorrt_nms_check import check_efficient_nms

    path = converted["report"].artifact("tensorrt_qdq_e2e")
    post = read_sidecar(path).postprocess
    assert check_efficient_nms(path, post) == []
    model = onnx.load(path)
    node = next(n for n in model.graph.node if n.op_type == "EfficientNMS_TRT")
    assert list(node.output) == ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]
    for attr in node.attribute:
        if attr.name == "box_coding":
            attr.i = 1
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    problems = check_efficient_nms(broken, post)
    assert problems and "box_coding" in problems[0]


# ---------------------------------------------------------------- identity in the file


def _read_identity(path: Path) -> ModelIdentity | None:
    """The identity through each format's own tools (not the backends' readers)."""
    if path.suffix == ".onnx":
        import onnx

        return ModelIdentity.from_metadata({p.key: p.value for p in onnx.load(path).metadata_props})
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(path)
        keys = ("format", "labels", "spec_sha256", "checkpoint_sha256", "calibration_sha256", "postprocess")
        return ModelIdentity.from_metadata({f"ssd_edge.{k}": model.get_rt_info(["ssd_edge", k]).astype(str) for k in keys})
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for entry in model.metadata:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == "ssd_edge_identity":
            return ModelIdentity.from_metadata(json.loads(bytes(model.buffers[entry.buffer].data)))
    return None


@pytest.mark.parametrize("fmt", [*RAW, *E2E])
def test_each_model_file_carries_its_identity_in_its_own_metadata(converted, fmt):
    path = converted["report"].artifact(fmt)
    sidecar = read_sidecar(path)
    found = _read_identity(path)
    assert found == identity_of(sidecar)
    assert found.format == fmt and list(found.labels) == sidecar.labels
    assert found.checkpoint_sha256 == file_sha256(converted["ckpt"])


def _forge(artifact: Path, donor: Path, dst: Path) -> Path:
    """``artifact`` copied into ``dst`` with ``donor``'s sidecar, its artifact name and sha256s fixed up."""
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / artifact.name
    shutil.copy(artifact, target)
    donor_sidecar = read_sidecar(donor)
    files = {}
    if artifact.suffix == ".xml":
        shutil.copy(artifact.with_suffix(".bin"), target.with_suffix(".bin"))
        files = {target.with_suffix(".bin").name: file_sha256(target.with_suffix(".bin"))}
    forged = dataclasses.replace(donor_sidecar, artifact=target.name, artifact_sha256=file_sha256(target), files=files)
    write_sidecar(forged, target)
    read_sidecar(target)  # the sidecar itself is consistent: only the file's own identity can tell
    return target


@pytest.mark.parametrize("runtime", ["onnx", "openvino", "tflite"])
def test_a_sidecar_of_another_artifact_is_refused_by_name(converted, runtime, tmp_path):
    a = converted["a"]
    target = _forge(_path(a, f"{runtime}_fp32"), _path(a, f"{runtime}_int8"), tmp_path)
    with pytest.raises(SidecarError) as err:
        open_backend(target, device="CPU")
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "format" in message and f"{runtime}_fp32" in message and f"{runtime}_int8" in message


@pytest.mark.parametrize("runtime", ["onnx", "openvino", "tflite"])
def test_a_sidecar_of_another_checkpoint_is_refused_by_name(converted, runtime, tmp_path):
    assert converted["other_report"].ok
    fmt = f"{runtime}_fp32"
    target = _forge(_path(converted["a"], fmt), _path(converted["b"], fmt), tmp_path)
    with pytest.raises(SidecarError) as err:
        open_backend(target, device="CPU")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "checkpoint" in message
    assert file_sha256(converted["ckpt"])[:12] in message


def test_an_end_to_end_sidecar_on_its_raw_twin_is_refused(converted, tmp_path):
    a = converted["a"]
    target = _forge(_path(a, "onnx_int8"), _path(a, "onnx_int8_e2e"), tmp_path)
    with pytest.raises(SidecarError, match="format"):
        open_backend(target, device="CPU")


# ---------------------------------------------------------------- real consumers


def _consumer_python(name: str) -> Path:
    found = sorted(ROOT.glob(f".reference/{name}-*/bin/python"))
    if not found:
        message = f"no .reference/{name}-*/ virtual environment: run make reference-{name}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[-1]


def _images(converted, folder: Path, n: int = 4) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(_frames(converted, n)):
        paths.append(folder / f"frame{i}.png")
        cv2.imwrite(str(paths[-1]), frame)
    return paths


def _run_consumer(name: str, script: str, model: Path, images: list[Path], out: Path) -> dict:
    python = _consumer_python(name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(python), str(ROOT / "tests" / "consumers" / script), str(model), str(out), *map(str, images)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def _assert_same_detections(ours: list[Detections], theirs: dict, labels: list[str], score_tol: float, px: float) -> int:
    """Each detection on either side pairs with one of the other's (same class name, score within
    ``score_tol``, box edges within ``px`` pixels; a box on the image border only overlapping, as
    consumers clamp it their own way), unless its score is within ``score_tol`` of LIVE's threshold
    (a candidate the other side's rounding put below it). Returns the number paired."""
    from ssd.box_coding import pairwise_iou

    paired = 0
    for dets, got in zip(ours, theirs["images"], strict=True):
        w, h = got["size"]
        boxes = np.asarray(got["boxes"], np.float32).reshape(-1, 4)
        scores = np.asarray(got["scores"], np.float32)
        names = np.asarray(got["label_names"], dtype=object)
        ours_px = dets.boxes * np.array([w, h, w, h], np.float32)
        ours_names = np.asarray([labels[c - 1] for c in dets.labels], dtype=object)
        iou = pairwise_iou(ours_px, boxes) if len(boxes) and len(ours_px) else np.zeros((len(ours_px), len(boxes)))
        border = ((dets.boxes <= 1e-6) | (dets.boxes >= 1 - 1e-6)).any(axis=1)
        edges = np.abs(ours_px[:, None, :] - boxes[None, :, :]).max(axis=2) if len(boxes) else iou
        close = np.where(border[:, None], iou >= 0.5, edges <= px)
        pairs = close & (ours_names[:, None] == names[None, :]) & (np.abs(dets.scores[:, None] - scores[None, :]) <= score_tol)
        borderline = lambda s: np.abs(s - LIVE.score_threshold) <= score_tol  # noqa: E731
        assert (pairs.any(axis=1) | borderline(dets.scores)).all(), (dets.boxes, dets.scores, got)
        assert (pairs.any(axis=0) | borderline(scores)).all(), (dets.boxes, dets.scores, got)
        paired += int(pairs.any(axis=1).sum())
    return paired


def test_openvino_model_api_opens_the_ir_and_returns_ssd_edges_detections(converted, tmp_path):
    model = converted["report"].artifact("openvino_fp32_e2e")
    images = _images(converted, tmp_path / "images")
    theirs = _run_consumer("model-api", "model_api_detect.py", model, images, tmp_path / "model_api.json")
    assert theirs["wrapper"] == "SSD"
    import cv2

    ours = _detect(model, [cv2.imread(str(p)) for p in images])
    # the same f32 graph on the same pixels: the same scores; Model API rounds boxes to whole pixels
    assert _assert_same_detections(ours, theirs, read_sidecar(model).labels, score_tol=1e-4, px=1.0) > 10


def test_mediapipe_object_detector_opens_the_tflite_and_returns_ssd_edges_detections(converted, tmp_path):
    model = converted["report"].artifact("tflite_int8_e2e")
    images = _images(converted, tmp_path / "images")
    theirs = _run_consumer("mediapipe", "mediapipe_detect.py", model, images, tmp_path / "mediapipe.json")
    import cv2

    ours = _detect(model, [cv2.imread(str(p)) for p in images])
    # MediaPipe resamples the image into the input tensor itself (its ImageToTensor warp, even at the
    # model's size) and truncates boxes to whole pixels: scores within a few int8 softmax steps (1/256)
    assert _assert_same_detections(ours, theirs, read_sidecar(model).labels, score_tol=8 / 256, px=2.0) > 10
