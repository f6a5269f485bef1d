"""Crafted bad inputs through the real CLIs: every one must end in a clean one-line error that
leaves no partial file behind and destroys no good file.

    python benchmarks/bad_inputs.py [--out benchmarks/results/bad_inputs.json] [--keep DIR]

Builds a tiny workspace once (a synthetic VOC dataset, a 1-epoch tiny checkpoint, a calibration
set, an ONNX FP32 artifact with its sidecar, a finished run folder, a good JSON-lines file), then
runs each case as a subprocess of ``ssd-train``, ``ssd-eval``, ``ssd-calibrate``, ``ssd-convert``,
``ssd-compare`` or ``ssd-edge``. Around each case the whole workspace is hashed: a file that is new
afterwards is a *partial file*, a file that changed or vanished is a *destroyed good file*. A case
is a *clean one-line error* when it exits non-zero (not by a signal), prints no traceback, and
prints exactly one ``<prog>: error:`` line. Prints one line:

    N bad inputs, N clean one-line errors, N tracebacks, N partial files, N destroyed good files

and writes every case's outcome to the JSON file. Takes about 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass
class Case:
    name: str
    prog: str  # ssd-train, ssd-edge, ...
    args: list[str]
    issue_item: str = ""  # the issue #11 item (or other) the case checks, when one


@dataclass
class Outcome:
    name: str
    prog: str
    returncode: int
    clean_error: bool
    traceback: bool
    partial_files: list[str] = field(default_factory=list)
    destroyed_files: list[str] = field(default_factory=list)
    error_line: str = ""
    seconds: float = 0.0
    issue_item: str = ""


MODULES = {
    "ssd-train": "train.cli", "ssd-eval": "train.eval_cli", "ssd-calibrate": "calibration.cli",
    "ssd-convert": "convert.cli", "ssd-compare": "compare.cli", "ssd-edge": "edge_app.cli",
}


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def run_cli(prog: str, args: list[str], cwd: Path, timeout: float = 300.0) -> subprocess.CompletedProcess:
    code = f"import sys; from {MODULES[prog]} import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([PY, "-c", code, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def snapshot(ws: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``ws`` (caches excluded)."""
    out = {}
    for p in ws.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            out[str(p.relative_to(ws))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------- workspace
def build_workspace(ws: Path, log) -> dict[str, Path]:
    """The good inputs every case starts from."""
    from train.synth import SynthConfig, generate

    data = ws / "data"
    generate(data, SynthConfig(seed=3, num_train=32, num_val=8, size=96))
    runs = ws / "runs" / "inner"
    overrides = [f"output_dir={runs}", "data.format=voc", f"data.root={data}", "data.workers=0", "optim.epochs=1",
                 "optim.batch_size=16", "eval.every=0", "eval.batch_size=8", "model.kwargs={width: 8}",
                 "runtime.tensorboard=false", "runtime.threads=1", "runtime.plot=false", "runtime.log_every=1"]
    log("bad_inputs: training the tiny checkpoint")
    proc = run_cli("ssd-train", ["--config", "tiny_synth", "name=good", *overrides], ws)
    if proc.returncode != 0:
        raise SystemExit(f"bad_inputs: could not train the fixture: {proc.stderr.strip()[-400:]}")
    ckpt = runs / "good" / "last.pt"
    log("bad_inputs: calibration set")
    calib = ws / "calib"
    proc = run_cli("ssd-calibrate", ["--data", str(data), "--split", "train", "--num", "8", "--holdout", "4",
                                     "--checkpoint", str(ckpt), "--out", str(calib)], ws)
    if proc.returncode != 0:
        raise SystemExit(f"bad_inputs: could not calibrate: {proc.stderr.strip()[-400:]}")
    log("bad_inputs: ONNX FP32 artifact")
    arts = ws / "artifacts"
    proc = run_cli("ssd-convert", ["--checkpoint", str(ckpt), "--target", "onnx_fp32", "--calib", str(calib),
                                   "--out", str(arts), "--validate-images", "2"], ws, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"bad_inputs: could not convert: {proc.stderr.strip()[-400:]}")
    (ws / "good.jsonl").write_text('{"frame": 0, "boxes": []}\n' * 5)
    (ws / "a_file").write_text("a good file that is not a folder\n")
    return {"data": data, "runs": runs, "ckpt": ckpt, "calib": calib, "arts": arts, "overrides": overrides}


def copy_dataset(ws: Path, name: str) -> Path:
    dest = ws / name
    if not dest.exists():
        shutil.copytree(ws / "data", dest)
    return dest


def first_image(data: Path, split: str, k: int = 0) -> Path:
    ids = (data / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    return data / "JPEGImages" / f"{ids[k]}.jpg"


def truncated_dataset(ws: Path, name: str, split: str) -> Path:
    data = copy_dataset(ws, name)
    img = first_image(data, split)
    img.write_bytes(img.read_bytes()[: img.stat().st_size * 6 // 10])
    return data


def garbage_dataset(ws: Path, name: str, split: str) -> Path:
    data = copy_dataset(ws, name)
    first_image(data, split, 1).write_bytes(b"not an image, just bytes\n" * 10)
    return data


def bad_xml_dataset(ws: Path, name: str) -> Path:
    data = copy_dataset(ws, name)
    ids = (data / "ImageSets" / "Main" / "train.txt").read_text().split()
    (data / "Annotations" / f"{ids[2]}.xml").write_text("<annotation><object><name>circle</name><bndbox>")
    return data


class _Evil:
    """Unpickling this would create a marker file (a pickle that runs code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def edited_artifact(ws: Path, fx: dict, name: str, edit) -> Path:
    """A copy of the ONNX artifact and sidecar in ``ws/name`` with ``edit(sidecar_dict, folder)`` applied."""
    from ssd.sidecar import sidecar_path

    folder = ws / name
    folder.mkdir(exist_ok=True)
    src = fx["arts"] / "model_onnx_fp32.onnx"
    dst = folder / src.name
    shutil.copy(src, dst)
    side = json.loads(sidecar_path(src).read_text())
    edit(side, folder)
    sidecar_path(dst).write_text(json.dumps(side))
    return dst


def cases(ws: Path, fx: dict, busy_port: int) -> list[Case]:
    data, ckpt, calib, arts, ov = fx["data"], fx["ckpt"], fx["calib"], fx["arts"], fx["overrides"]
    onnx = arts / "model_onnx_fp32.onnx"
    train = ["--config", "tiny_synth", *ov]
    out: list[Case] = []
    add = out.append

    # ---- ssd-train
    add(Case("train: unknown config", "ssd-train", ["--config", "no_such_config"]))
    add(Case("train: unknown override key", "ssd-train", [*train, "name=k", "optim.nope=1"]))
    add(Case("train: override of the wrong type", "ssd-train", [*train, "name=k", "optim.epochs=many"]))
    add(Case("train: missing dataset folder", "ssd-train", [*train, "name=k", f"data.root={ws / 'nothing'}"]))
    add(Case("train: truncated JPEG (workers=0)", "ssd-train",
             [*train, "name=trunc0", f"data.root={truncated_dataset(ws, 'd_trunc', 'train')}"], "4"))
    add(Case("train: truncated JPEG (workers=1)", "ssd-train",
             [*train, "name=trunc1", f"data.root={ws / 'd_trunc'}", "data.workers=1", "runtime.tensorboard=true"], "4, 5"))
    add(Case("train: undecodable image", "ssd-train",
             [*train, "name=garb", f"data.root={garbage_dataset(ws, 'd_garbage', 'train')}"], "4"))
    add(Case("train: malformed annotation XML", "ssd-train",
             [*train, "name=xml", f"data.root={bad_xml_dataset(ws, 'd_xml')}"]))
    add(Case("train: again over a finished run", "ssd-train", [*train, "name=good"], "1"))
    add(Case("train: --resume of a missing checkpoint", "ssd-train", ["--resume", str(ws / "missing.pt")]))
    (ws / "corrupt.pt").write_bytes(os.urandom(2048))
    add(Case("train: --resume of a corrupt checkpoint", "ssd-train", ["--resume", str(ws / "corrupt.pt")]))

    import torch

    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    payload["config"]["name"] = "../escaped"
    torch.save(payload, ws / "escaping.pt")
    add(Case("train: --resume whose stored name is ../escaped", "ssd-train", ["--resume", str(ws / "escaping.pt"), "optim.epochs=2"], "8"))
    with open(ws / "evil.pt", "wb") as f:
        pickle.dump({"model": _Evil(str(ws / "PWNED_BY_PICKLE"))}, f)
    add(Case("train: --resume of a code-running pickle", "ssd-train", ["--resume", str(ws / "evil.pt")]))
    (ws / "evil.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {ws / 'PWNED_BY_YAML'}']\n")
    add(Case("train: config with a python YAML tag", "ssd-train", ["--config", str(ws / "evil.yaml")]))
    (ws / "list.yaml").write_text("- just\n- a list\n")
    add(Case("train: config that is not a mapping", "ssd-train", ["--config", str(ws / "list.yaml")]))

    # ---- ssd-eval
    add(Case("eval: missing checkpoint", "ssd-eval", ["--checkpoint", str(ws / "missing.pt"), "--data", str(data)]))
    add(Case("eval: truncated validation image", "ssd-eval",
             ["--checkpoint", str(ckpt), "--data", str(truncated_dataset(ws, "d_trunc_val", "val")), "--split", "val"], "4"))

    # ---- ssd-calibrate
    cal = ["--checkpoint", str(ckpt), "--num", "8", "--holdout", "0"]
    add(Case("calibrate: undecodable image", "ssd-calibrate",
             [*cal, "--data", str(garbage_dataset(ws, "d_garbage_val", "val")), "--split", "val", "--out", str(ws / "c1")], "6"))
    add(Case("calibrate: truncated image", "ssd-calibrate",
             [*cal, "--data", str(ws / "d_trunc_val"), "--split", "val", "--out", str(ws / "c2")], "4"))
    add(Case("calibrate: missing dataset", "ssd-calibrate", [*cal, "--data", str(ws / "nothing"), "--out", str(ws / "c3")]))
    add(Case("calibrate: corrupt checkpoint", "ssd-calibrate",
             ["--checkpoint", str(ws / "corrupt.pt"), "--data", str(data), "--out", str(ws / "c4")]))
    add(Case("calibrate: unknown split", "ssd-calibrate", [*cal, "--data", str(data), "--split", "nosuch", "--out", str(ws / "c5")]))

    # ---- ssd-convert
    conv = ["--checkpoint", str(ckpt), "--calib", str(calib)]
    add(Case("convert: --out names an existing file", "ssd-convert", [*conv, "--target", "onnx_fp32", "--out", str(ws / "a_file")], "6"))
    add(Case("convert: missing checkpoint", "ssd-convert", ["--checkpoint", str(ws / "missing.pt"), "--target", "onnx_fp32",
                                                              "--out", str(ws / "o1")]))
    add(Case("convert: corrupt checkpoint", "ssd-convert", ["--checkpoint", str(ws / "corrupt.pt"), "--target", "onnx_fp32",
                                                              "--out", str(ws / "o2")]))
    add(Case("convert: unknown target", "ssd-convert", [*conv, "--target", "toaster", "--out", str(ws / "o3")]))
    add(Case("convert: INT8 without a calibration set", "ssd-convert", ["--checkpoint", str(ckpt), "--target", "onnx_int8",
                                                                          "--out", str(ws / "o4")]))
    (ws / "empty_calib").mkdir()
    add(Case("convert: empty calibration folder", "ssd-convert", ["--checkpoint", str(ckpt), "--calib", str(ws / "empty_calib"),
                                                                    "--target", "onnx_int8", "--out", str(ws / "o5")]))
    add(Case("convert: --max-drop out of range", "ssd-convert", [*conv, "--target", "openvino_int8", "--max-drop", "150",
                                                                   "--out", str(ws / "o6")]))
    add(Case("convert: unknown calibration method", "ssd-convert", [*conv, "--target", "onnx_int8", "--calib-method",
                                                                      "onnxruntime=magic", "--out", str(ws / "o7")]))

    # ---- ssd-compare
    add(Case("compare: missing artifacts folder", "ssd-compare", ["--checkpoint", str(ckpt), "--artifacts", str(ws / "nothing"),
                                                                    "--data", str(data), "--out", str(ws / "r1")]))
    add(Case("compare: truncated validation image", "ssd-compare", ["--checkpoint", str(ckpt), "--artifacts", str(arts),
                                                                      "--data", str(ws / "d_trunc_val"), "--out", str(ws / "r2")], "4"))

    # ---- ssd-edge
    edge = ["--source", "synthetic://?width=96&height=96&frames=3", "--max-frames", "3"]
    add(Case("edge: missing model", "ssd-edge", ["--model", str(ws / "missing.onnx"), *edge, "--output", "-"]))
    (ws / "lonely").mkdir()
    shutil.copy(onnx, ws / "lonely" / onnx.name)
    add(Case("edge: model without its sidecar", "ssd-edge", ["--model", str(ws / "lonely" / onnx.name), *edge, "--output", "-"]))
    broken = edited_artifact(ws, fx, "broken_sidecar", lambda s, f: None)
    (broken.parent / (broken.name + ".json")).write_text("{ not json")
    add(Case("edge: sidecar that is not JSON", "ssd-edge", ["--model", str(broken), *edge, "--output", "-"]))
    changed = edited_artifact(ws, fx, "changed_model", lambda s, f: None)
    with open(changed, "ab") as fh:
        fh.write(b"\0")
    add(Case("edge: artifact changed after conversion", "ssd-edge", ["--model", str(changed), *edge, "--output", "-"]))
    add(Case("edge: missing source file", "ssd-edge", ["--model", str(onnx), "--source", str(ws / "nothing.mp4"), "--output", "-"]))
    add(Case("edge: unsupported output", "ssd-edge", ["--model", str(onnx), *edge, "--output", str(ws / "out.gif")]))
    add(Case("edge: --serve on a port in use with --output good.jsonl", "ssd-edge",
             ["--model", str(onnx), *edge, "--output", str(ws / "good.jsonl"), "--serve", f"127.0.0.1:{busy_port}"], "2"))
    add(Case("edge: invalid --serve port", "ssd-edge", ["--model", str(onnx), *edge, "--output", "-", "--serve", "99999"]))
    renamed = edited_artifact(ws, fx, "renamed_labels", lambda s, f: s.update(labels=[f"x{i}" for i in range(len(s["labels"]))]))
    add(Case("edge: sidecar labels renamed", "ssd-edge", ["--model", str(renamed), *edge, "--output", "-"], "7"))

    def trt_table(side: dict, folder: Path) -> None:
        """The typed v2 field the TensorRT provider reads, listed in ``files`` as a real table would be."""
        evil = "../../etc/shadow"
        side.setdefault("runtime_hints", {})["tensorrt_calibration"] = {"table": evil, "native": False}
        side.setdefault("files", {})[evil] = "0" * 64

    evil_trt = edited_artifact(ws, fx, "evil_trt", trt_table)
    add(Case("edge: TensorRT calibration table name ../../etc/shadow", "ssd-edge", ["--model", str(evil_trt), *edge, "--output", "-"], "8"))
    return out


def judge(case: Case, proc: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str], seconds: float) -> Outcome:
    text = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{case.prog}: error:")]
    traceback = "Traceback (most recent call last)" in text
    clean = proc.returncode > 0 and not traceback and len(errors) == 1
    partial = sorted(set(after) - set(before))
    destroyed = sorted(p for p in before if after.get(p) != before[p])
    return Outcome(case.name, case.prog, proc.returncode, clean, traceback, partial, destroyed,
                   errors[0] if errors else (proc.stderr.strip().splitlines() or [""])[-1][:300], round(seconds, 2), case.issue_item)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bad_inputs.json"))
    parser.add_argument("--keep", default=None, help="build the workspace here and keep it (default: a temp folder)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    ws = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    ws.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        fx = build_workspace(ws, log)
        todo = cases(ws, fx, blocker.getsockname()[1])
        outcomes = []
        for i, case in enumerate(todo, 1):
            before = snapshot(ws)
            t0 = time.perf_counter()
            proc = run_cli(case.prog, case.args, ws)
            outcome = judge(case, proc, before, snapshot(ws), time.perf_counter() - t0)
            outcomes.append(outcome)
            status = "ok" if outcome.clean_error and not outcome.partial_files and not outcome.destroyed_files else "FAIL"
            log(f"[{i}/{len(todo)}] {status} {case.name}: rc {outcome.returncode}; {outcome.error_line[:160]}"
                + (f"; partial {outcome.partial_files[:3]}" if outcome.partial_files else "")
                + (f"; destroyed {outcome.destroyed_files[:3]}" if outcome.destroyed_files else ""))
            # leave the workspace as it was for the next case (a failing case must not skew the others)
            for rel in outcome.partial_files:
                (ws / rel).unlink(missing_ok=True)
    finally:
        blocker.close()
        if not args.keep:
            shutil.rmtree(ws, ignore_errors=True)
    n = len(outcomes)
    clean = sum(o.clean_error for o in outcomes)
    tracebacks = sum(o.traceback for o in outcomes)
    partial = sum(len(o.partial_files) for o in outcomes)
    destroyed = sum(len(o.destroyed_files) for o in outcomes)
    failing = [o.name for o in outcomes if not o.clean_error or o.partial_files or o.destroyed_files]
    record = {"bad_inputs": n, "clean_one_line_errors": clean, "tracebacks": tracebacks, "partial_files": partial,
              "destroyed_good_files": destroyed, "failing_cases": failing, "seconds": round(time.perf_counter() - start, 1),
              "python": sys.version.split()[0], "cases": [asdict(o) for o in outcomes]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from ssd.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    if failing:
        log("bad_inputs: not clean: " + "; ".join(failing))
    print(f"{n} bad inputs, {clean} clean one-line errors, {tracebacks} tracebacks, {partial} partial files, "
          f"{destroyed} destroyed good files")
    return 0 if clean == n and not (tracebacks or partial or destroyed) else 1


if __name__ == "__main__":
    sys.exit(main())
