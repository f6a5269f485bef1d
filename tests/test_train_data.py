"""Dataset readers: BCCD (real VOC data with quirks), bad files, COCO JSON, ssd-synth; torch-free imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ssd.data import COCODataset, DatasetError, VOCDataset, detect_format, open_dataset
from train.synth import SynthConfig, draw_image, generate
from train.synth import main as synth_main

ROOT = Path(__file__).resolve().parents[1]


def find_bccd() -> Path | None:
    """../shared/datasets/bccd seen from the repository or any folder above it."""
    for parent in [ROOT, *ROOT.parents]:
        candidate = parent / "shared" / "datasets" / "bccd"
        if (candidate / "Annotations").is_dir():
            return candidate
    return None


BCCD = find_bccd()
needs_bccd = pytest.mark.skipif(BCCD is None, reason="shared/datasets/bccd not found")


@pytest.fixture(scope="module")
def small_voc(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(seed=3, num_train=6, num_val=2, size=96))
    return out


@needs_bccd
def test_bccd_keeps_4886_of_4888_boxes_and_warns_once() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainval = VOCDataset(BCCD, "trainval")
        test = VOCDataset(BCCD, "test")
    dropped = [w for w in caught if "degenerate" in str(w.message)]
    assert len(dropped) == 1
    assert "dropped 2 degenerate" in str(dropped[0].message)
    assert "BloodImage_00338" in str(dropped[0].message) and "BloodImage_00343" in str(dropped[0].message)
    anns = [d.annotation(i) for d in (trainval, test) for i in range(len(d))]
    assert len(anns) == 364
    assert sum(len(a.boxes) for a in anns) == 4886
    assert trainval.label_names == test.label_names == ["Platelets", "RBC", "WBC"]
    counts = np.bincount(np.concatenate([a.labels for a in anns]), minlength=4)
    assert counts[0] == 0 and counts[1:].sum() == 4886
    for a in anns:
        assert np.isfinite(a.boxes).all()
        assert (a.boxes[:, 2] > a.boxes[:, 0]).all() and (a.boxes[:, 3] > a.boxes[:, 1]).all()
        assert (a.boxes[:, [0, 1]] >= 0).all() and (a.boxes[:, 2] <= a.width).all() and (a.boxes[:, 3] <= a.height).all()
        assert a.labels.dtype == np.int64 and a.boxes.dtype == np.float32 and a.difficult.dtype == bool


@needs_bccd
def test_bccd_item_has_bgr_image_and_same_annotation() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = VOCDataset(BCCD, "test")
    sample = ds[0]
    assert sample.image.dtype == np.uint8 and sample.image.shape == (480, 640, 3)
    ann = ds.annotation(0)
    assert ann.image is None
    np.testing.assert_array_equal(sample.boxes, ann.boxes)
    np.testing.assert_array_equal(sample.labels, ann.labels)
    assert sample.image_id == ann.image_id == ds.ids[0]


def test_annotation_reads_no_image(small_voc: Path, tmp_path: Path) -> None:
    copy = tmp_path / "noimages"
    shutil.copytree(small_voc, copy)
    shutil.rmtree(copy / "JPEGImages")
    ds = VOCDataset(copy, "train")
    ann = ds.annotation(0)
    assert ann.width == 96 and len(ann.boxes) == len(ann.labels) >= 1
    with pytest.raises(DatasetError, match=r"train_00000\.jpg"):
        ds[0]


def test_malformed_xml_names_the_file(small_voc: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bad"
    shutil.copytree(small_voc, copy)
    (copy / "Annotations" / "train_00002.xml").write_text("<annotation><size><width>96</width>")
    with pytest.raises(DatasetError, match=r"train_00002\.xml.*malformed"):
        VOCDataset(copy, "train")


def test_missing_annotation_and_split_name_the_file(small_voc: Path, tmp_path: Path) -> None:
    copy = tmp_path / "missing"
    shutil.copytree(small_voc, copy)
    (copy / "Annotations" / "val_00001.xml").unlink()
    with pytest.raises(DatasetError, match=r"val_00001\.xml"):
        VOCDataset(copy, "val")
    with pytest.raises(DatasetError, match=r"nosuch\.txt"):
        VOCDataset(copy, "nosuch")


def test_a_split_the_folder_lacks_names_its_splits_the_setting_and_ssd_split(small_voc: Path, tmp_path: Path) -> None:
    copy = tmp_path / "voc"
    shutil.copytree(small_voc, copy)
    main = copy / "ImageSets" / "Main"
    (main / "train.txt").rename(main / "trainval.txt")
    (main / "val.txt").rename(main / "test.txt")
    with pytest.raises(DatasetError) as info:
        VOCDataset(copy, "train")
    message = str(info.value)
    assert "test, trainval" in message and "data.train_split" in message and "\n" not in message
    shutil.rmtree(copy / "ImageSets")
    with pytest.raises(DatasetError, match=rf"ssd-split --data {copy}"):
        VOCDataset(copy, "train")


def test_counts_take_the_singular_for_one() -> None:
    from ssd.data.sample import count

    assert [count(1, "box"), count(2, "box"), count(1, "class"), count(3, "class"), count(0, "image")] == [
        "1 box", "2 boxes", "1 class", "3 classes", "0 images"]


def test_boxes_are_clipped_and_degenerate_dropped(small_voc: Path, tmp_path: Path) -> None:
    copy = tmp_path / "quirks"
    shutil.copytree(small_voc, copy)
    xml = """<annotation><filename>train_00000.jpg</filename><size><width>96</width><height>96</height></size>
    <object><name>circle</name><difficult>1</difficult><bndbox><xmin>-5</xmin><ymin>10</ymin><xmax>120</xmax><ymax>50</ymax></bndbox></object>
    <object><name>star</name><bndbox><xmin>30</xmin><ymin>30</ymin><xmax>30</xmax><ymax>60</ymax></bndbox></object>
    <object><name>square</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
    </annotation>"""
    (copy / "Annotations" / "train_00000.xml").write_text(xml)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = VOCDataset(copy, "train")
    messages = [str(w.message) for w in caught]
    assert sum("dropped 1 degenerate (zero or negative area) box (" in m for m in messages) == 1
    assert sum("not in" in m for m in messages) == 1  # "square" is no synth class
    ann = ds.annotation(0)
    np.testing.assert_array_equal(ann.boxes, np.array([[0, 10, 96, 50]], np.float32))
    assert ann.labels.tolist() == [ds.label_names.index("circle") + 1]
    assert ann.difficult.tolist() == [True]


def _write_coco(root: Path) -> None:
    import cv2

    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(root / "val" / name), np.full((40, 60, 3), 128, np.uint8))
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40},
                   {"id": 3, "file_name": "b.jpg", "width": 60, "height": 40}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [50, 30, 30, 30], "iscrowd": 1},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 0, 10], "iscrowd": 0},
        ],
    }
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))


def test_coco_reader(tmp_path: Path) -> None:
    _write_coco(tmp_path)
    assert detect_format(tmp_path, "val") == "coco"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(tmp_path, "val")
    assert isinstance(ds, COCODataset)
    assert sum("dropped 1 degenerate" in str(w.message) for w in caught) == 1
    assert ds.label_names == ["person", "dog"] and ds.category_ids == [1, 18]
    assert [ds.annotation(i).image_id for i in range(len(ds))] == ["3", "7"]
    a = ds.annotation(1)
    np.testing.assert_array_equal(a.boxes, np.array([[10, 5, 30, 15], [50, 30, 60, 40]], np.float32))
    assert a.labels.tolist() == [2, 1] and a.difficult.tolist() == [False, True]
    assert len(ds.annotation(0).boxes) == 0
    assert ds[1].image.shape == (40, 60, 3)


def test_coco_bad_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"instances_val\.json"):
        COCODataset(tmp_path, "val")


def test_synth_is_deterministic_and_varied() -> None:
    cfg = SynthConfig(seed=5, size=96)
    img1, boxes1, cls1 = draw_image(cfg, "train", 4)
    img2, boxes2, cls2 = draw_image(cfg, "train", 4)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(boxes1, boxes2)
    img3, _, _ = draw_image(SynthConfig(seed=6, size=96), "train", 4)
    assert not np.array_equal(img1, img3)
    classes = np.concatenate([draw_image(cfg, "train", i)[2] for i in range(30)])
    assert set(classes.tolist()) == {0, 1, 2, 3}
    assert (boxes1[:, 2:] > boxes1[:, :2]).all() and boxes1.max() <= 96 and boxes1.min() >= 0


def test_ssd_synth_cli_writes_voc_layout(tmp_path: Path) -> None:
    assert synth_main(["--out", str(tmp_path), "--seed", "1", "--num-train", "3", "--num-val", "2", "--size", "64"]) == 0
    ds = VOCDataset(tmp_path, "val")
    assert len(ds) == 2 and ds.label_names == ["circle", "rectangle", "triangle", "star"]
    assert ds[1].image.shape == (64, 64, 3)
    assert len(VOCDataset(tmp_path, "trainval")) == 5
    assert synth_main(["--out", str(tmp_path), "--size", "8"]) == 2


def test_readers_and_evaluator_import_without_torch() -> None:
    code = ("import sys, ssd.data.voc, ssd.data.coco, train.synth, ssd.data, ssd.coco_eval; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_coco_reader_honours_declared_labels(tmp_path: Path) -> None:
    _write_coco(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(tmp_path, "val", label_names=["dog"])
    assert ds.label_names == ["dog"] and ds.category_ids == [18]
    assert ds.annotation(1).labels.tolist() == [1]  # the person (category 1) is dropped
    assert any("categories not in ['dog']" in str(w.message) for w in caught)
    reordered = open_dataset(tmp_path, "val", label_names=["dog", "person"])
    assert reordered.annotation(1).labels.tolist() == [1, 2]
    with pytest.raises(DatasetError, match="no category 'cat'"):
        open_dataset(tmp_path, "val", label_names=["cat"])


def test_ssd_split_writes_seeded_splits_and_data_labels_train(small_voc: Path, tmp_path: Path, capsys) -> None:
    from train.config import load_config
    from train.split_cli import main as split_main

    root = tmp_path / "mine"
    shutil.copytree(small_voc / "Annotations", root / "Annotations")
    shutil.copytree(small_voc / "JPEGImages", root / "JPEGImages")
    assert split_main(["--data", str(root), "--val", "0.25", "--seed", "1"]) == 0
    main = root / "ImageSets" / "Main"
    train = main.joinpath("train.txt").read_text().split()
    val = main.joinpath("val.txt").read_text().split()
    assert len(train) == 6 and len(val) == 2 and not set(train) & set(val)
    assert sorted(main.joinpath("trainval.txt").read_text().split()) == sorted(train + val)
    assert split_main(["--data", str(root)]) == 2 and "--force" in capsys.readouterr().err
    assert split_main(["--data", str(root), "--val", "0.25", "--seed", "1", "--force"]) == 0
    assert main.joinpath("val.txt").read_text().split() == val  # same seed, same split
    # an image that does not decode is left out of every split, with a warning naming it
    bad = sorted((root / "JPEGImages").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:200])
    assert split_main(["--data", str(root), "--force"]) == 0
    err = capsys.readouterr().err
    assert "left out 1 image that" in err and bad.name in err and "truncated" in err
    listed = main.joinpath("trainval.txt").read_text().split()
    assert len(listed) == 7 and bad.stem not in listed
    # labels declared in the config (here a subset, in a chosen order) reach the reader
    cfg = load_config("own_dataset_template", [f"data.root={root}", "data.labels=[star, circle]"])
    assert cfg.data.labels == ["star", "circle"]
    reader = open_dataset(root, "train", cfg.data.format, label_names=cfg.data.labels)
    assert reader.label_names == ["star", "circle"]
