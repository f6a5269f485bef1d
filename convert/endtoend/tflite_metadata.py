"""TFLite model metadata for an object detector with post-processing in the model, as MediaPipe's
``ObjectDetector`` (and the TFLite Task Library) read it, written without MediaPipe.

The ``TFLITE_METADATA`` entry of ``Model.metadata`` holds a ``ModelMetadata`` flatbuffer (file
identifier ``M001``, the schema ``mediapipe/tasks/metadata/metadata_schema.fbs``), the layout
MediaPipe's own ``ObjectDetectorWriter.create_for_models_with_nms`` writes:

- input ``image``: ``ImageProperties`` (RGB), ``NormalizationOptions`` mean 0 / std 1 (the
  model normalizes inside), stats min 0 / max 255;
- outputs, in the model's output order: ``location`` (``BoundingBoxProperties`` index
  ``[1, 0, 3, 2]``, BOUNDARIES, RATIO: ``[y1, x1, y2, x2]`` in [0, 1]), ``category`` (with the
  associated file ``labels.txt``, TENSOR_VALUE_LABELS: line ``i`` names class ``i``), ``score``,
  ``number of detections``; the first three grouped as ``detection_result``.

``labels.txt`` is packed into the model file as a zip archive appended to the flatbuffer (how
TFLite metadata carries associated files; the interpreter ignores the trailing bytes).
Built with the ``flatbuffers`` builder and the schema's field slots (MediaPipe 1.2.2's Python
metadata writers cannot run: their ``_pywrap_metadata_version`` extension is not in the wheel).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from ssd.sidecar import InGraphPostprocess

METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"
# enum values of metadata_schema.fbs
_RGB, _BOUNDARIES, _RATIO, _TENSOR_VALUE_LABELS = 1, 1, 0, 3
_FEATURE, _IMAGE, _BOUNDING_BOX = 1, 2, 3
_NORMALIZATION = 1


def metadata_buffer(labels: list[str], post: InGraphPostprocess) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for the end-to-end detector."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def string(text: str) -> int:
        return b.CreateString(text)

    def table(slots: list[tuple[str, int, int]], size: int) -> int:
        """slots: (kind, slot, value) with kind 'off' (offset), 'i8', 'u8', 'i32'."""
        b.StartObject(size)
        for kind, slot, value in slots:
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "i8":
                b.PrependInt8Slot(slot, value, -1)
            elif kind == "u8":
                b.PrependUint8Slot(slot, value, 0)
            elif kind == "i32":
                b.PrependInt32Slot(slot, value, -1)
        return b.EndObject()

    def offsets(items: list[int]) -> int:
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    def scalars(values: list, prepend) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            prepend(v)
        return b.EndVector()

    def floats(values: list[float]) -> int:
        return scalars(values, b.PrependFloat32)

    def ints(values: list[int]) -> int:
        return scalars(values, b.PrependUint32)

    def value_range() -> int:  # ValueRange {min: 0, max: 1}: the content's dimension (2) in [min, max]
        return table([("i32", 0, 2), ("i32", 1, 2)], 2)

    def content(kind: int, properties: int, with_range: bool = True) -> int:
        slots = [("u8", 0, kind), ("off", 1, properties)]
        if with_range:
            slots.append(("off", 2, value_range()))
        return table(slots, 3)

    def tensor(name: str, description: str, content_offset: int | None = None, process_units: int | None = None,
               stats: int | None = None, files: int | None = None) -> int:
        name_o, desc_o = string(name), string(description)
        slots = [("off", 0, name_o), ("off", 1, desc_o)]
        for slot, value in ((3, content_offset), (4, process_units), (5, stats), (6, files)):
            if value is not None:
                slots.append(("off", slot, value))
        return table(slots, 7)

    # input image
    image_props = table([("i8", 0, _RGB)], 2)
    norm = table([("off", 0, floats([0.0])), ("off", 1, floats([1.0]))], 2)
    unit = table([("u8", 0, _NORMALIZATION), ("off", 1, norm)], 2)
    stats = table([("off", 0, floats([255.0])), ("off", 1, floats([0.0]))], 2)
    image = tensor("image", "Input image, RGB, pixels 0..255 (normalization is inside the model).",
                   content(_IMAGE, image_props, with_range=False), offsets([unit]), stats)
    # outputs
    box_props = table([("off", 0, ints([1, 0, 3, 2])), ("i8", 1, _BOUNDARIES), ("i8", 2, _RATIO)], 3)
    location = tensor("location", "The locations of the detected boxes.", content(_BOUNDING_BOX, box_props))
    label_file = table([("off", 0, string(LABELS_FILE)), ("off", 1, string("Labels for objects that the model can detect.")),
                        ("i8", 2, _TENSOR_VALUE_LABELS)], 5)
    feature = table([], 0)
    category = tensor("category", "The categories of the detected boxes.", content(_FEATURE, feature),
                      files=offsets([label_file]))
    score = tensor("score", "The scores of the detected boxes.", content(_FEATURE, table([], 0)))
    number = tensor("number of detections", "The number of the detected boxes.")
    group = table([("off", 0, string("detection_result")),
                   ("off", 1, offsets([string("location"), string("category"), string("score")]))], 2)
    subgraph = table([("off", 2, offsets([image])), ("off", 3, offsets([location, category, score, number])),
                      ("off", 8, offsets([group]))], 10)
    description = (f"SSD with decode + NMS inside (TFLite_Detection_PostProcess: score > {post.score_threshold:g}, "
                   f"IoU {post.iou_threshold:g}, {post.max_detections} detections), converted by ssd-convert.")
    model = table([("off", 0, string("ObjectDetector")), ("off", 1, string(description)),
                   ("off", 3, offsets([subgraph])), ("off", 7, string(MIN_PARSER_VERSION))], 8)
    b.Finish(model, file_identifier=b"M001")
    return bytes(b.Output())


def add_object_detector_metadata(path: Path, labels: list[str], post: InGraphPostprocess) -> None:
    """Write the ``TFLITE_METADATA`` entry into the model at ``path`` and append ``labels.txt``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(os.fspath(path))
    buffer = schema.BufferT()
    buffer.data = list(metadata_buffer(labels, post))
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME] + [entry]
    write_with_files(model, path, {LABELS_FILE: "\n".join(labels).encode() + b"\n"})


def _name(name: str | bytes | None) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")


def packed_files(path: Path) -> dict[str, bytes]:
    """Associated files packed (as a zip appended) into a TFLite model; ``{}`` when none."""
    data = Path(path).read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_with_files(model: object, path: Path, files: dict[str, bytes]) -> None:
    """Serialize ``model`` (a schema ``ModelT``) to ``path`` and append ``files`` as a zip archive."""
    from ai_edge_litert.tools import flatbuffer_utils

    tmp = path.with_name(f".{path.name}.{os.getpid()}.meta.tmp")
    tmp.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    if files:  # as MediaPipe's populator packs them: a zip archive opened in append mode on the model
        with zipfile.ZipFile(tmp, "a", zipfile.ZIP_STORED) as z:
            for name, content in files.items():
                z.writestr(name, content)
    os.replace(tmp, path)
