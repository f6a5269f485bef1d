"""Give a randomly initialised SSD trained-like output statistics, for conversion checks.

An untrained SSD's heads output near-zero logits (every prior is equally unsure), so INT8
validation could only compare raw outputs. :func:`lively_model` re-estimates BatchNorm
statistics on real images and rescales the last convolution of every head so that ``conf``
logits have a spread like a trained detector's (a background bias plus image-dependent
foreground peaks) and ``loc`` offsets a spread of about 0.5. The detections it makes are
meaningless, but they are a deterministic, image-dependent function that a correct
conversion must reproduce and a broken one (wrong channel order, collapsed ranges) does not.
Used by the tests and the benchmarks; never by a real conversion.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from convert.errors import require
from convert.layers import head_output_layers


def lively_model(
    model,
    batches: Iterable[np.ndarray],
    conf_std: float = 3.0,
    loc_std: float = 0.5,
    background: float = 10.0,
    bn_gain: float = 1.0,
):
    """Adjust ``model`` in place (see module docstring); returns it in eval mode.

    batches: float NCHW pixel batches ``(N, 3, S, S)`` in ``[0, 255]`` (a few are enough).
    bn_gain: every BatchNorm scale is multiplied by this after re-estimation. A deep random
        network with unit-variance BN (MobileNetV2) is chaotic: sub-grey-level input noise
        changes its outputs completely (SQNR ~2 dB), which no INT8 model can reproduce and no
        trained model does. 0.85 makes it contractive enough (~30 dB) to stay image-dependent.
    """
    torch = require("torch")
    batches = [torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)) for b in batches]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    model.eval()
    with torch.no_grad():
        for bn in bns:
            if bn.weight is not None:
                bn.weight.mul_(bn_gain)
    c = model.num_classes
    loc_convs = [conv for _, conv in head_output_layers(model, "loc_heads")]
    conf_convs = [conv for _, conv in head_output_layers(model, "conf_heads")]
    with torch.no_grad():
        for conv in loc_convs + conf_convs:
            if conv.bias is not None:
                conv.bias.zero_()
        loc, conf = model(batches[0])
        loc_scale = loc_std / max(float(loc.std()), 1e-12)
        conf_scale = conf_std / max(float(conf.std()), 1e-12)
        for conv in loc_convs:
            conv.weight.mul_(loc_scale)
        for conv in conf_convs:
            conv.weight.mul_(conf_scale)
            if conv.bias is not None:
                background_channels = torch.arange(conv.out_channels) % c == 0
                conv.bias[background_channels] = background
    return model.eval()


def save_lively_checkpoint(
    path,
    arch: str,
    labels: list[str],
    images: np.ndarray,
    seed: int = 0,
    bn_gain: float = 1.0,
    **model_kwargs,
):
    """Build ``arch`` with random weights (``seed``), :func:`lively_model` it on ``images``
    (``(N, 3, S, S)`` uint8 or float pixels) and save a checkpoint with
    ``train.checkpoint.save_checkpoint``; returns the path."""
    torch = require("torch")
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    torch.manual_seed(seed)
    model = build_model(arch, len(labels) + 1, **model_kwargs)
    chunks = [images[i : i + 8].astype(np.float32) for i in range(0, min(len(images), 32), 8)]
    lively_model(model, chunks, bn_gain=bn_gain)
    save_checkpoint(
        {"model": model.state_dict(), "arch": arch, "model_kwargs": dict(model_kwargs), "spec": model.spec.to_dict(),
         "labels": list(labels)},
        path,
    )
    return path


def sensitize(model, bn: str = "features.stem.0.1", consumer: str = "features.stem.1.0", channel: int = 0,
              factor: float = 1000.0):
    """Give ``model`` one layer with a wide activation range, without changing what it computes.

    Channel ``channel`` of the BatchNorm ``bn`` (followed by a ReLU) is scaled by ``factor`` and
    the convolution ``consumer`` that reads it divides its weights for that input channel by
    ``factor`` (ReLU is positively homogeneous, so FP32 outputs stay the same up to rounding).
    Per-tensor INT8 of that activation then rounds every other channel to zero, and
    per-channel INT8 weights of ``consumer`` lose the shrunken input channel: INT8 collapses
    until those layers stay float. Returns ``model`` (changed in place).
    """
    torch = require("torch")
    modules = dict(model.named_modules())
    with torch.no_grad():
        modules[bn].weight[channel] *= factor
        modules[bn].bias[channel] *= factor
        modules[consumer].weight[:, channel] /= factor
    return model
