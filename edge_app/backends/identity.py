"""Read the identity a model file carries (:mod:`convert.identity` wrote it) and check the sidecar.

Every backend calls :func:`check_file_identity` with the metadata its runtime exposes, so a
sidecar that belongs to another artifact or another checkpoint is refused by name even with its
``artifact_sha256`` fixed up to match the file (:func:`ssd.identity.check_identity`).

- ONNX Runtime: ``session.get_modelmeta().custom_metadata_map``;
- OpenVINO: ``model.get_rt_info()["ssd_edge"]``;
- TFLite: :func:`tflite_metadata` parses the flatbuffer's ``Model.metadata`` table by hand
  (a few lines of the FlatBuffers wire format), so a device with only ``tflite-runtime`` (no
  schema package, no ``flatbuffers``) reads it too.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssd.identity import PREFIX, TFLITE_METADATA_NAME, ModelIdentity, check_identity
from ssd.sidecar import Sidecar, SidecarError


def check_file_identity(metadata: Mapping[str, str], sidecar: Sidecar, artifact: Path) -> None:
    """Refuse ``sidecar`` unless the identity in ``metadata`` (the file's) is the one it claims."""
    check_identity(ModelIdentity.from_metadata(metadata), sidecar, artifact.name)


def openvino_metadata(model: Any) -> dict[str, str]:
    """``rt_info["ssd_edge"]`` of an ``openvino.Model`` as ``{"ssd_edge.<key>": value}``."""
    info = model.get_rt_info()
    if "ssd_edge" not in info:
        return {}
    section = info["ssd_edge"]
    section = section.astype(dict) if hasattr(section, "astype") else dict(section)
    return {PREFIX + str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in section.items()}


class _Table:
    """One FlatBuffers table in ``buf`` at ``pos`` (little-endian wire format)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable = vtable
        self.vtable_len = struct.unpack_from("<H", buf, vtable)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot >= self.vtable_len:
            return 0
        offset = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + offset if offset else 0

    def _indirect(self, at: int) -> int:
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def uint32(self, index: int) -> int:
        at = self._field(index)
        return struct.unpack_from("<I", self.buf, at)[0] if at else 0

    def uint64(self, index: int) -> int:
        at = self._field(index)
        return struct.unpack_from("<Q", self.buf, at)[0] if at else 0

    def string(self, index: int) -> str:
        at = self._field(index)
        if not at:
            return ""
        start = self._indirect(at)
        length = struct.unpack_from("<I", self.buf, start)[0]
        return self.buf[start + 4 : start + 4 + length].decode("utf-8", "replace")

    def vector(self, index: int) -> tuple[int, int]:
        """``(start of elements, length)`` of a vector field (``(0, 0)`` when absent)."""
        at = self._field(index)
        if not at:
            return 0, 0
        start = self._indirect(at)
        return start + 4, struct.unpack_from("<I", self.buf, start)[0]

    def tables(self, index: int) -> list[_Table]:
        start, length = self.vector(index)
        return [_Table(self.buf, self._indirect(start + 4 * i)) for i in range(length)]


# tflite schema field indices: Model.buffers = 4, Model.metadata = 6; Metadata.name = 0,
# Metadata.buffer = 1; Buffer.data = 0, Buffer.offset = 1, Buffer.size = 2
def tflite_metadata(path: Path) -> dict[str, str]:
    """The identity entry of a ``.tflite`` file as ``{"ssd_edge.<key>": value}`` (``{}`` if none)."""
    buf = Path(path).read_bytes()
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        for entry in model.tables(6):
            if entry.string(0) != TFLITE_METADATA_NAME:
                continue
            buffer = model.tables(4)[entry.uint32(1)]
            start, length = buffer.vector(0)
            data = buf[start : start + length] if length else buf[buffer.uint64(1) : buffer.uint64(1) + buffer.uint64(2)]
            values = json.loads(data.decode("utf-8"))
            return {str(k): str(v) for k, v in values.items()}
    except (struct.error, IndexError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise SidecarError(f"cannot read the identity in {Path(path).name} ({type(exc).__name__}); the file is corrupt "
                           "or not a TFLite model: re-run ssd-convert") from None
    return {}
