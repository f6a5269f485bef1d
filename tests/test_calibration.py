"""Calibration sets: stratified seeded selection, preprocessing, manifest, atomic writes, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.select import class_image_counts, stratified_indices
from calibration.sets import CalibrationError, load_calibration_set, write_calibration_set
from ssd.preprocess import InputSpec, preprocess
from ssd.sidecar import file_sha256
from tests.voc_dataset import write_voc_dataset

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["red", "green", "blue"]


# ---------------------------------------------------------------- selection


def _long_tail(n: int = 200, rare_images: tuple[int, ...] = (17, 151)) -> list[np.ndarray]:
    labels = [np.array([1] * (1 + i % 3), dtype=np.int64) for i in range(n)]
    for i in range(0, n, 4):
        labels[i] = np.array([1, 2], dtype=np.int64)
    for i in rare_images:
        labels[i] = np.array([3], dtype=np.int64)
    labels[5] = np.zeros(0, dtype=np.int64)  # an image without objects
    return labels


def test_selection_is_seeded_and_reproducible():
    labels = _long_tail()
    a = stratified_indices(labels, 30, seed=0)
    b = stratified_indices(labels, 30, seed=0)
    c = stratified_indices(labels, 30, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(c))
    assert len(set(a.tolist())) == 30


def test_selection_keeps_rare_classes_a_uniform_sample_would_miss():
    labels = _long_tail()
    picked = stratified_indices(labels, 10, seed=3)
    counts = class_image_counts(labels, picked, num_classes=4)
    assert counts[2] == 2, "both images of the rare class 3 are picked first"
    assert counts[0] > 0 and counts[1] > 0
    # a uniform sample of 10 out of 200 misses both rare images most of the time
    rng = np.random.default_rng(3)
    misses = sum(not ({17, 151} & set(rng.choice(200, 10, replace=False).tolist())) for _ in range(200))
    assert misses > 150


def test_selection_respects_exclude_and_availability():
    labels = _long_tail(20, rare_images=(3,))
    first = stratified_indices(labels, 12, seed=0)
    rest = stratified_indices(labels, 50, seed=1, exclude=first)
    assert len(rest) == 8, "only the 8 images not already chosen are left"
    assert not set(first.tolist()) & set(rest.tolist())
    with pytest.raises(ValueError):
        stratified_indices(labels, -1, seed=0)


# ---------------------------------------------------------------- building a set


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    return write_voc_dataset(root, 40, size=80, classes=CLASSES, seed=0, class_weights=(1.0, 1.0, 0.08))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    model = build_model("tiny", len(CLASSES) + 1, width=8)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8},
                     "spec": model.spec.to_dict(), "labels": CLASSES}, path)
    del torch
    return path


def _calibrate(*args: str) -> subprocess.CompletedProcess:
    """ssd-calibrate in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "calibration.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)


