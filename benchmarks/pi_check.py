"""An emulated Raspberry Pi: install the edge app as the README says, compare detections with the host.

    sudo make pi-check                                   # = python benchmarks/pi_check.py
    python benchmarks/pi_check.py --suite trixie         # Raspberry Pi OS 13 / Debian trixie

What it does (as root: debootstrap, chroot and mount need it):

1. host tools: ``debootstrap`` and ``qemu-user-static`` >= 8 (bookworm's qemu 7.2 segfaults
   inside LiteRT's ``allocate_tensors``/``invoke``; on a bookworm host qemu 10 comes from
   bookworm-backports), and an ``aarch64`` binfmt entry pointing at it; ``QEMU_CPU=cortex-a72``
   (a Raspberry Pi 4 core).
2. a Debian arm64 root filesystem (64-bit Raspberry Pi OS is Debian arm64 plus Raspberry Pi's
   own archive) made with ``debootstrap`` once and cached under ``build/pi-rootfs/<suite>-base``;
   every check installs into a fresh copy of it (``build/pi-rootfs/<suite>-run``).
3. the README's "On a Raspberry Pi" steps, read from docs/raspberry-pi.md and run as they are (``sudo``
   dropped; ``python3-picamera2`` skipped: it is only in Raspberry Pi's archive), timed; the same
   steps with the README's ``tflite-runtime`` line in a second venv.
4. on the host, with the project's own pipeline (cached under ``build/pi-check``; delete
   ``build/pi-check/artifacts`` to convert again, ``build/pi-check/train`` to retrain): ``ssd-train
   --config tiny_synth``, ``ssd-calibrate``, ``ssd-convert --target rpi,onnx_fp32``; PNG frames
   rendered on the host (Debian's OpenCV draws the synthetic source with other pixels than pip's,
   so both sides read the same PNGs through ``images://``) and the synthetic val split as PNGs.
5. ``ssd-edge`` on each artifact on the host and in the emulated Pi, JSON lines compared frame by
   frame; the INT8 ``.tflite`` under LiteRT and under tflite-runtime also in raw quantization
   steps and in mAP on the val split (the project's EVAL thresholds).

Writes ``benchmarks/results/pi_check_<suite>.json`` and prints one line. Emulated timings say
nothing about a Pi's speed and are not reported (only the install's wall time, which is
dominated by downloads and emulated dpkg/pip work).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PI_PAGE = ROOT / "docs" / "raspberry-pi.md"  # the Raspberry Pi install steps this check replays
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
SUITES = ("bookworm", "trixie")
QEMU_CPU = "cortex-a72"
PI_HOME = "/home/pi/ssd-edge"  # the clone on the Pi; the README's commands run here
PI_WORK = "/home/pi/check"  # artifacts, frames and outputs of the check
TFLITE_RUNTIME_VENV = ".venv-tflite-runtime"
#: packages the README names that Debian's archive does not have (Raspberry Pi's archive does)
NOT_IN_DEBIAN = ("python3-picamera2",)
#: the artifacts compared: what ``--target rpi`` makes, plus ONNX FP32
ARTIFACTS = ("model_tflite_int8.tflite", "model_tflite_fp32.tflite", "model_onnx_int8.onnx", "model_onnx_fp32.onnx")
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
PI_HOST_CA = "/etc/pi-check-host-ca.crt"
PARITY_FRAMES = 24
PARITY_SIZE = (320, 240)


class CheckError(RuntimeError):
    """A step of the check failed; the message says which and where its log is."""


# ----------------------------------------------------------------------------- README steps


@dataclass(frozen=True)
class ReadmeSteps:
    """The install commands of the README's "On a Raspberry Pi" section."""

    apt_packages: tuple[str, ...]
    venv: str
    pip: str
    pip_tflite_runtime: str


