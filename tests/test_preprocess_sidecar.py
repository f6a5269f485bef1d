"""The shared preprocessing function, the sidecar round trip and its refusals, atomic writes."""

import json

import numpy as np
import pytest

from ssd import SSD300, TINY
from ssd.atomic import atomic_path
from ssd.preprocess import InputSpec, preprocess, quantize
from ssd.sidecar import (
    OutputSpec,
    Sidecar,
    SidecarError,
    file_sha256,
    labels_digest,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)


def _frame(h=4, w=6):
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30  # B, G, R
    return frame


def test_preprocess_layouts_colors_and_dtypes():
    nchw = preprocess(_frame(), InputSpec(4, 6))
    assert nchw.shape == (1, 3, 4, 6) and nchw.dtype == np.float32
    assert nchw[0, :, 0, 0].tolist() == [30, 20, 10]  # RGB
    nhwc = preprocess(_frame(), InputSpec(4, 6, layout="NHWC", dtype="uint8", color="BGR"))
    assert nhwc.shape == (1, 4, 6, 3) and nhwc.dtype == np.uint8
    assert nhwc[0, 0, 0].tolist() == [10, 20, 30]
    assert nhwc.flags.c_contiguous


def test_preprocess_resizes_and_quantizes():
    big = _frame(40, 60)
    out = preprocess(big, InputSpec(8, 12, layout="NHWC", dtype="int8", scale=1.0, zero_point=-128))
    assert out.shape == (1, 8, 12, 3) and out.dtype == np.int8
    assert out[0, 0, 0].tolist() == [30 - 128, 20 - 128, 10 - 128]
    assert quantize(np.array([0.0, 255.0, 1000.0]), 1.0, -128, "int8").tolist() == [-128, 127, 127]


def test_preprocess_rejects_bad_frames_and_unquantized_int8():
    with pytest.raises(ValueError, match="BGR uint8"):
        preprocess(np.zeros((4, 4), np.uint8), InputSpec(4, 4))
    with pytest.raises(ValueError, match="quantization"):
        preprocess(_frame(), InputSpec(4, 6, dtype="int8"))
    with pytest.raises(ValueError, match="layout"):
        InputSpec(4, 4, layout="CHW")


def _sidecar(artifact, spec=TINY, classes=("a", "b")):
    p, c = spec.num_priors, len(classes) + 1
    return Sidecar(
        format="onnx_fp32", runtime="onnxruntime", precision="fp32", artifact=artifact.name,
        input_name="images", input=InputSpec(spec.image_size, spec.image_size),
        outputs={"loc": OutputSpec("loc", (1, p, 4)), "conf": OutputSpec("conf", (1, p, c))},
        labels=list(classes), spec=spec, checkpoint_sha256="0" * 64, labels_sha256=labels_digest(list(classes)),
        artifact_sha256=file_sha256(artifact), tool_versions={"onnx": "x"},
    )


def test_sidecar_round_trip(tmp_path):
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    sidecar = _sidecar(artifact)
    path = write_sidecar(sidecar, artifact)
    assert path == sidecar_path(artifact) == tmp_path / "model.onnx.json"
    assert read_sidecar(artifact) == sidecar
    assert json.loads(path.read_text())["spec"]["name"] == "tiny"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, s: a.write_bytes(b"tampered"), "sha256"),
        (lambda a, s: s.write_text("{not json"), "cannot read sidecar"),
        (lambda a, s: s.write_text(json.dumps({"format": "x"})), "malformed sidecar"),
        (lambda a, s: s.unlink(), "no sidecar"),
        (lambda a, s: a.unlink(), "does not exist"),
    ],
)
def test_sidecar_refusals(tmp_path, mutate, message):
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    write_sidecar(_sidecar(artifact), artifact)
    mutate(artifact, sidecar_path(artifact))
    with pytest.raises(SidecarError, match=message):
        read_sidecar(artifact)


