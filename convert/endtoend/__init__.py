"""End-to-end artifacts: decode + NMS inside the model, with each runtime's own detection op.

:mod:`convert.endtoend.exporters` builds each ``*_e2e`` format from its raw-head twin;
:mod:`convert.endtoend.onnx_nms` (ONNX ``NonMaxSuppression``, TensorRT ``EfficientNMS_TRT``),
:mod:`convert.endtoend.openvino_detection_output` (OpenVINO ``DetectionOutput``) and
:mod:`convert.endtoend.tflite_postprocess` (``TFLite_Detection_PostProcess``) append the op;
:mod:`convert.endtoend.check` validates the result against the app's own decode + NMS and
:mod:`convert.endtoend.tensorrt_nms_check` checks the TensorRT graph statically.
"""