def readme_pi_section(readme: str) -> str:
    """The text of the ``# On a Raspberry Pi`` section of docs/raspberry-pi.md (up to the next heading)."""
    match = re.search(r"^#+ On a Raspberry Pi.*?$(.*?)(?=^#|\Z)", readme, flags=re.S | re.M)
    if match is None:
        raise CheckError(f"{PI_PAGE.relative_to(ROOT)} has no '# On a Raspberry Pi' section")
    return match.group(1)


def readme_commands(section: str) -> list[str]:
    """The section's code lines (4-space indented), continuations joined, comments removed."""
    commands: list[str] = []
    pending = ""
    for line in section.splitlines():
        if not line.startswith("    "):
            pending = ""
            continue
        text = re.sub(r"\s+#\s.*$", "", line.strip())
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        commands.append(pending + text)
        pending = ""
    return commands


def readme_steps(readme: str) -> ReadmeSteps:
    """Parse the install steps; :class:`CheckError` when one is missing."""
    apt: list[str] = []
    venv = pip = pip_tflite = None
    for command in readme_commands(readme_pi_section(readme)):
        words = shlex.split(command)
        if words[:3] in (["sudo", "apt", "install"], ["sudo", "apt-get", "install"]):
            apt += [w for w in words[3:] if not w.startswith("-")]
        elif words[:3] == ["python3", "-m", "venv"] and venv is None:
            venv = command
        elif words[:2] == [".venv/bin/pip", "install"]:
            if "tflite-runtime" in command:
                pip_tflite = pip_tflite or command
            else:
                pip = pip or command
    missing = [n for n, v in (("apt install", apt), ("python3 -m venv", venv), (".venv/bin/pip install", pip),
                              (".venv/bin/pip install ... tflite-runtime", pip_tflite)) if not v]
    if missing:
        raise CheckError(f"README's Raspberry Pi section lacks the {', '.join(missing)} line(s)")
    return ReadmeSteps(tuple(apt), venv, pip, pip_tflite)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- host tools