def _calibrate_here(capsys, *args: str) -> tuple[int, str, str]:
    """ssd-calibrate's main() in this process (faster); returns (code, stdout, stderr)."""
    from calibration.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_builds_a_set_with_manifest_and_preprocessed_inputs(voc, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sets" / "tiny"
    code, stdout, stderr = _calibrate_here(capsys, "--data", str(voc), "--split", "train", "--num", "12", "--holdout", "5",
                                           "--seed", "0", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                                           "--max-drop", "0.5")
    assert code == 0, stderr
    assert "warning: only 12 calibration images" in stdout
    # what the 5 held-out images can resolve, from the FP32 model before any export (the untrained model's random
    # weights may find nothing at all, which it then says)
    import re

    assert re.search(r"PyTorch FP32 mAP@0\.5 [0-9.]+ on the held-out images; (FP32 finds none of the objects on the 5 "
                     r"held-out images|5 held-out images resolve mAP@0\.5 drops of about [0-9.]+ points .*--max-drop 0\.5)", stdout)
    calib = load_calibration_set(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert calib.manifest_sha256 == file_sha256(out / "manifest.json")
    assert calib.inputs.shape == (12, 3, 128, 128) and calib.inputs.dtype == np.uint8  # tiny model input size
    assert manifest["seed"] == 0 and manifest["labels"] == CLASSES
    assert manifest["inputs"]["sha256"] == file_sha256(out / "inputs.npy")
    assert manifest["checkpoint_sha256"] == file_sha256(tiny_checkpoint)
    assert InputSpec.from_dict(manifest["input"]) == InputSpec(128, 128, "NCHW", "uint8", "RGB")
    assert len(manifest["image_ids"]) == 12 and len(manifest["image_sha256"]) == 12
    assert manifest["class_image_counts"]["blue"] >= 1, "the rare class is represented"
    # the stored input is exactly the shared preprocessing of the source image
    import cv2

    first = manifest["image_ids"][0]
    frame = cv2.imread(str(voc / "JPEGImages" / f"{first}.jpg"))
    expected = preprocess(frame, InputSpec(128, 128, "NCHW", "uint8", "RGB"))[0]
    assert np.array_equal(calib.inputs[0], expected)
    # held-out images are disjoint from the calibration images and carry ground truth in [0, 1]
    assert calib.holdout is not None and len(calib.holdout) == 5
    assert not set(manifest["holdout"]["image_ids"]) & set(manifest["image_ids"])
    assert len(calib.holdout.boxes) > 0 and 0.0 <= calib.holdout.boxes.min() and calib.holdout.boxes.max() <= 1.0
    # NHWC batches for TFLite are the same pixels re-laid out
    nhwc = next(calib.batches("NHWC", "float32"))
    assert nhwc.shape == (1, 128, 128, 3) and np.array_equal(nhwc[0].transpose(2, 0, 1), calib.inputs[0].astype(np.float32))


def test_a_small_dataset_keeps_held_out_images_and_none_is_warned_up_front(voc, tiny_checkpoint, tmp_path, capsys):
    from calibration.build import split_counts

    assert split_counts(160, 300, 100) == (128, 32), "the defaults on 160 images keep 20 % back"
    assert split_counts(500, 300, 100) == (300, 100) and split_counts(160, 300, 0) == (160, 0)
    # 40 images with the defaults (300 + 100): 32 calibration + 8 held-out, and it says so
    code, stdout, stderr = _calibrate_here(capsys, "--data", str(voc), "--checkpoint", str(tiny_checkpoint),
                                           "--out", str(tmp_path / "small"))
    assert code == 0, stderr
    calib = load_calibration_set(tmp_path / "small")
    assert len(calib) == 32 and calib.holdout is not None and len(calib.holdout) == 8
    assert "reserving 8 held-out images and calibrating on 32" in stdout
    code, stdout, _ = _calibrate_here(capsys, "--data", str(voc), "--num", "10", "--holdout", "0",
                                      "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "none"))
    assert code == 0 and "warning: no held-out images" in stdout and "--max-drop" in stdout
    assert load_calibration_set(tmp_path / "none").holdout is None


def test_same_seed_same_set_other_seed_other_set(voc, tiny_checkpoint, tmp_path, capsys):
    ids = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "5")):
        code, _, stderr = _calibrate_here(capsys, "--data", str(voc), "--num", "10", "--holdout", "0", "--seed", seed,
                                          "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / name))
        assert code == 0, stderr
        ids.append(json.loads((tmp_path / name / "manifest.json").read_text())["image_ids"])
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]


def test_cli_errors_are_one_line_and_write_nothing(tiny_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "set"
    res = _calibrate("--data", str(tmp_path / "empty"), "--checkpoint", str(tiny_checkpoint), "--out", str(out))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "layout" in res.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = _calibrate("--data", str(tmp_path / "empty"), "--checkpoint", str(bad), "--out", str(out))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "corrupt" in res.stderr
    assert not out.exists()


def test_label_mismatch_is_refused(voc, tmp_path, capsys):
    pytest.importorskip("torch")
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    model = build_model("tiny", 3, width=8)
    ckpt = tmp_path / "other.pt"
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8},
                     "spec": model.spec.to_dict(), "labels": ["cat", "dog"]}, ckpt)
    code, _, stderr = _calibrate_here(capsys, "--data", str(voc), "--checkpoint", str(ckpt), "--out", str(tmp_path / "x"))
    assert code == 2 and "classes" in stderr and not (tmp_path / "x").exists()


# ---------------------------------------------------------------- loading and atomicity


def test_empty_or_broken_set_folders_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="is empty"):
        load_calibration_set(empty)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration_set(tmp_path / "missing")
    good = tmp_path / "good"
    write_calibration_set(good, np.zeros((2, 3, 8, 8), np.uint8), {"labels": ["a"]})
    assert len(load_calibration_set(good)) == 2
    np.save(good / "inputs.npy", np.ones((2, 3, 8, 8), np.uint8))
    with pytest.raises(CalibrationError, match="sha256"):
        load_calibration_set(good)
    none = tmp_path / "none"
    write_calibration_set(none, np.zeros((0, 3, 8, 8), np.uint8), {})
    with pytest.raises(CalibrationError, match="no images"):
        load_calibration_set(none)


