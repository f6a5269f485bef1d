"""One module per backend: its exporters and, where it has its own, its post-write check.

:mod:`convert.exporters.onnx` (ONNX Runtime FP32/FP16/INT8, and the hub graph's I/O every
ONNX-derived format shares), :mod:`convert.exporters.openvino` (IR, NNCF INT8),
:mod:`convert.exporters.tflite` (litert-torch, PT2E INT8 and its full-integer rule) and
:mod:`convert.exporters.tensorrt` (the calibration-table and QDQ artifacts and their checks).
The table that names them is :mod:`convert.formats`.
"""