class Log:
    """Every command's output goes to one log file; ``run`` raises :class:`CheckError` on failure."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("a")

    def note(self, text: str) -> None:
        self.file.write(f"\n=== {time.strftime('%H:%M:%S')} {text}\n")
        self.file.flush()
        print(f"pi-check: {text}", file=sys.stderr, flush=True)

    def run(self, cmd: Sequence[str], what: str, env: dict[str, str] | None = None, check: bool = True,
            capture: bool = False) -> subprocess.CompletedProcess:
        self.file.write(f"$ {shlex.join(cmd)}\n")
        self.file.flush()
        proc = subprocess.run(list(cmd), env=env, text=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else self.file, stderr=self.file)
        if capture and proc.stdout:
            self.file.write(proc.stdout)
        if check and proc.returncode != 0:
            raise CheckError(f"{what} failed (exit {proc.returncode}); see {self.path}")
        return proc


def _version(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\d+)\.(\d+)", out)
    return tuple(int(g) for g in match.groups()) if match else None


def _host_codename() -> str:
    text = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    match = re.search(r"^VERSION_CODENAME=(\S+)", text, flags=re.M)
    return match.group(1) if match else ""


def ensure_host_tools(log: Log) -> dict[str, Any]:
    """debootstrap + qemu-user-static >= 8 (from bookworm-backports on a bookworm host)."""
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if shutil.which("debootstrap") is None or shutil.which("update-binfmts") is None:
        log.note("installing debootstrap and binfmt-support on the host")
        log.run(["apt-get", "update", "-q"], "apt-get update", env=apt_env)
        log.run(["apt-get", "install", "-y", "-q", "debootstrap", "binfmt-support"], "installing debootstrap", env=apt_env)
    qemu = _version("qemu-aarch64-static")
    if qemu is None or qemu < (8,):
        codename = _host_codename()
        args = ["apt-get", "install", "-y", "-q"]
        if codename == "bookworm":
            log.note(f"qemu-aarch64-static {qemu} segfaults in LiteRT; installing qemu 10 from bookworm-backports")
            Path("/etc/apt/sources.list.d/bookworm-backports.sources").write_text(
                f"Types: deb\nURIs: {MIRROR}\nSuites: bookworm-backports\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
            args += ["-t", "bookworm-backports"]
        log.run(["apt-get", "update", "-q"], "apt-get update", env=apt_env)
        log.run([*args, "qemu-user-static"], "installing qemu-user-static", env=apt_env)
        qemu = _version("qemu-aarch64-static")
        if qemu is None or qemu < (8,):
            raise CheckError(f"qemu-aarch64-static is {qemu}; LiteRT needs qemu >= 8 (Debian bookworm-backports or trixie)")
    return {"qemu": ".".join(map(str, qemu)), "debootstrap": "found", "host": _host_codename()}


def ensure_binfmt(log: Log) -> str:
    """An enabled ``qemu-aarch64`` binfmt entry whose interpreter is qemu >= 8; its interpreter path."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        log.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mounting binfmt_misc")
    entry = binfmt / "qemu-aarch64"
    if entry.exists():
        text = entry.read_text()
        match = re.search(r"^interpreter (\S+)", text, flags=re.M)
        # the interpreter may be a wrapper link (aarch64-binfmt-P): ask the binary it points at
        version = _version(str(Path(match.group(1)).resolve())) if match else None
        if text.startswith("enabled") and version is not None and version >= (8,):
            return match.group(1)  # type: ignore[union-attr]
        log.note(f"re-registering the aarch64 binfmt entry (was {version}, {text.splitlines()[0]})")
        entry.write_text("-1")  # remove the stale entry (e.g. qemu 7.2 opened before the upgrade)
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # qemu >= 9 packaging (systemd-binfmt format)
    if conf.exists():
        line = next(x for x in conf.read_text().splitlines() if x.startswith(":"))
        (binfmt / "register").write_text(line)
    else:
        log.run(["update-binfmts", "--enable", "qemu-aarch64"], "update-binfmts --enable qemu-aarch64")
    match = re.search(r"^interpreter (\S+)", entry.read_text(), flags=re.M)
    if match is None:
        raise CheckError("the qemu-aarch64 binfmt entry did not register; see /proc/sys/fs/binfmt_misc")
    return match.group(1)


# ----------------------------------------------------------------------------- root filesystem


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _remove_tree(path: Path, log: Log) -> None:
    """``rm -rf`` a root filesystem copy, never while anything is mounted inside it."""
    if not path.exists():
        return
    for point in sorted(_mounts_under(path), reverse=True):
        log.run(["umount", "-l", point], f"unmounting {point}")
    if _mounts_under(path):
        raise CheckError(f"{path} still has mounts inside ({_mounts_under(path)}); unmount them and rerun")
    log.run(["rm", "-rf", "--one-file-system", str(path)], f"removing {path}")


def ensure_base_rootfs(suite: str, cache: Path, log: Log) -> tuple[Path, float | None]:
    """``cache/<suite>-base``: debootstrap minbase arm64 with the suite's apt sources; built once."""
    base = cache / f"{suite}-base"
    if (base / ".pi-check-base").exists():
        return base, None
    tmp = cache / f"{suite}-base.tmp"
    _remove_tree(tmp, log)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log.note(f"debootstrap {suite} arm64 into {tmp} (a few minutes)")
    t0 = time.perf_counter()
    log.run(["debootstrap", "--arch=arm64", "--variant=minbase", "--foreign", suite, str(tmp), MIRROR], "debootstrap")
    log.run(["chroot", str(tmp), "/debootstrap/debootstrap", "--second-stage"], "debootstrap --second-stage",
            env=_pi_env())
    (tmp / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\ndeb {SECURITY} {suite}-security main\n")
    (tmp / ".pi-check-base").write_text(f"{suite}\n")
    tmp.rename(base)
    return base, time.perf_counter() - t0


def _pi_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "QEMU_CPU": QEMU_CPU, "DEBIAN_FRONTEND": "noninteractive",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
            **({"PIP_CERT": PI_HOST_CA} if Path(HOST_CA).is_file() else {})}


