"""The training benchmarks on a CPU with tiny sizes, so the GPU session's scripts never rot:
throughput (ours and torchvision's step under Debian's interpreter), the kill/resume check,
the time-budgeted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks import gpu_check, train_budget, train_throughput
from benchmarks.tv_reference import synthetic_batch
from train.config import CONFIG_DIR
from train.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)

# Debian's python3-torchvision (CI installs it: .ci/run); torchvision itself, on its own torch
REFERENCE_PYTHON = "/usr/bin/python3"
TINY = ["data.format=voc", "data.workers=0", "optim.batch_size=8", "model.kwargs={width: 8}", "runtime.threads=1",
        "eval.batch_size=8"]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_synth")
    generate(root, SynthConfig(seed=2, num_train=16, num_val=4, size=64))
    return root


def throughput_args(out: Path, *extra: str) -> list[str]:
    return ["--archs", "tiny", "--batch-sizes", "2", "--amp", "off", "--warmup", "1", "--windows", "2", "--steps", "1",
            "--threads", "1", "--workers", "0", "--synth-size", "64", "--out", str(out), *extra]


def test_synthetic_batch_shapes_and_ranges() -> None:
    images, boxes, labels = synthetic_batch(3, 32, 5, num_classes=4, seed=1)
    assert images.shape == (3, 32, 32, 3) and images.dtype == torch.uint8
    assert boxes.shape == (3, 5, 4) and labels.shape == (3, 5) and labels.dtype == torch.long
    assert bool((boxes >= 0).all() and (boxes <= 1).all() and (boxes[..., 2:] > boxes[..., :2]).all())
    assert bool((labels >= 1).all() and (labels <= 3).all())
    assert torch.equal(synthetic_batch(3, 32, 5, 4, seed=1)[1], boxes)  # the recipe is seeded


def test_cases_put_compiled_ones_last() -> None:
    cases = train_throughput.ordered_cases(["a", "b"], [32, 64], ["bf16"], [True], [True, False])
    assert [c.compile for c in cases] == [False] * 4 + [True] * 4
    assert [(c.arch, c.batch_size) for c in cases[:4]] == [("a", 32), ("a", 64), ("b", 32), ("b", 64)]


def test_throughput_tiny_on_cpu(tmp_path, capsys) -> None:
    out = tmp_path / "tt.json"
    assert train_throughput.main(throughput_args(out, "--reference", "off")) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("train_throughput: tiny b2 off cl: model ")
    record = json.loads(out.read_text())
    assert record["ours"]["torch"] == torch.__version__ and record["skipped"] == [] and record["pending"] == []
    (row,) = record["rows"]
    assert (row["arch"], row["batch_size"], row["channels_last"], row["compile"], row["device"]) == ("tiny", 2, True, False, "cpu")
    for kind in ("model", "full"):
        stats = row[kind]
        assert len(stats["images_per_s_windows"]) == 2 and stats["loss_finite"]
        assert min(stats["images_per_s_windows"]) <= stats["images_per_s"] <= max(stats["images_per_s_windows"])
        assert stats["images_per_s"] > 0 and stats["step_ms_median"] > 0


def test_throughput_ratio_against_torchvision_in_another_interpreter(tmp_path) -> None:
    probe = subprocess.run([REFERENCE_PYTHON, "-c", "import torch, torchvision; print(torch.__version__)"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, ("this test needs torchvision under /usr/bin/python3: "
                                   "apt-get install -y python3-torchvision (.ci/run installs it)")
    out = tmp_path / "tt.json"
    assert train_throughput.main(throughput_args(out, "--kinds", "model", "--reference-python", REFERENCE_PYTHON)) == 0
    record = json.loads(out.read_text())
    (ref,) = record["torchvision"]
    assert "error" not in ref, ref
    assert ref["in_process"] is False and ref["torch"] == probe.stdout.strip() and ref["loss_finite"]
    assert (ref["model"], ref["batch_size"], ref["image_size"]) == ("ssdlite320_mobilenet_v3_large", 2, 128)
    (ratio,) = record["ratios"]
    assert ratio["ratio"] == pytest.approx(record["rows"][0]["model"]["images_per_s"] / ref["images_per_s"], rel=1e-3)
    assert ratio["torchvision_torch"] == ref["torch"] and ratio["same_torch"] == (ref["torch"] == torch.__version__)


def test_reference_without_torchvision_or_interpreter_is_an_error_not_a_number() -> None:
    timing = train_throughput.Timing(1, 1, 1)
    record = train_throughput.measure_reference("tiny", 2, 128, 5, "off", False, "cpu", timing, 8, 1, None)
    if train_throughput.torchvision_here():  # the GPU machine's interpreter: runs in process
        assert record["in_process"] is True and record["images_per_s"] > 0
    else:
        assert "--reference-python" in record["error"] and "images_per_s" not in record
    record = train_throughput.measure_reference("ssd512_vgg16", 2, 512, 5, "off", False, "cpu", timing, 8, 1, None)
    assert "no torchvision counterpart" in record["error"]


def test_throughput_bad_data_folder(tmp_path, capsys) -> None:
    assert train_throughput.main(throughput_args(tmp_path / "x.json", "--data", str(tmp_path / "missing"))) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_check_kill_resume_cpu_load_tiny(tmp_path, voc_root, capsys) -> None:
    out = tmp_path / "check.json"
    argv = ["--config", "tiny_synth", "--data", str(voc_root), "--output-dir", str(tmp_path / "runs"), "--out", str(out), *TINY]
    assert gpu_check.main(argv) == 0, capsys.readouterr()
    assert capsys.readouterr().out.startswith("gpu_check: PASS: killed after epoch 1, resumed to 2")
    record = json.loads(out.read_text())
    assert record["failures"] == [] and record["killed_after_epoch"] == 1 and record["final_epoch"] == 2
    assert record["epochs"] == [1, 2] and record["device"] == "cpu"
    assert record["checkpoint_runtime"]["amp"] == "bf16" and record["checkpoint_runtime"]["channels_last"] is True
    assert record["cpu_load"]["finite"] and record["cpu_load"]["cuda_visible"] is False
    assert record["cpu_load"]["loc"] == [1, record["cpu_load"]["priors"], 4]
    # a second run into the same folder refuses instead of mixing runs
    with pytest.raises(SystemExit, match="is not empty"):
        gpu_check.main(argv)


def test_gpu_check_needs_two_epochs_and_a_dataset(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        gpu_check.main(["--epochs", "1"])
    assert gpu_check.main(["--data", str(tmp_path / "missing")]) == 2
    assert "copy the dataset there first" in capsys.readouterr().err


def test_plan_epochs_from_a_probe() -> None:
    # epochs 5, 2, 2 s in a 30 s probe: 2 s per steady epoch, 21 s fixed; (100 - 21) // 2 = 39
    assert train_budget.plan_epochs(100, 30, [5.0, 2.0, 2.0], 5) == (39, 2.0, 21.0)
    assert train_budget.plan_epochs(10, 30, [5.0, 2.0, 2.0], 5)[0] == 5  # never below the floor


@pytest.mark.slow
def test_gpu_session_script_on_cpu_with_tiny_settings(tmp_path, voc_root) -> None:
    """The GPU session's orchestration, end to end, with the tiny arch on the CPU."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        **yaml.safe_load((CONFIG_DIR / "tiny_synth.yaml").read_text()),
        "name": "tiny_session", "model": {"arch": "tiny", "kwargs": {"width": 8}},
        "data": {"format": "voc", "root": str(voc_root), "train_split": "train", "val_split": "val", "workers": 0},
        "optim": {"epochs": 2, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0},
        "eval": {"every": 0, "batch_size": 8}, "runtime": {"threads": 1, "tensorboard": False, "plot": False},
    }))
    results = tmp_path / "out"
    env = {**os.environ, "OUT": str(results), "PY": sys.executable, "DEVICE": "cpu", "ARCHS": "tiny", "BATCHES": "2",
           "COMPILE": "off", "DATA": str(voc_root), "CONFIG": str(config), "WORKERS": "0", "RUNS": str(tmp_path / "runs"),
           "THROUGHPUT_ARGS": "--warmup 1 --windows 2 --steps 1 --threads 1 --reference off --train-split train --val-split val",
           "BUDGET_ARGS": "--probe-epochs 1 --min-epochs 1", "BCCD_BUDGET": "1", "BCCD_MIN": "1", "SESSION_S": "400"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = proc.stdout.split("---- summary")[-1]
    for prefix in ("train_throughput: tiny b2 bf16 cl: model", "gpu_check: PASS", "train_budget: ", "gpu_session: all steps ran"):
        assert prefix in summary, summary
    assert json.loads((results / "train_throughput.json").read_text())["rows"][0]["model"]["loss_finite"]
    assert json.loads((results / "gpu_check.json").read_text())["passed"]
    budget = json.loads((results / "train_budget.json").read_text())
    assert budget["epochs"] == 1 and len(budget["loss_by_epoch"]) == 1 and 0.0 <= budget["map50"] <= 1.0
    assert set(budget["per_class_ap50"]) == {"circle", "rectangle", "triangle", "star"}
    assert (results / "bccd_gpu_last.pt").is_file() and (results / "session.log").is_file()
