"""Model shapes per spec, exportability, registry, L2Norm and backbone-weight loading."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from ssd import default_boxes, get_spec
from train.models import ARCHS, build_model
from train.models.layers import L2Norm
from train.models.weights import WeightsError, load_backbone_weights, load_init_weights

torch.set_num_threads(2)


@pytest.mark.parametrize(
    ("arch", "kwargs", "priors"),
    [
        ("ssd300_vgg16", {}, 8732),
        ("ssd300_vgg16", {"batch_norm": True}, 8732),
        ("ssd512_vgg16", {}, 24564),
        ("ssdlite320_mobilenetv2", {}, 3234),
        ("ssdlite320_mobilenetv2", {"width": 0.5}, 3234),
        ("tiny", {}, 1520),
    ],
)
def test_output_shapes_match_prior_count(arch: str, kwargs: dict, priors: int) -> None:
    model = build_model(arch, 4, **kwargs).eval()
    size = model.spec.image_size
    with torch.no_grad():
        loc, conf = model(torch.zeros(1, 3, size, size))
    assert len(default_boxes(model.spec)) == priors
    assert loc.shape == (1, priors, 4)
    assert conf.shape == (1, priors, 4)
    # per-map feature sizes equal the spec's (heads see exactly the maps the priors describe)
    maps = model.features((torch.zeros(1, 3, size, size) - model.mean) / model.std)
    assert tuple(m.shape[-1] for m in maps) == model.spec.feature_maps
    assert tuple(m.shape[-2] for m in maps) == model.spec.feature_maps


def test_heads_derive_boxes_per_location_from_spec() -> None:
    model = build_model("ssd300_vgg16", 21)
    outs = [h.out_channels for h in model.loc_heads]
    assert outs == [4 * b for b in get_spec("ssd300").boxes_per_location] == [16, 24, 24, 24, 16, 16]
    assert [h.out_channels for h in model.conf_heads] == [21 * b for b in get_spec("ssd300").boxes_per_location]


def test_vgg_structure_follows_the_paper() -> None:
    model = build_model("ssd300_vgg16", 2)
    vgg = model.features.vgg
    pool5 = vgg[model.features.vgg_base_len]
    conv6, conv7 = vgg[model.features.vgg_base_len + 1], vgg[model.features.vgg_base_len + 3]
    assert isinstance(pool5, torch.nn.MaxPool2d) and pool5.kernel_size == 3 and pool5.stride == 1
    assert conv6.dilation == (6, 6) and conv6.out_channels == 1024 and conv6.kernel_size == (3, 3)
    assert conv7.kernel_size == (1, 1) and conv7.out_channels == 1024
    assert torch.all(model.features.l2norm.weight == 20)


def test_ssdlite_uses_depthwise_separable_heads() -> None:
    model = build_model("ssdlite320_mobilenetv2", 3)
    depthwise = model.loc_heads[0][0][0]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels
    assert model.loc_heads[0][1].kernel_size == (1, 1)
    narrow = build_model("ssdlite320_mobilenetv2", 3, width=0.5)
    assert sum(p.numel() for p in narrow.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())


def test_l2norm_scales_unit_vectors() -> None:
    layer = L2Norm(8, scale=20.0)
    x = torch.randn(2, 8, 3, 3) * 50
    y = layer(x)
    assert torch.allclose(y.norm(dim=1), torch.full((2, 3, 3), 20.0), rtol=1e-5)
    assert layer(x.half()).dtype == torch.float16


def test_tiny_exports_to_onnx_and_matches_torch() -> None:
    onnx = pytest.importorskip("onnx")
    model = build_model("tiny", 5).eval()
    x = torch.rand(1, 3, 128, 128) * 255
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["images"], output_names=["loc", "conf"], opset_version=17)
    proto = onnx.load_from_string(buf.getvalue())
    assert [o.name for o in proto.graph.output] == ["loc", "conf"]
    from edge_app.backends.ort_backend import create_session

    session = create_session(buf.getvalue())
    loc, conf = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_loc, ref_conf = model(x)
    np.testing.assert_allclose(loc, ref_loc.numpy(), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(conf, ref_conf.numpy(), atol=1e-3, rtol=1e-3)


def test_tiny_torch_export() -> None:
    model = build_model("tiny", 3).eval()
    program = torch.export.export(model, (torch.zeros(1, 3, 128, 128),))
    loc, conf = program.module()(torch.zeros(1, 3, 128, 128))
    assert loc.shape == (1, 1520, 4) and conf.shape == (1, 1520, 3)


def test_registry_errors() -> None:
    assert set(ARCHS) >= {"tiny", "ssd300_vgg16", "ssd512_vgg16", "ssdlite320_mobilenetv2"}
    with pytest.raises(KeyError, match="unknown model arch"):
        build_model("resnet", 3)
    with pytest.raises(ValueError, match="background"):
        build_model("tiny", 1)
    with pytest.raises(ValueError, match="takes no argument 'depth'"):
        build_model("tiny", 3, depth=2)


def test_mobilenet_backbone_weights_from_torchvision_keys(tmp_path) -> None:
    source = build_model("ssdlite320_mobilenetv2", 3)
    torchvision_style = {k.removeprefix("features."): v.clone() for k, v in source.state_dict().items()
                         if k.startswith("features.features.")}
    torchvision_style["classifier.1.weight"] = torch.zeros(1000, 1280)
    torchvision_style["classifier.1.bias"] = torch.zeros(1000)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision_style, path)
    target = build_model("ssdlite320_mobilenetv2", 3)
    report = load_backbone_weights(target, "ssdlite320_mobilenetv2", path)
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == ["classifier.1.bias", "classifier.1.weight"]
    assert len(report.loaded) == len(torchvision_style) - 2
    for key in ("features.features.0.0.weight", "features.features.14.conv.0.1.running_var"):
        assert torch.equal(target.state_dict()[key], source.state_dict()[key])


def _torchvision_vgg16_features() -> dict[str, torch.Tensor]:
    """torchvision's vgg16 ``features`` keys written out from its "D" config (not from this
    project's model): conv at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28; ReLU and pools between."""
    out, index, cin = {}, 0, 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            index += 1
            continue
        out[f"features.{index}.weight"] = torch.randn(v, cin, 3, 3)
        out[f"features.{index}.bias"] = torch.randn(v)
        index, cin = index + 2, v
    return out