@contextmanager
def mounted(rootfs: Path, log: Log) -> Iterator[None]:
    """/proc and /dev inside ``rootfs`` and the host's resolv.conf, for as long as the block runs."""
    points: list[Path] = []
    try:
        for args, point in ((["-t", "proc", "proc"], rootfs / "proc"), (["--bind", "/dev"], rootfs / "dev")):
            log.run(["mount", *args, str(point)], f"mounting {point}")
            points.append(point)
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        # the host's CA bundle for pip (PIP_CERT): where TLS to PyPI passes a proxy with its own CA,
        # the Pi's fresh ca-certificates would refuse it; on other hosts it is the same Mozilla set
        if Path(HOST_CA).is_file():
            shutil.copyfile(HOST_CA, rootfs / PI_HOST_CA.lstrip("/"))
        yield
    finally:
        for point in reversed(points):
            subprocess.run(["umount", "-l", str(point)], check=False)


def in_pi(rootfs: Path, command: str, log: Log, what: str, check: bool = True,
          capture: bool = False) -> subprocess.CompletedProcess:
    """``command`` under bash in the emulated Pi (chroot, qemu through binfmt, QEMU_CPU set)."""
    return log.run(["chroot", str(rootfs), "/bin/bash", "-c", command], what, env=_pi_env(), check=check,
                   capture=capture)


def copy_source_tree(rootfs: Path) -> None:
    """The repository's files (tracked and untracked-not-ignored: what a clone has) to PI_HOME."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    dest = rootfs / PI_HOME.lstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@dataclass
class InstallResult:
    """What the README's steps did in the emulated Pi."""

    seconds: dict[str, float] = field(default_factory=dict)
    apt_packages: list[str] = field(default_factory=list)
    skipped_packages: list[str] = field(default_factory=list)
    versions: dict[str, Any] = field(default_factory=dict)
    tflite_runtime: dict[str, Any] = field(default_factory=dict)


VERSIONS_PY = ("import json, sys, importlib.metadata as m\n"
               "out = {'python': sys.version.split()[0]}\n"
               "for name in ('numpy', 'ai-edge-litert', 'tflite-runtime', 'onnxruntime', 'opencv-python-headless'):\n"
               "    try: out[name] = m.version(name)\n"
               "    except m.PackageNotFoundError: pass\n"
               "import cv2; out['cv2'] = cv2.__version__; out['cv2_file'] = cv2.__file__\n"
               "print(json.dumps(out))\n")


