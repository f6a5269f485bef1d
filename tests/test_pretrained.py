"""Named weights: fetched over HTTP from a 127.0.0.1 server and from file://, cached, hash-checked."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from train.models.pretrained import REGISTRY, WeightsFetchError, fetch, imagenet_name, resolve


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Handler.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def served(tmp_path: Path):
    """A folder served on 127.0.0.1 and a weights-like file in it named with its sha256 prefix."""
    root = tmp_path / "www"
    root.mkdir()
    payload = b"not really a state dict, just bytes " * 5000
    digest = hashlib.sha256(payload).hexdigest()
    name = f"backbone-{digest[:8]}.pth"
    (root / name).write_bytes(payload)
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}", root, name, payload, digest
    server.shutdown()
    server.server_close()


def test_http_fetch_is_cached_and_checked(served, tmp_path: Path) -> None:
    base, _root, name, payload, digest = served
    cache = tmp_path / "cache"
    path = fetch(f"{base}/{name}", directory=cache, progress=False)
    assert path == cache / name and path.read_bytes() == payload
    assert fetch(f"{base}/{name}", directory=cache, progress=False) == path
    assert _Handler.requests == [f"/{name}"]  # the second call used the cache
    assert not list(cache.glob("*.part"))  # no temporary left behind
    # a corrupted cached copy is fetched again
    path.write_bytes(b"corrupt")
    assert fetch(f"{base}/{name}", directory=cache, progress=False).read_bytes() == payload
    assert len(_Handler.requests) == 2


def test_hash_mismatch_is_one_line_naming_the_destination(served, tmp_path: Path) -> None:
    base, root, name, _payload, _digest = served
    wrong = "badname-0123abcd.pth"
    (root / wrong).write_bytes(b"other bytes")
    with pytest.raises(WeightsFetchError) as err:
        fetch(f"{base}/{wrong}", directory=tmp_path / "cache", progress=False)
    message = str(err.value)
    assert "\n" not in message and "0123abcd" in message and str(tmp_path / "cache" / wrong) in message
    assert not (tmp_path / "cache" / wrong).exists()
    # an explicit prefix is checked too
    with pytest.raises(WeightsFetchError, match="not the published"):
        fetch(f"{base}/{name}", sha256_prefix="ffffffff", directory=tmp_path / "c2", progress=False)


def test_offline_says_which_file_to_put_where(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsFetchError) as err:
        fetch(f"http://127.0.0.1:{port}/vgg16-397923af.pth", directory=tmp_path, progress=False)
    assert "by hand and put it at" in str(err.value) and str(tmp_path / "vgg16-397923af.pth") in str(err.value)


def test_file_url_and_local_path(served, tmp_path: Path) -> None:
    _base, root, name, payload, _digest = served
    path, what = resolve((root / name).as_uri(), directory=tmp_path / "cache", progress=False)
    assert path.read_bytes() == payload and "cached at" in what
    local, what = resolve(str(root / name))
    assert local == root / name and what.startswith("local file")
    with pytest.raises(WeightsFetchError, match="neither a file, a URL nor one of"):
        resolve(str(tmp_path / "missing.pth"))


def test_named_weights_resolve_per_arch(monkeypatch, served, tmp_path: Path) -> None:
    base, _root, name, payload, digest = served
    assert imagenet_name("ssd300_vgg16") == "vgg16"
    assert imagenet_name("ssd300_vgg16", {"batch_norm": True}) == "vgg16_bn"
    assert imagenet_name("ssdlite320_mobilenetv2") == "mobilenet_v2"
    assert imagenet_name("ssdlite320_mobilenetv3_large") == "mobilenet_v3_large"
    with pytest.raises(WeightsFetchError, match="scratch"):
        imagenet_name("tiny")
    # the registry's entry, pointed at the local server, goes through the same fetch
    from train.models import pretrained

    monkeypatch.setitem(pretrained.REGISTRY, "mobilenet_v2",
                        pretrained.NamedWeights(f"{base}/{name}", digest[:8], "test copy"))
    path, what = resolve("imagenet", "ssdlite320_mobilenetv2", directory=tmp_path / "cache", progress=False)
    assert path.read_bytes() == payload and "sha256" in what and "test copy" in what
    assert REGISTRY["vgg16"].url.startswith("https://download.pytorch.org/models/")
