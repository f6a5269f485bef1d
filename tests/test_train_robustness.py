"""Bad input and killed runs in training, evaluation and calibration (issue #11, items 1, 3, 4, 5, 6, 8):
a finished run is never trained over, a truncated image is an error naming it with any number of
workers, a failed start leaves no folder, a checkpoint's stored run name cannot escape the runs folder."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from calibration.cli import main as calibrate_main
from ssd.data import DatasetError, VOCDataset
from ssd.data.image_file import read_image_strict, truncation_problem
from train.cli import main as train_main
from train.eval_cli import main as eval_main
from train.synth import SynthConfig, generate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_robust")
    generate(root, SynthConfig(seed=2, num_train=32, num_val=8, size=96))
    return root


def overrides(root: Path, out: Path, name: str, **extra: object) -> list[str]:
    values = {
        "name": name, "output_dir": str(out), "data.format": "voc", "data.root": str(root), "data.workers": 0,
        "optim.epochs": 1, "optim.batch_size": 16, "optim.lr": 0.01, "eval.every": 0, "eval.batch_size": 8,
        "model.kwargs": "{width: 8}", "runtime.tensorboard": False, "runtime.threads": 1, "runtime.log_every": 1,
        "runtime.plot": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    return errors[0]


def truncated_copy(root: Path, dest: Path, split: str) -> Path:
    """A copy of the dataset with the first image of ``split`` cut to 60 % of its bytes."""
    shutil.copytree(root, dest)
    ids = (dest / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    victim = dest / "JPEGImages" / f"{ids[0]}.jpg"
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * 0.6)])
    return victim


@pytest.fixture(scope="module")
def finished_run(synth_root: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("runs")
    args = ["--config", "tiny_synth", *overrides(synth_root, out, "done")]
    assert train_main(args) == 0
    return out / "done", args


# ------------------------------------------------------------------------- item 1: no silent overwrite
def test_training_again_over_a_finished_run_is_refused(finished_run, capsys) -> None:
    run_dir, args = finished_run
    before = {n: sha(run_dir / n) for n in ("last.pt", "best.pt") if (run_dir / n).exists()}
    assert "last.pt" in before
    capsys.readouterr()
    assert train_main(args) == 2
    line = error_line(capsys)
    assert "--resume" in line and "--overwrite" in line and "name=" in line and str(run_dir) in line
    assert {n: sha(run_dir / n) for n in before} == before


def test_overwrite_replaces_and_stale_temp_files_go(synth_root: Path, tmp_path: Path, capsys) -> None:
    args = ["--config", "tiny_synth", *overrides(synth_root, tmp_path, "again")]
    assert train_main(args) == 0
    run_dir = tmp_path / "again"
    stale = run_dir / ".last.k1ll3d.tmp.pt"  # what ssd.atomic leaves when a save is killed
    stale.write_bytes(b"half a checkpoint")
    old = sha(run_dir / "last.pt")
    assert train_main([*args, "--overwrite"]) == 0
    assert not stale.exists()
    assert sha(run_dir / "last.pt") != old


# ---------------------------------------------------------------- item 8: the run name stays inside
def test_resume_with_a_stored_name_outside_the_runs_folder_is_refused(finished_run, tmp_path: Path, capsys) -> None:
    run_dir, _ = finished_run
    data = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    runs = tmp_path / "runs"
    for name in ("../escaped", "/tmp/abs_escape_ssd", "a/b"):
        data["config"]["name"] = name
        data["config"]["output_dir"] = str(runs)
        ckpt = tmp_path / "evil.pt"
        torch.save(data, ckpt)
        capsys.readouterr()
        assert train_main(["--resume", str(ckpt), "optim.epochs=2"]) == 2
        line = error_line(capsys)
        assert repr(name) in line and "name=" in line
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/abs_escape_ssd").exists()
    assert not runs.exists()


# ------------------------------------------------------------- item 4: truncated images are errors
def test_truncation_checks() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", noise)
    jpeg = jpg.tobytes()
    assert truncation_problem(jpeg) is None
    assert "truncated JPEG" in truncation_problem(jpeg[: len(jpeg) // 2])
    assert truncation_problem(jpeg[:-2]) is not None
    assert "header ends early" in truncation_problem(jpeg[:100])
    # an EXIF-like APP1 segment that holds a thumbnail's own end-of-image marker does not count
    payload = b"Exif\x00\x00" + b"\xff\xd8thumb\xff\xd9"
    with_app1 = jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]
    assert truncation_problem(with_app1) is None
    assert truncation_problem(with_app1[: len(with_app1) - 40]) is not None
    assert truncation_problem(jpeg + b"trailing data after the image") is None
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert truncation_problem(png.tobytes()) is None
    assert "PNG" in truncation_problem(png.tobytes()[:-20])


def test_a_truncated_jpeg_is_an_error_naming_it(synth_root: Path, tmp_path: Path) -> None:
    victim = truncated_copy(synth_root, tmp_path / "data", "train")
    # what cv2.imread alone does: a full-size image, grey where the data ends, no error
    assert cv2.imread(str(victim)) is not None
    with pytest.raises(DatasetError, match=rf"{victim.name}.*truncated"):
        read_image_strict(victim)
    reader = VOCDataset(tmp_path / "data", "train")
    with pytest.raises(DatasetError, match=victim.name):
        reader[0]


@pytest.mark.parametrize("workers", [0, 1])
def test_training_on_a_truncated_image_says_the_same_line_with_any_workers(synth_root: Path, tmp_path: Path, workers: int,
                                                                          capsys) -> None:
    victim = truncated_copy(synth_root, tmp_path / "data", "train")
    out = tmp_path / "runs"
    assert train_main(["--config", "tiny_synth", *overrides(tmp_path / "data", out, "bad", **{
        "data.workers": workers, "runtime.tensorboard": True})]) == 2
    line = error_line(capsys)
    # the first start reads every image once: the bad one is named before any training
    assert line.startswith("ssd-train: error: ") and str(victim) in line and "truncated" in line
    assert "1 image cannot be used" in line and f"ssd-split --data {tmp_path / 'data'} --force" in line
    assert "Caught" not in line and "worker" not in line
    assert not (out / "bad").exists()  # a run that failed at start-up leaves no folder or empty tb/ file


def test_the_advice_for_a_truncated_image_is_one_step_that_works(synth_root: Path, tmp_path: Path, capsys) -> None:
    from train.split_cli import main as split_main

    victim = truncated_copy(synth_root, tmp_path / "data", "train")
    assert split_main(["--data", str(tmp_path / "data"), "--force"]) == 0
    assert victim.name in capsys.readouterr().err
    # training then runs, and the periodic evaluation names the split it ran on
    assert train_main(["--config", "tiny_synth", *overrides(tmp_path / "data", tmp_path / "runs", "ok", **{
        "data.val_split": "trainval", "eval.every": 1})]) == 0
    out = capsys.readouterr().out
    assert "trainval mAP@0.5" in out and "val mAP" not in out.replace("trainval mAP", "")


def test_eval_and_calibrate_on_a_truncated_image_name_it(finished_run, synth_root: Path, tmp_path: Path, capsys) -> None:
    run_dir, _ = finished_run
    victim = truncated_copy(synth_root, tmp_path / "data", "val")
    assert eval_main(["--checkpoint", str(run_dir / "last.pt"), "--data", str(tmp_path / "data"), "--split", "val"]) == 2
    assert str(victim) in error_line(capsys)
    out = tmp_path / "calib"
    assert calibrate_main(["--data", str(tmp_path / "data"), "--split", "val", "--num", "8", "--holdout", "0",
                           "--checkpoint", str(run_dir / "last.pt"), "--out", str(out)]) == 2
    assert str(victim) in error_line(capsys)
    assert not out.exists()


def test_calibrate_on_an_undecodable_image_is_one_line(finished_run, synth_root: Path, tmp_path: Path, capsys) -> None:
    run_dir, _ = finished_run
    shutil.copytree(synth_root, tmp_path / "data")
    ids = (tmp_path / "data" / "ImageSets" / "Main" / "val.txt").read_text().split()
    victim = tmp_path / "data" / "JPEGImages" / f"{ids[1]}.jpg"
    victim.write_bytes(b"this is not an image at all")
    assert calibrate_main(["--data", str(tmp_path / "data"), "--split", "val", "--num", "8", "--holdout", "0",
                           "--checkpoint", str(run_dir / "last.pt"), "--out", str(tmp_path / "calib")]) == 2
    line = error_line(capsys)
    assert str(victim) in line and "cannot be decoded" in line