def install_as_readme(rootfs: Path, steps: ReadmeSteps, log: Log) -> InstallResult:
    """Run the README's steps in PI_HOME, timed; then the tflite-runtime variant in a second venv."""
    result = InstallResult()
    result.apt_packages = [p for p in steps.apt_packages if p not in NOT_IN_DEBIAN]
    result.skipped_packages = [p for p in steps.apt_packages if p in NOT_IN_DEBIAN]
    copy_source_tree(rootfs)
    cd = f"cd {PI_HOME} && "
    for name, command in (
        ("apt", "apt-get update -q && apt-get install -y -q " + shlex.join(result.apt_packages)),
        ("venv", cd + steps.venv),
        ("pip", cd + steps.pip),
    ):
        log.note(f"install step {name}: {command}")
        t0 = time.perf_counter()
        in_pi(rootfs, command, log, f"the README's {name} step")
        result.seconds[name] = round(time.perf_counter() - t0, 1)
    result.seconds["total"] = round(sum(result.seconds.values()), 1)
    out = in_pi(rootfs, f"{cd}.venv/bin/python -c {shlex.quote(VERSIONS_PY)}", log, "reading versions", capture=True)
    result.versions = json.loads(out.stdout.strip().splitlines()[-1])
    venv = steps.venv.replace(".venv", TFLITE_RUNTIME_VENV)
    pip = steps.pip_tflite_runtime.replace(".venv/", f"{TFLITE_RUNTIME_VENV}/")
    log.note(f"tflite-runtime variant: {venv} && {pip}")
    t0 = time.perf_counter()
    proc = in_pi(rootfs, f"{cd}rm -rf {TFLITE_RUNTIME_VENV} && {venv} && {pip}", log, "tflite-runtime install", check=False)
    result.tflite_runtime = {"command": pip, "installed": proc.returncode == 0,
                             "seconds": round(time.perf_counter() - t0, 1)}
    if proc.returncode == 0:
        out = in_pi(rootfs, f"{cd}{TFLITE_RUNTIME_VENV}/bin/python -c {shlex.quote(VERSIONS_PY)}", log,
                    "reading versions", capture=True)
        result.tflite_runtime["versions"] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------------------- host side


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _host_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def host_artifacts(work: Path, log: Log) -> Path:
    """tiny_synth trained, calibrated and converted with the project's CLIs (cached in ``work``)."""
    arts = work / "artifacts"
    if all((arts / a).exists() for a in ARTIFACTS):
        return arts
    best = work / "train" / "best.pt"
    data = work / "synth"
    env = _host_env()
    if not best.exists():
        log.note("training tiny_synth on the host (about 3-5 minutes)")
        log.run([_tool("ssd-train"), "--config", "tiny_synth", f"output_dir={work}", "name=train",
                 f"data.root={data}"], "ssd-train", env=env)
    log.note("calibrating and converting for --target rpi (+ onnx_fp32) on the host")
    log.run([_tool("ssd-calibrate"), "--data", str(data), "--split", "train", "--num", "300", "--seed", "0",
             "--checkpoint", str(best), "--out", str(work / "calibration")], "ssd-calibrate", env=env)
    tmp = work / "artifacts.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log.run([_tool("ssd-convert"), "--checkpoint", str(best), "--target", "rpi,onnx_fp32",
             "--calib", str(work / "calibration"), "--out", str(tmp)], "ssd-convert", env=env)
    shutil.rmtree(arts, ignore_errors=True)
    tmp.rename(arts)
    return arts


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), image):
        raise CheckError(f"cannot write {tmp}")
    tmp.replace(path)


