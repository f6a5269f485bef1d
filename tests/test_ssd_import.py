"""The shared core imports on a device with numpy only: no torch, no OpenCV."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ssd_imports_with_torch_and_cv2_blocked():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["cv2"] = None
        import numpy as np
        import ssd, ssd.sidecar, ssd.preprocess, ssd.atomic, ssd.demo
        priors = ssd.default_boxes(ssd.SSD300)
        loc = np.zeros((1, len(priors), 4), np.float32)
        conf = np.zeros((1, len(priors), 3), np.float32)
        ssd.decode_and_nms(loc, conf, priors)
        spec = ssd.preprocess.InputSpec(8, 8, layout="NHWC")
        ssd.preprocess.preprocess(np.zeros((8, 8, 3), np.uint8), spec)  # same size: no resize, no cv2
        assert "torch" not in sys.modules or sys.modules["torch"] is None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_blocking_really_blocks():
    """Guard: the blocking trick makes `import torch` fail, so the test above means something."""
    code = 'import sys; sys.modules["torch"] = None\ntry:\n    import torch\nexcept ImportError:\n    print("blocked")'
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "blocked"


VOC_XML = """<annotation><size><width>100</width><height>80</height><depth>3</depth></size>
<object><name>cell</name><difficult>0</difficult><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50</xmax><ymax>60</ymax></bndbox></object>
</annotation>"""


def test_shared_datasets_and_evaluators_work_with_torch_cv2_and_pycocotools_blocked(tmp_path):
    """ssd.data (the readers every stage opens splits with) and the two evaluators sit below the
    stages: importing them, opening a VOC split and scoring it pulls in no torch, no OpenCV, no
    pycocotools (imported only inside the functions that decode images or run COCOeval), and none
    of the stage packages."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations" / "img0.xml").write_text(VOC_XML)
    (root / "ImageSets" / "Main" / "val.txt").write_text("img0\n")
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "cv2", "pycocotools"):
            sys.modules[name] = None  # any import of them now raises ImportError
        import numpy as np
        import ssd.coco_eval, ssd.data.coco, ssd.data.image_file, ssd.data.sample, ssd.data.voc
        from ssd.data import open_dataset
        from ssd.postprocess import Detections
        from ssd.voc_eval import evaluate_voc

        dataset = open_dataset({str(root)!r}, "val")
        truth = dataset.annotation(0)
        assert dataset.label_names == ["cell"] and truth.boxes.tolist() == [[10, 20, 50, 60]], truth
        hit = Detections(np.array([[0.1, 0.25, 0.5, 0.75]], np.float32), np.array([0.9], np.float32),
                         np.array([1], np.int64))
        result = evaluate_voc([truth], [hit], dataset.label_names, "voc", plus_one=False)
        assert abs(result.map - 1.0) < 1e-9, result.map
        stages = ("train", "calibration", "convert", "edge_app", "compare")
        loaded = [m for m in sys.modules if sys.modules[m] is not None and m.split(".")[0] in stages + ("torch", "cv2", "pycocotools")]
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