def test_sidecar_that_does_not_match_its_spec_is_refused(tmp_path):
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    data = _sidecar(artifact).to_dict()
    data["spec"] = SSD300.to_dict()  # outputs still sized for TINY
    sidecar_path(artifact).write_text(json.dumps(data))
    with pytest.raises(SidecarError, match="priors"):
        read_sidecar(artifact)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_atomic_path_gives_the_mode_of_a_new_file(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"x")
        (tmp_path / "plain.onnx").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.onnx").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("mutate", "files", "message"),
    [
        (lambda bin_: None, None, None),
        (lambda bin_: bin_.unlink(), None, "needs model.bin next to it"),
        (lambda bin_: bin_.write_bytes(b"other weights"), None, r"model.bin \(beside model.xml\) does not match"),
        (lambda bin_: None, {"../model.bin": "0" * 64}, "not a plain file name"),
    ],
)
def test_companion_files_are_checked(tmp_path, mutate, files, message):
    import dataclasses

    artifact, weights = tmp_path / "model.xml", tmp_path / "model.bin"
    artifact.write_bytes(b"<net/>")
    weights.write_bytes(b"weights")
    sidecar = dataclasses.replace(_sidecar(artifact), files=files or {"model.bin": file_sha256(weights)})
    write_sidecar(sidecar, artifact)
    mutate(weights)
    if message is None:
        assert read_sidecar(artifact).files == {"model.bin": file_sha256(weights)}
    else:
        with pytest.raises(SidecarError, match=message):
            read_sidecar(artifact)


def test_old_sidecars_are_refused_with_what_to_do(tmp_path):
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    path = write_sidecar(_sidecar(artifact), artifact)
    data = json.loads(path.read_text())
    for version in (0, 1):
        old = {k: v for k, v in data.items() if k not in ("runtime_hints", "files", "validation")}
        old["version"] = version
        path.write_text(json.dumps({**old, "extra": {"files": {}, "openvino": {"inference_precision_hint": "f32"}}}))
        with pytest.raises(SidecarError, match=r"older ssd-convert.*re-run ssd-convert"):
            read_sidecar(artifact)


@pytest.mark.parametrize(
    "hints, files, message",
    [
        ({"inference_precision": "f64"}, {}, "inference precision"),
        ({"tensorrt_calibration": {"table": "/etc/shadow"}}, {}, "not a plain file name"),
        ({"tensorrt_calibration": {"table": "../../calib.flatbuffers"}}, {}, "not a plain file name"),
        ({"tensorrt_calibration": {"table": "calib.flatbuffers"}}, {}, "not among its checked files"),
        ({"tensorrt_calibration": {"table": "calib.flatbuffers", "native": True}}, "table", None),
        ({"inference_precision": "f32"}, {}, None),
        ({"tensorrt_check": {"passed": True, "tensorrt": "8.6, 10.x", "opset": 17, "ops": ["Conv"], "weighted_nodes": 1,
                             "quantized_nodes": 1, "activation_pairs": 1, "weight_pairs": 1}}, {}, None),
        ({"tensorrt_calibration": {"table": "calib.flatbuffers"}, "tensorrt_check": {"passed": True, "tensorrt": "10.x",
                                                                                    "opset": 17}}, "table", "both"),
    ],
)
def test_runtime_hints_are_typed_and_checked(tmp_path, hints, files, message):
    import dataclasses

    from ssd.sidecar import RuntimeHints

    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    if files == "table":
        (tmp_path / "calib.flatbuffers").write_bytes(b"table")
        files = {"calib.flatbuffers": file_sha256(tmp_path / "calib.flatbuffers")}
    sidecar = dataclasses.replace(_sidecar(artifact), runtime_hints=RuntimeHints.from_dict(hints), files=files)
    path = write_sidecar(sidecar, artifact)
    if message is None:
        again = read_sidecar(artifact)
        assert again == sidecar and "runtime_hints" in json.loads(path.read_text())
    else:
        with pytest.raises(SidecarError, match=message):
            read_sidecar(artifact)


def test_edited_labels_are_refused(tmp_path):
    """The class names are bound to the label list the artifact was converted with."""
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    path = write_sidecar(_sidecar(artifact, classes=("cat", "dog")), artifact)
    data = json.loads(path.read_text())
    assert data["labels_sha256"] == labels_digest(["cat", "dog"])
    for edited in (["dog", "cat"], ["cat", "wolf"], ["cat"]):
        path.write_text(json.dumps({**data, "labels": edited}))
        with pytest.raises(SidecarError, match="labels_sha256"):
            read_sidecar(artifact)