def host_frames(work: Path) -> tuple[Path, Path]:
    """PNG folders: synthetic parity frames, and the val split (decoded once here, in order)."""
    import cv2

    from edge_app.sources.synthetic import SyntheticScene
    from ssd.data.voc import VOCDataset

    parity, val = work / "frames" / "parity", work / "frames" / "val"
    if not parity.is_dir():
        tmp = parity.with_name("parity.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        scene = SyntheticScene(*PARITY_SIZE, objects=4, seed=7)
        for i in range(PARITY_FRAMES):
            _write_png(tmp / f"{i:05d}.png", scene.render(i * 3))
        tmp.rename(parity)
    if not val.is_dir():
        tmp = val.with_name("val.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        dataset = VOCDataset(work / "synth", "val")
        for i in range(len(dataset)):
            _write_png(tmp / f"{i:05d}.png", cv2.imread(str(dataset.image_path(i)), cv2.IMREAD_COLOR))
        tmp.rename(val)
    return parity, val


def int8_inputs(model: Path, frames: Path, out: Path) -> Path:
    """The INT8 artifact's preprocessed inputs for the parity frames (``input_i`` in an npz)."""
    import cv2

    from edge_app.backends import open_backend
    from ssd.preprocess import preprocess

    with open_backend(model, threads=1) as backend:
        spec = backend.input_spec
    arrays = {f"input_{i}": preprocess(cv2.imread(str(p), cv2.IMREAD_COLOR), spec)
              for i, p in enumerate(sorted(frames.glob("*.png")))}
    np.savez(out, **arrays)
    return out


# ----------------------------------------------------------------------------- runs + comparison


def edge_args(model: str, frames: str, out: str, eval_thresholds: bool) -> list[str]:
    """``ssd-edge`` arguments: every frame of an images:// folder to JSON lines, one thread."""
    args = ["--model", model, "--source", f"images://{frames}", "--output", out, "--every-frame",
            "--threads", "1", "--log-level", "WARNING"]
    if eval_thresholds:
        from ssd.postprocess import EVAL

        args += ["--score", str(EVAL.score_threshold), "--iou", str(EVAL.iou_threshold),
                 "--top-k", str(EVAL.top_k), "--max-detections", str(EVAL.max_detections)]
    return args


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parity(host: list[dict[str, Any]], device: list[dict[str, Any]]) -> dict[str, Any]:
    """Frame-by-frame agreement of two runs' JSON lines (boxes in pixels, 2 decimals)."""
    identical = same_labels = 0
    box_diff = score_diff = 0.0
    for h, d in zip(host, device):
        if (h["boxes"], h["class_ids"], h["scores"]) == (d["boxes"], d["class_ids"], d["scores"]):
            identical += 1
        if h["class_ids"] == d["class_ids"]:
            same_labels += 1
            if h["boxes"]:
                box_diff = max(box_diff, float(np.abs(np.subtract(h["boxes"], d["boxes"])).max()))
                score_diff = max(score_diff, float(np.abs(np.subtract(h["scores"], d["scores"])).max()))
    frames = len(host)
    exact = identical == frames == len(device)
    return {
        "frames_host": frames, "frames_device": len(device), "frames_identical": identical,
        "frames_same_labels": same_labels, "detections_host": sum(len(h["scores"]) for h in host),
        "max_box_diff_px": round(box_diff, 3), "max_score_diff": round(score_diff, 5), "bit_exact": exact,
        "verdict": "bit-exact" if exact else
        (f"max {box_diff:.2f} px" if same_labels == frames == len(device) else
         f"{frames - same_labels} of {frames} frames differ in labels, max {box_diff:.2f} px elsewhere"),
    }


def jsonl_map(path: Path, work: Path) -> dict[str, float]:
    """COCO mAP of a val-split run's JSON lines against the VOC annotations."""
    from ssd.coco_eval import evaluate_detections
    from ssd.data.voc import VOCDataset
    from ssd.postprocess import Detections

    dataset = VOCDataset(work / "synth", "val")
    rows = read_jsonl(path)
    if len(rows) != len(dataset):
        raise CheckError(f"{path} has {len(rows)} frames, the val split {len(dataset)}")
    dets = []
    for row in rows:
        scale = np.array([row["width"], row["height"]] * 2, np.float32)
        dets.append(Detections(np.asarray(row["boxes"], np.float32).reshape(-1, 4) / scale,
                               np.asarray(row["scores"], np.float32), np.asarray(row["class_ids"], np.int64)))
    result = evaluate_detections([dataset.annotation(i) for i in range(len(dataset))], dets, dataset.label_names)
    return {"mAP@0.5": round(result.map50, 4), "mAP@[.5:.95]": round(result.map, 4)}


def step_diff(a: Path, b: Path) -> dict[str, Any]:
    """Two raw-output npz files (integer outputs) compared in quantization steps."""
    with np.load(a) as x, np.load(b) as y:
        if sorted(x.files) != sorted(y.files):
            raise CheckError(f"{a} and {b} hold different outputs")
        diffs = [np.abs(x[k].astype(np.int64) - y[k].astype(np.int64)) for k in sorted(x.files)]
    flat = np.concatenate([d.ravel() for d in diffs])
    return {"max_steps": int(flat.max()), "fraction_differing": round(float((flat > 0).mean()), 5),
            "histogram": {str(s): int((flat == s).sum()) for s in range(int(flat.max()) + 1)}}


def run_check(suite: str, cache: Path, work: Path, out_json: Path, keep_rootfs: bool = False) -> dict[str, Any]:
    t_start = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    log = Log(work / f"pi_check_{suite}.log")
    steps = readme_steps(PI_PAGE.read_text())
    report: dict[str, Any] = {"suite": suite, "arch": "arm64", "qemu_cpu": QEMU_CPU, "readme_steps": asdict(steps)}
    report["host_tools"] = ensure_host_tools(log)
    report["binfmt_interpreter"] = ensure_binfmt(log)
    base, debootstrap_s = ensure_base_rootfs(suite, cache, log)
    report["debootstrap_seconds"] = None if debootstrap_s is None else round(debootstrap_s, 1)
    run = cache / f"{suite}-run"
    report["reused_run_rootfs"] = keep_rootfs and run.is_dir()
    if not report["reused_run_rootfs"]:
        _remove_tree(run, log)
        log.note(f"fresh copy of {base} -> {run}")
        log.run(["cp", "-a", str(base), str(run)], "copying the base root filesystem")
    outputs = work / suite
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir(parents=True)
    with mounted(run, log):
        install = install_as_readme(run, steps, log)
        report["install"] = asdict(install)
        arts = host_artifacts(work, log)
        parity_frames, val_frames = host_frames(work)
        pi_work = run / PI_WORK.lstrip("/")
        for sub, src in (("artifacts", arts), ("parity", parity_frames), ("val", val_frames)):
            shutil.copytree(src, pi_work / sub, dirs_exist_ok=True)
        (pi_work / "out").mkdir(exist_ok=True)
        venvs = {"litert": ".venv"}
        if install.tflite_runtime["installed"]:
            venvs["tflite_runtime"] = TFLITE_RUNTIME_VENV
        runs = [(a, "parity", False) for a in ARTIFACTS] + [
            ("model_tflite_int8.tflite", "val", True), ("model_onnx_int8.onnx", "val", True),
            ("model_tflite_fp32.tflite", "val", True)]
        results: dict[str, Any] = {}
        for artifact, frames, eval_thr in runs:
            name = f"{Path(artifact).stem}.{frames}"
            host_out = outputs / f"{name}.host.jsonl"
            log.note(f"host: {name}")
            log.run([_tool("ssd-edge"), *edge_args(str(arts / artifact), str(work / "frames" / frames),
                                                  str(host_out), eval_thr)], f"host ssd-edge {name}", env=_host_env())
            entry: dict[str, Any] = {"artifact": artifact, "frames": frames}
            for tag, venv in venvs.items():
                if tag == "tflite_runtime" and not artifact.endswith(".tflite"):
                    continue
                dev_name = f"{name}.{tag}.jsonl"
                log.note(f"emulated Pi ({tag}): {name}")
                args = edge_args(f"{PI_WORK}/artifacts/{artifact}", f"{PI_WORK}/{frames}", f"{PI_WORK}/out/{dev_name}",
                                 eval_thr)
                in_pi(run, f"cd {PI_HOME} && {venv}/bin/ssd-edge {shlex.join(args)}", log, f"Pi ssd-edge {dev_name}")
                shutil.copy(pi_work / "out" / dev_name, outputs / dev_name)
                entry[tag] = parity(read_jsonl(host_out), read_jsonl(outputs / dev_name))
                if eval_thr:
                    entry[tag]["map"] = jsonl_map(outputs / dev_name, work)
            if eval_thr:
                entry["host_map"] = jsonl_map(host_out, work)
            results[name] = entry
        report["runs"] = results
        # the INT8 .tflite in raw quantization steps: host LiteRT against each runtime on the Pi
        inputs = int8_inputs(arts / "model_tflite_int8.tflite", parity_frames, outputs / "int8_inputs.npz")
        shutil.copy(inputs, pi_work / "int8_inputs.npz")
        raw_host = outputs / "raw.host_litert.npz"
        log.run([sys.executable, str(ROOT / "benchmarks/pi_raw_outputs.py"), "--model",
                 str(arts / "model_tflite_int8.tflite"), "--inputs", str(inputs), "--runtime", "ai_edge_litert",
                 "--out", str(raw_host)], "host raw outputs", env=_host_env())
        steps_report: dict[str, Any] = {}
        for tag, venv in venvs.items():
            module = "ai_edge_litert" if tag == "litert" else "tflite_runtime"
            in_pi(run, f"cd {PI_HOME} && {venv}/bin/python benchmarks/pi_raw_outputs.py --model "
                       f"{PI_WORK}/artifacts/model_tflite_int8.tflite --inputs {PI_WORK}/int8_inputs.npz "
                       f"--runtime {module} --out {PI_WORK}/out/raw.{tag}.npz", log, f"Pi raw outputs ({tag})")
            shutil.copy(pi_work / "out" / f"raw.{tag}.npz", outputs / f"raw.{tag}.npz")
            steps_report[f"host_litert_vs_pi_{tag}"] = step_diff(raw_host, outputs / f"raw.{tag}.npz")
        report["tflite_int8_raw_steps"] = steps_report
    report["verdict"] = verdict(report)
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_name(out_json.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out_json)
    return report


def verdict(report: dict[str, Any]) -> dict[str, str]:
    """One phrase per artifact (parity on the synthetic frames) and one for tflite-runtime."""
    out = {}
    for name, entry in report["runs"].items():
        if name.endswith(".parity"):
            out[Path(entry["artifact"]).stem.removeprefix("model_")] = entry["litert"]["verdict"]
    tr = report["install"]["tflite_runtime"]
    if not tr["installed"]:
        out["tflite_runtime"] = f"does not install on {report['suite']} ({tr['command']})"
    else:
        run = report["runs"]["model_tflite_int8.val"]
        steps = report["tflite_int8_raw_steps"]["host_litert_vs_pi_tflite_runtime"]
        fp32 = report["runs"]["model_tflite_fp32.parity"]["tflite_runtime"]["verdict"]
        out["tflite_runtime"] = (
            f"{tr['versions'].get('tflite-runtime')}: FP32 {fp32}; INT8 up to {steps['max_steps']} steps "
            f"({steps['fraction_differing']:.1%} of outputs), val mAP@0.5 {run['tflite_runtime']['map']['mAP@0.5']:.4f} "
            f"vs LiteRT {run['litert']['map']['mAP@0.5']:.4f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Emulated Raspberry Pi check (see the module docstring).")
    p.add_argument("--suite", default="bookworm", choices=SUITES, help="Debian release of the emulated Pi")
    p.add_argument("--cache", type=Path, default=ROOT / "build/pi-rootfs", help="root filesystems (debootstrap cache)")
    p.add_argument("--work", type=Path, default=ROOT / "build/pi-check", help="host artifacts, frames, logs, outputs")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default benchmarks/results/pi_check_<suite>.json)")
    p.add_argument("--keep-rootfs", action="store_true",
                   help="install into the last run's root filesystem instead of a fresh copy (install time then "
                        "is not a fresh install's)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("pi-check: error: needs root (debootstrap, chroot, mount, binfmt): run `sudo make pi-check`", file=sys.stderr)
        return 2
    out = args.out or ROOT / f"benchmarks/results/pi_check_{args.suite}.json"
    try:
        report = run_check(args.suite, args.cache.resolve(), args.work.resolve(), out, args.keep_rootfs)
    except CheckError as exc:
        print(f"pi-check: error: {exc}", file=sys.stderr)
        return 1
    inst = report["install"]
    parts = ", ".join(f"{k} {v}" for k, v in report["verdict"].items() if k != "tflite_runtime")
    print(f"pi-check {report['suite']} arm64 (qemu {report['host_tools']['qemu']}, {QEMU_CPU}; emulated, no Pi timings): "
          f"README install {inst['seconds']['total']:.0f} s (python {inst['versions'].get('python')}, numpy "
          f"{inst['versions'].get('numpy')}, cv2 {inst['versions'].get('cv2')}); detections vs host: {parts}; "
          f"tflite-runtime: {report['verdict']['tflite_runtime']}; {report['wall_seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
