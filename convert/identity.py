"""Write a model's identity (:class:`ssd.identity.ModelIdentity`) into the model file itself.

One function per format, each in the format's own metadata, each an atomic rewrite (temp name
+ rename) of the staged file before its sha256 is taken:

- ONNX: ``ModelProto.metadata_props`` (ONNX Runtime: ``session.get_modelmeta().custom_metadata_map``);
- OpenVINO IR: ``rt_info`` under ``ssd_edge`` (``model.get_rt_info(["ssd_edge", key])``); the
  ``.bin`` is rewritten with it, uncompressed (weights keep the precision they have);
- TFLite: a ``Model.metadata`` entry named :data:`TFLITE_METADATA_NAME` whose buffer holds the
  identity as JSON (read back by :mod:`edge_app.backends.identity` without any schema package).

Readers: :mod:`edge_app.backends.identity`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from convert.errors import ConvertError
from ssd.identity import TFLITE_METADATA_NAME, ModelIdentity


def stamp_identity(artifact: Path, identity: ModelIdentity, extra_rt_info: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Write ``identity`` into ``artifact`` (by suffix: ``.onnx``, ``.xml``, ``.tflite``).

    extra_rt_info: OpenVINO only, further ``rt_info`` sections (``{"model_info": {...}}`` for
        the OpenVINO Model API), written in the same rewrite.
    """
    suffix = artifact.suffix.lower()
    metadata = identity.to_metadata()
    if suffix == ".onnx":
        stamp_onnx(artifact, metadata)
    elif suffix == ".xml":
        stamp_openvino(artifact, metadata, extra_rt_info or {})
    elif suffix == ".tflite":
        stamp_tflite(artifact, metadata)
    else:
        raise ConvertError(f"cannot write an identity into {artifact.name}: unknown model suffix {suffix!r}")


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.identity.tmp{path.suffix}")


def stamp_onnx(path: Path, metadata: Mapping[str, str]) -> None:
    """``metadata`` into ``metadata_props`` (existing keys replaced, others kept)."""
    import onnx

    model = onnx.load(os.fspath(path))
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    tmp = _tmp(path)
    onnx.save(model, os.fspath(tmp))
    os.replace(tmp, path)


def stamp_openvino(xml: Path, metadata: Mapping[str, str], extra: Mapping[str, Mapping[str, str]]) -> None:
    """``metadata`` into ``rt_info["ssd_edge"]`` (plus ``extra`` sections), IR rewritten in place."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(os.fspath(xml))
    for key, value in metadata.items():
        model.set_rt_info(value, ["ssd_edge", key.split(".", 1)[1]])
    for section, values in extra.items():
        for key, value in values.items():
            model.set_rt_info(value, [section, key])
    tmp = _tmp(xml)
    ov.save_model(model, os.fspath(tmp), compress_to_fp16=False)
    del model
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp, xml)


def stamp_tflite(path: Path, metadata: Mapping[str, str]) -> None:
    """A ``Model.metadata`` entry :data:`TFLITE_METADATA_NAME` -> a buffer with ``metadata`` as JSON."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from convert.endtoend.tflite_metadata import packed_files, write_with_files

    model = flatbuffer_utils.read_model(os.fspath(path))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(dict(metadata), sort_keys=True).encode())
    existing = [m for m in (model.metadata or []) if _name(m.name) == TFLITE_METADATA_NAME]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = TFLITE_METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    write_with_files(model, path, packed_files(path))  # keeps associated files (labels.txt) packed in it


def _name(name: str | bytes | None) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")