def test_a_failed_write_keeps_the_old_set_and_leaves_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "set"
    write_calibration_set(out, np.zeros((3, 3, 8, 8), np.uint8), {"seed": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("calibration.sets.file_sha256", boom)
    with pytest.raises(OSError):
        write_calibration_set(out, np.ones((5, 3, 8, 8), np.uint8), {"seed": 2})
    monkeypatch.undo()
    kept = load_calibration_set(out)
    assert len(kept) == 3 and kept.manifest["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_held_out_images_from_another_split_and_a_warning_when_the_model_trained_on_them(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    root = write_voc_dataset(tmp_path / "voc2", 24, size=80, classes=CLASSES, seed=0, split="train")
    write_voc_dataset(root, 10, size=80, classes=CLASSES, seed=1, split="val")
    model = build_model("tiny", len(CLASSES) + 1, width=8)
    ckpt = tmp_path / "trained_on_train.pt"
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8}, "spec": model.spec.to_dict(),
                     "labels": CLASSES, "config": {"data": {"root": str(root), "train_split": "train"}}}, ckpt)
    del torch
    # held out from the training split: said up front, and recorded
    code, stdout, stderr = _calibrate_here(capsys, "--data", str(root), "--split", "train", "--num", "12", "--holdout", "6",
                                           "--checkpoint", str(ckpt), "--out", str(tmp_path / "same"))
    assert code == 0, stderr
    assert "warning: 6 of 6 held-out images are in 'train', the split the checkpoint was trained on" in stdout
    assert "--holdout-split" in stdout
    assert json.loads((tmp_path / "same" / "manifest.json").read_text())["holdout"]["seen_in_training"] == 6
    # held out from val: unseen images, no warning
    code, stdout, stderr = _calibrate_here(capsys, "--data", str(root), "--split", "train", "--holdout-split", "val",
                                           "--num", "12", "--holdout", "6", "--checkpoint", str(ckpt), "--out", str(tmp_path / "val"))
    assert code == 0, stderr
    assert "trained on" not in stdout and "held-out from" in stdout
    manifest = json.loads((tmp_path / "val" / "manifest.json").read_text())
    assert manifest["holdout"]["split"] == "val" and manifest["holdout"]["seen_in_training"] == 0
    assert all(i.startswith("val_") for i in manifest["holdout"]["image_ids"]) and len(manifest["holdout"]["image_ids"]) == 6
    assert all(i.startswith("train_") for i in manifest["image_ids"]) and len(manifest["image_ids"]) == 12
    calib = load_calibration_set(tmp_path / "val")
    assert calib.holdout is not None and len(calib.holdout) == 6 and len(calib) == 12


def test_holdout_resolution_is_computed_from_fp32_matches(tmp_path):
    torch = pytest.importorskip("torch")
    from calibration.resolution import holdout_resolution
    from calibration.sets import Holdout
    from ssd.apstats import match_table
    from ssd.bootstrap import resolution
    from ssd.postprocess import EVAL, decode_and_nms
    from ssd.priors import default_boxes
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", len(CLASSES) + 1, width=8).eval()
    ckpt = tmp_path / "m.pt"
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8}, "spec": model.spec.to_dict(),
                     "labels": CLASSES}, ckpt)
    rng = np.random.default_rng(0)
    size = model.spec.image_size
    images = rng.integers(0, 256, (6, 3, size, size), dtype=np.uint8)
    # ground truth: the model's own top boxes, so FP32 has true positives to lose
    priors = default_boxes(model.spec)
    boxes, labels, owner = [], [], []
    with torch.no_grad():
        for i, x in enumerate(images):
            loc, conf = model(torch.from_numpy(x[None].astype(np.float32)))
            det = decode_and_nms(loc.numpy(), conf.numpy(), priors, variances=model.spec.variances, **EVAL._asdict())[0]
            boxes.append(det.boxes[:3])
            labels.append(det.labels[:3])
            owner.append(np.full(len(det.labels[:3]), i))
    holdout = Holdout(images, np.concatenate(boxes), np.concatenate(labels).astype(np.int64),
                      np.zeros(sum(len(b) for b in boxes), bool), np.concatenate(owner).astype(np.int64))
    write_calibration_set(tmp_path / "c", images, {"labels": CLASSES}, holdout=holdout)
    calib = load_calibration_set(tmp_path / "c")
    fp32, res = holdout_resolution(ckpt, calib)
    assert fp32 > 50.0 and res.images == 6 and res.worth > 0
    from calibration.resolution import holdout_truths

    dets = []
    with torch.no_grad():
        for x in images:
            loc, conf = model(torch.from_numpy(x[None].astype(np.float32)))
            dets += decode_and_nms(loc.numpy(), conf.numpy(), priors, variances=model.spec.variances, **EVAL._asdict())
    assert res == resolution(match_table(holdout_truths(calib), dets, CLASSES))
    assert not res.resolves(0.5), "six images cannot resolve half a point"
