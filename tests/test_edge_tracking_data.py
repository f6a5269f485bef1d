"""The tracking benchmark's detector data: labelled frames of the synthetic:// scene (train.scene),
and the benchmark's detector-quality measure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import edge_tracking as et
from benchmarks.edge_tracking_detector import training_seeds
from edge_app.sources.synthetic import SyntheticScene
from ssd.data import VOCDataset
from train.scene import (
    SCENE_CLASSES,
    SceneDatasetConfig,
    ensure_scene_dataset,
    frame_indices,
    generate_scene_dataset,
    scene_seeds,
    sequence_objects,
)
from train.synth import main as synth_main

SMALL = SceneDatasetConfig(seed=500, train_sequences=2, val_sequences=1, frames_per_sequence=4, stride=37,
                           width=320, height=240, min_objects=6, max_objects=9)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene_dataset(tmp_path_factory.mktemp("scene"), SMALL)


def _objects(xml_path: Path) -> list[dict]:
    root = ET.parse(xml_path).getroot()
    return [{"name": o.findtext("name"), "difficult": o.findtext("difficult") == "1",
             "truncated": o.findtext("truncated") == "1",
             "box": [float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]}
            for o in root.iter("object")]


def test_boxes_and_flags_match_the_scene_truth(dataset: Path) -> None:
    seen_difficult = seen_hidden = seen_truncated = 0
    for split in ("train", "val"):
        for seed in scene_seeds(SMALL, split):
            scene = SyntheticScene(320, 240, objects=sequence_objects(SMALL, seed), seed=seed, motion="cross")
            for index in frame_indices(SMALL):
                image_id = f"{split}_s{seed}_f{index:05d}"
                objects = _objects(dataset / "Annotations" / f"{image_id}.xml")
                ids, boxes, visible = scene.truth(index)
                shown = visible > 0
                seen_hidden += int((~shown).sum())
                assert len(objects) == int(shown.sum())  # entirely hidden or off-screen shapes are left out
                full = scene.boxes(index)[shown]
                for obj, box, vis, kind, whole in zip(objects, boxes[shown], visible[shown], scene.kind[shown], full,
                                                      strict=True):
                    assert obj["box"] == pytest.approx(box.tolist(), abs=0.006)
                    assert obj["name"] == SCENE_CLASSES[kind]
                    assert obj["difficult"] == (vis < 0.25)
                    outside = whole[0] < 0 or whole[1] < 0 or whole[2] > 320 or whole[3] > 240
                    assert obj["truncated"] == outside
                    seen_difficult += obj["difficult"]
                    seen_truncated += obj["truncated"]
                image = cv2.imread(str(dataset / "JPEGImages" / f"{image_id}.jpg"))
                assert np.abs(image.astype(np.int16) - scene.render(index)).mean() < 2.0  # the source's frame (JPEG)
    # the sample exercises each labelling rule
    assert seen_difficult and seen_hidden and seen_truncated


def test_files_are_a_valid_voc_dataset(dataset: Path) -> None:
    assert (dataset / "labels.txt").read_text().split() == list(SCENE_CLASSES)
    train = VOCDataset(dataset, "train")
    val = VOCDataset(dataset, "val")
    assert train.label_names == list(SCENE_CLASSES)
    assert (len(train), len(val)) == (2 * 4, 1 * 4)
    assert len(VOCDataset(dataset, "trainval")) == 12
    sample = train[1]
    assert sample.image.shape == (240, 320, 3) and (sample.width, sample.height) == (320, 240)
    assert sample.boxes.shape[0] == sample.labels.shape[0] > 0
    assert sample.labels.min() >= 1 and sample.labels.max() <= 3
    # every box was kept by the reader (inside the frame, with area)
    assert sample.boxes.shape[0] == len(_objects(dataset / "Annotations" / f"{train.ids[1]}.xml"))


def test_splits_are_disjoint_sequences_and_the_benchmark_sequence_is_unseen(dataset: Path) -> None:
    train, val = scene_seeds(SMALL, "train"), scene_seeds(SMALL, "val")
    assert train == [500, 501] and val == [502] and not set(train) & set(val)
    ids = (dataset / "ImageSets" / "Main" / "train.txt").read_text().split()
    assert {int(i.split("_s")[1].split("_")[0]) for i in ids} == {500, 501}
    default = SceneDatasetConfig()
    seen = training_seeds(default)
    assert et.DEFAULT_SCENE["seed"] not in seen and not seen & {0, 1, 2, 3, 4}  # the benchmark's sequences
    # shapes per sequence vary within the configured range
    counts = {sequence_objects(default, s) for s in scene_seeds(default, "train")}
    assert min(counts) >= default.min_objects and max(counts) <= default.max_objects and len(counts) > 3


def test_benchmark_refuses_a_training_sequence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert et.main(["--train-detector", str(tmp_path), "--seed", "1000", "--out", str(tmp_path / "r.json")]) == 2
    assert "training sequences" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing rendered or trained


def test_ensure_renders_once_per_config(tmp_path: Path) -> None:
    cfg = replace(SMALL, train_sequences=1, val_sequences=0, frames_per_sequence=1)
    ensure_scene_dataset(tmp_path / "d", cfg)
    meta = tmp_path / "d" / "scene.json"
    stamp = meta.stat().st_mtime_ns
    ensure_scene_dataset(tmp_path / "d", cfg)
    assert meta.stat().st_mtime_ns == stamp
    ensure_scene_dataset(tmp_path / "d", replace(cfg, frames_per_sequence=2))
    assert (tmp_path / "d" / "ImageSets" / "Main" / "train.txt").read_text().split() == ["train_s500_f00000",
                                                                                         "train_s500_f00037"]


def test_ssd_synth_scene_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert synth_main(["--scene", "cross", "--out", str(tmp_path / "s"), "--width", "160", "--height", "120",
                       "--train-sequences", "1", "--val-sequences", "1", "--frames-per-sequence", "2"]) == 0
    assert "2 train (seeds 1000-1000) + 2 val (seeds 1001-1001)" in capsys.readouterr().out
    assert len(VOCDataset(tmp_path / "s", "val")) == 2
    assert synth_main(["--scene", "cross", "--out", str(tmp_path / "bad"), "--min-objects", "5", "--max-objects", "2"]) == 2
    assert "need 1 <= min <= max" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_detection_quality_hand_computed() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    visible = np.array([1.0, 0.8, 0.1])  # the third is don't-care at 0.25
    truth = [(np.arange(3), gt, visible)]
    boxes = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [40, 0, 50, 10], [60, 0, 70, 10], [20, 0, 30, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    dets = [(boxes, scores, np.ones(5, np.int64))]
    high = et.detection_quality(truth, dets, 0.25, 0.5)
    # score >= 0.5: 4 boxes; one matches object 1 (a duplicate is a false positive), one is on the
    # don't-care object (not counted), one on nothing: recall 1/2, precision 1/3
    assert (high["matched"], high["objects"], high["on_dont_care"]) == (1, 2, 1)
    assert high["recall"] == pytest.approx(0.5) and high["precision"] == pytest.approx(1 / 3)
    low = et.detection_quality(truth, dets, 0.25, 0.1)
    assert low["recall"] == pytest.approx(1.0) and low["precision"] == pytest.approx(2 / 4)


def test_attribution_variants_keep_hits_and_swap_in_true_boxes() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    visible = np.array([1.0, 0.1, 0.0])  # a don't-care object still counts as a hit; a hidden one does not
    truth = [(np.arange(3), gt, visible)]
    boxes = np.array([[60, 0, 70, 10], [21, 0, 30, 10], [0, 0, 10, 9], [40, 0, 50, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 2, 3, 1])
    variants = et.attribution_variants(truth, [(boxes, scores, labels)])
    hits_boxes, hits_scores, hits_labels = variants["no false positives"][0]
    np.testing.assert_array_equal(hits_boxes, boxes[[1, 2]])
    np.testing.assert_array_equal(hits_scores, [0.8, 0.7])
    np.testing.assert_array_equal(hits_labels, [2, 3])
    true_boxes, true_scores, _ = variants["no false positives, true boxes"][0]
    np.testing.assert_array_equal(true_boxes, gt[[1, 0]])
    np.testing.assert_array_equal(true_scores, [0.8, 0.7])


def test_tiny_scene_config_maps_match_the_model() -> None:
    """The config's spec override (160 px, maps 20/10/5/3) is what the tiny model computes."""
    import torch

    from train.config import load_config
    from train.models import build_model
    from train.trainer import resolve_spec

    cfg = load_config("tiny_scene")
    spec = resolve_spec(cfg.model.spec or "tiny", cfg.model.spec_overrides)
    assert (spec.name, spec.image_size, spec.feature_maps) == ("tiny160", 160, (20, 10, 5, 3))
    model = build_model(cfg.model.arch, len(SCENE_CLASSES) + 1, spec, **cfg.model.kwargs).eval()
    with torch.no_grad():
        loc, conf = model(torch.zeros(1, 3, spec.image_size, spec.image_size))[:2]
    assert loc.shape == (1, spec.num_priors, 4) and conf.shape == (1, spec.num_priors, 4)


def test_reference_plus_one_iou_is_cython_bbox_convention() -> None:
    from benchmarks.edge_tracking_reference import plus_one_iou

    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    # 11 x 6 pixels inside 11 x 11: 66 / 121; ours (no +1) gives 0.5 for the first pair
    np.testing.assert_allclose(plus_one_iou(a, b), [[66 / 121, 0.0, 1.0]])
    assert et.iou(a, b)[0, 0] == pytest.approx(0.5)