def test_vgg_backbone_weights_report_missing_and_unexpected(tmp_path) -> None:
    source = build_model("ssd300_vgg16", 3)
    base = source.features.vgg_base_len
    tv = _torchvision_vgg16_features()
    assert sorted(tv)[-1] == "features.7.weight" and "features.28.weight" in tv
    tv["classifier.6.weight"] = torch.zeros(1000, 4096)
    path = tmp_path / "vgg16.pth"
    torch.save({"state_dict": tv}, path)
    target = build_model("ssd300_vgg16", 3)
    report = load_backbone_weights(target, "ssd300_vgg16", path)
    assert len(report.loaded) == 26  # 13 convs x (weight, bias)
    assert report.unexpected == ["classifier.6.weight"]
    assert report.missing == [f"features.vgg.{base + 1}.bias", f"features.vgg.{base + 1}.weight",
                              f"features.vgg.{base + 3}.bias", f"features.vgg.{base + 3}.weight"]
    assert torch.equal(target.features.vgg[21].weight, tv["features.21.weight"])  # conv4_3
    assert torch.equal(target.features.vgg[28].bias, tv["features.28.bias"])  # conv5_3
    assert "missing" in report.summary() and "unexpected" in report.summary()


def test_fine_tune_start_keeps_the_heads_of_another_class_count_apart(tmp_path) -> None:
    """From a 5-class model to a 3-class one: the classification heads differ in shape and are
    reported once, as mismatched (not also as missing); everything else is copied."""
    source = build_model("tiny", 6)
    path = tmp_path / "source.pt"
    torch.save({"model": source.state_dict()}, path)
    target = build_model("tiny", 4)
    report = load_init_weights(target, path)
    mismatched = {entry.split(" ")[0] for entry in report.mismatched}
    assert mismatched and all(k.startswith("conf_heads.") for k in mismatched)
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) + len(mismatched) == len(target.state_dict())
    assert "missing" not in report.summary() and "shape mismatch" in report.summary()
    for key in report.loaded:
        assert torch.equal(target.state_dict()[key], source.state_dict()[key].to(target.state_dict()[key].dtype))


def test_backbone_weights_bad_files(tmp_path) -> None:
    model = build_model("ssdlite320_mobilenetv2", 3, width=0.5)
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone_weights(model, "ssdlite320_mobilenetv2", tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_backbone_weights(model, "ssdlite320_mobilenetv2", junk)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(WeightsError, match="fits"):
        load_backbone_weights(model, "ssdlite320_mobilenetv2", other)
