"""The edge app: camera frames -> runtime backend -> decode + NMS -> window / file / HTTP / JSON lines.

Imports numpy, OpenCV and one runtime (ONNX Runtime, OpenVINO or LiteRT), never torch.
Every heavy import happens inside the function that needs it, so importing this package
(or ``edge_app.cli``) is cheap and works on a device that has only one runtime.

Entry points:
    ``edge_app.app.run(RunOptions(...)) -> RunSummary``        the whole app (``ssd-edge``)
    ``edge_app.backends.open_backend(path, threads=...)``       one artifact behind ``infer``
    ``edge_app.detector.Detector(backend).detect(frame_bgr)``   one frame -> ``ssd.Detections``
    ``edge_app.sources.open_source(uri)``                       one URI -> frames
"""
