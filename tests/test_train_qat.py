"""ssd-qat: BN folding is exact, and a fine-tuned checkpoint is an ordinary one that ssd-convert takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from tests.voc_dataset import write_voc_dataset  # noqa: E402
from train.checkpoint import load_model, read_checkpoint, save_checkpoint  # noqa: E402
from train.models import build_model  # noqa: E402
from train.qat import QATOptions, fold_batchnorm, main, prepare, trained_state  # noqa: E402

LABELS = ["red", "green", "blue"]


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("tiny", len(LABELS) + 1, width=8)
    model.train()
    with torch.no_grad():  # non-trivial BN statistics
        for _ in range(3):
            model(torch.rand(4, 3, 128, 128) * 255)
    model.eval()
    save_checkpoint({"model": model.state_dict(), "arch": "tiny", "model_kwargs": {"width": 8}, "spec": model.spec.to_dict(),
                     "labels": LABELS}, path)
    return path


def test_folding_and_writing_back_keep_the_function(tmp_path):
    import copy

    loaded = load_model(_checkpoint(tmp_path / "c.pt"))
    model = loaded.model.eval()
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.no_grad():
        ref = model(x)
        folded_model = copy.deepcopy(model)
        folded = fold_batchnorm(folded_model)
        assert folded and all(not isinstance(m, torch.nn.BatchNorm2d) for m in folded_model.modules())
        out = folded_model(x)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-3) for a, b in zip(ref, out, strict=True))
    prepared, folded = prepare(model, 128, 2)  # untrained: writing back must give the original function
    state = trained_state(prepared, model.state_dict(), folded)
    back = build_model("tiny", len(LABELS) + 1, width=8).eval()
    back.load_state_dict(state, strict=True)
    with torch.no_grad():
        again = back(x)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-3) for a, b in zip(ref, again, strict=True))


def test_cli_fine_tunes_and_writes_an_ordinary_checkpoint(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "c.pt")
    data = write_voc_dataset(tmp_path / "voc", 16, size=128, classes=LABELS, seed=0)
    out = tmp_path / "qat.pt"
    assert main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "8"]) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    payload = read_checkpoint(out)
    assert payload["qat"]["epochs"] == 1 and payload["arch"] == "tiny"
    before, after = read_checkpoint(ckpt)["model"], payload["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight")), "the weights were trained"
    load_model(out)  # strict load into the same arch
    assert np.isfinite(sum(float(v.float().abs().sum()) for v in after.values()))
    assert QATOptions(ckpt, data, out).epochs == 2
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(data), "--out", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()
