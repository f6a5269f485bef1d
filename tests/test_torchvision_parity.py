"""The imported detectors against real torchvision (Debian's python3-torchvision under /usr/bin/python3).

``tests/torchvision_reference.py`` builds torchvision's ``ssd300_vgg16`` and
``ssdlite320_mobilenet_v3_large`` with random weights and writes their state dicts, their
head outputs, anchors and own forward + postprocess detections as plain numpy arrays; here
the project's model is built from that state dict (``train.models.torchvision_import``) and
must give the same priors, head outputs, boxes (1e-4), scores (1e-5) and detections.
`.ci/run` and `make test` install the package where they run as root; without it these skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd import cxcywh_to_xyxy, decode_and_nms, default_boxes

TV_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("torchvision_reference.py")


def _torchvision_available() -> bool:
    if not Path(TV_PYTHON).is_file():
        return False
    probe = subprocess.run([TV_PYTHON, "-c", "import torchvision.models.detection"], capture_output=True, timeout=120)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _torchvision_available(),
                                reason="needs Debian's python3-torchvision: apt-get install -y python3-torchvision")


def _reference(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([TV_PYTHON, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


@pytest.fixture(scope="module", params=["ssd300_vgg16", "ssdlite320_mobilenet_v3_large"])
def reference(request, tmp_path_factory) -> tuple[str, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("tv") / f"{request.param}.npz"
    _reference("detector", request.param, str(path))
    with np.load(path) as z:
        return request.param, {k: z[k] for k in z.files}


def _state(arrays: dict[str, np.ndarray], prefix: str = "state/") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}


def _match(ours, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
    """Same detections: equal count, the same sorted scores, and a one-to-one pairing on
    (label, box within 1e-4, score within 1e-5): exact ties in score may come in either order."""
    assert len(ours.scores) == len(scores) > 0
    np.testing.assert_allclose(ours.scores, scores, atol=1e-5, rtol=0)
    free = np.ones(len(scores), bool)
    for b, s, lab in zip(ours.boxes, ours.scores, ours.labels, strict=True):
        hit = free & (labels == lab) & (np.abs(scores - s) <= 1e-5) & (np.abs(boxes - b).max(axis=1) <= 1e-4)
        assert hit.any(), f"detection {lab} {s:.6f} {b} has no torchvision twin"
        free[np.flatnonzero(hit)[0]] = False


def test_imported_detector_equals_torchvision(reference) -> None:
    from train.models.torchvision_import import build_imported

    name, ref = reference
    model, detector, labels = build_imported(name, _state(ref))
    size = detector.spec.image_size
    assert len(labels) == 90 and labels[0] == "person" and labels[11] == "unused_12"
    # priors: torchvision's anchors are pixel xyxy of the same boxes in the same order
    np.testing.assert_allclose(cxcywh_to_xyxy(default_boxes(detector.spec)) * size, ref["anchors"], atol=1e-3, rtol=0)
    # normalization inside the graph equals torchvision's transform
    np.testing.assert_allclose(model.mean.flatten().numpy(), ref["image_mean"] * 255, rtol=1e-6)
    np.testing.assert_allclose(model.std.flatten().numpy(), ref["image_std"] * 255, rtol=1e-6)
    images = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        loc, conf = model(images)
    scale = max(1.0, float(np.abs(ref["conf"]).max()))
    np.testing.assert_allclose(loc.numpy(), ref["loc"], atol=2e-5 * scale, rtol=1e-4)
    np.testing.assert_allclose(conf.numpy(), ref["conf"], atol=2e-5 * scale, rtol=1e-4)
    detections = decode_and_nms(loc.numpy(), conf.numpy(), default_boxes(detector.spec), variances=detector.spec.variances,
                                score_threshold=float(ref["score_thresh"]), iou_threshold=float(ref["nms_thresh"]),
                                top_k=loc.shape[1] * conf.shape[2], max_detections=int(ref["detections_per_img"]))
    for i, det in enumerate(detections):
        # torchvision's boxes are pixels of the 300/320 px input image (the transform's resize is 1:1)
        _match(det, ref[f"det/{i}/boxes"] / size, ref[f"det/{i}/scores"], ref[f"det/{i}/labels"])


def test_import_cli_writes_a_checkpoint_that_loads(reference, tmp_path: Path) -> None:
    from train.checkpoint import load_model
    from train.import_cli import main

    name, ref = reference
    weights = tmp_path / f"{name}.pth"
    torch.save(_state(ref), weights)
    out = tmp_path / "imported.pt"
    assert main(["torchvision", name, "--weights", str(weights), "--out", str(out)]) == 0
    loaded = load_model(out)
    images = torch.from_numpy(ref["images"][:1]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        loc, _ = loaded.model(images)
    np.testing.assert_allclose(loc.numpy(), ref["loc"][:1], atol=1e-3, rtol=1e-4)
    assert loaded.checkpoint["imported_from"]["torchvision"] == name


def test_named_weights_are_torchvisions_published_urls() -> None:
    from train.models.pretrained import REGISTRY
    from train.models.torchvision_import import COCO_CATEGORIES_91

    published = json.loads(_reference("urls").stdout)
    assert list(COCO_CATEGORIES_91) == published.pop("coco_categories")
    for name, url in published.items():
        assert REGISTRY[name].url == url, name
        # torch.hub's convention: the file name ends in the first hex digits of its sha256
        assert url.rsplit("-", 1)[1].startswith(REGISTRY[name].sha256_prefix), name


def test_backbone_weights_in_torchvisions_key_layout(tmp_path: Path) -> None:
    """Real torchvision ImageNet state dicts (random values) load into every backbone."""
    from train.models import build_model
    from train.models.weights import load_backbone_weights

    path = tmp_path / "backbones.npz"
    _reference("backbones", str(path))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    cases = [("vgg16", "ssd300_vgg16", {}), ("vgg16_bn", "ssd300_vgg16", {"batch_norm": True}),
             ("mobilenet_v2", "ssdlite320_mobilenetv2", {}),
             ("mobilenet_v3_large", "ssdlite320_mobilenetv3_large", {"reduced_tail": False})]
    for tv_name, arch, kwargs in cases:
        state = _state(arrays, f"{tv_name}/")
        file = tmp_path / f"{tv_name}.pth"
        torch.save(state, file)
        model = build_model(arch, 3, **kwargs)
        report = load_backbone_weights(model, arch, file)
        # vgg16_bn: only the batch norms after conv6 / conv7 (no counterpart in a classifier) stay at init
        bn_after_fc = {f"features.vgg.{i}.{t}" for i in (45, 48)
                       for t in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
        assert set(report.missing) == (bn_after_fc if tv_name == "vgg16_bn" else set()), (tv_name, report.summary())
        assert report.mismatched == [], (tv_name, report.summary())
        assert all(k.startswith("classifier.") for k in report.unexpected), (tv_name, report.unexpected)
        own = model.state_dict()
        first_conv = "features.0.weight" if tv_name.startswith("vgg") else "features.0.0.weight"
        target = "features.vgg.0.weight" if tv_name.startswith("vgg") else "features.features.0.0.weight"
        assert torch.equal(own[target], state[first_conv]), tv_name
        if tv_name.startswith("vgg"):  # conv biases kept (vgg16_bn has them too); fc6 subsampled into conv6
            assert torch.equal(own["features.vgg.0.bias"], state["features.0.bias"])
            conv6 = model.features.vgg_base_len + 1
            assert torch.equal(own[f"features.vgg.{conv6}.bias"], state["classifier.0.bias"][::4])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
