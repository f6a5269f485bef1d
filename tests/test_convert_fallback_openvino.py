"""The OpenVINO half of the float fallback: NNCF ``ignored_scope`` from the layer names.

Its own file (and pytest process stage with the other convert tests): OpenVINO only, no
litert. The sensitive model and its pseudo ground truth come from test_convert_fallback.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

from tests.test_convert_fallback import SENSITIVE, sensitive  # noqa: E402,F401  (the fixture)


def test_openvino_ignored_scope_leaves_the_wide_layers_float(sensitive):  # noqa: F811
    from calibration.sets import load_calibration_set
    from convert.context import ConvertOptions, ExportContext
    from convert.fallback import export_variant
    from convert.source import load_source

    tmp, ckpt = sensitive
    work = Path(tempfile.mkdtemp(dir=tmp))
    ctx = ExportContext(load_source(ckpt), load_calibration_set(tmp / "calib"), ConvertOptions(validate_images=4), work,
                        log=lambda s: None)
    meter = ctx.meter()
    plain, _ = export_variant(ctx, "openvino_int8", [], work)
    fixed, sidecar = export_variant(ctx, "openvino_int8", sorted(SENSITIVE), work)
    plain_map = meter.measure(plain.artifact).map50
    fixed_map = meter.measure(fixed.artifact).map50
    assert plain_map < meter.fp32_map50 - 5, "plain NNCF PTQ breaks the sensitive model"
    assert fixed_map > plain_map + 50 and fixed_map >= meter.fp32_map50 - 5.0, (plain_map, fixed_map, meter.fp32_map50)
    assert len(sidecar.extra["quantization"]["ignored_scope"]) == 2
