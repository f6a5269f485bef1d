"""``export()``: checkpoint + calibration set -> validated artifacts with sidecars.

For each format, in table order:

1. the exporter writes the artifact (and companions such as OpenVINO's ``.bin``) into a
   private staging folder inside ``out`` (same file system, so the final moves are renames);
2. the sidecar is written next to it and read back with :func:`ssd.sidecar.read_sidecar`
   (round trip, sha256);
3. the format's check loads the staged artifact in its own runtime through that sidecar
   and compares it with PyTorch on calibration images (:mod:`convert.validate`); before
   that, with ``--max-drop``, an INT8 artifact's held-out mAP@0.5 drop is measured and
   enforced (:func:`convert.fallback.enforce_max_drop`: layers left float, worst first, until
   it is at most the limit); the artifact checked and installed is the final one;
4. only a passing artifact is moved into ``out`` (:mod:`convert.install`): the companions,
   the artifact and the sidecar last are renamed over the old ones (the old sidecar is never
   deleted first), then old files the new set does not replace are removed; a run killed
   mid-way leaves a plan that the next run completes. A failing (or collapsed) format leaves
   no artifact and no sidecar, not even a stale one from an earlier run.

Every run first finishes installs and removes staging folders (``.ssd-convert.*``) left by
killed runs in ``out``.

Bad input (missing/corrupt checkpoint, a model that does not match its spec, a missing or
empty calibration set, an unknown target) raises :class:`ConvertError` before anything is
written.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calibration.sets import (
    CalibrationError,
    CalibrationSet,
    check_matches_model,
    load_calibration_set,
)
from convert import install as installer
from convert.context import ConvertOptions, ExportContext, Log, require_holdout
from convert.errors import ConvertError
from convert.exported import Exported
from convert.fallback import UNMEASURABLE, enforce_max_drop
from convert.formats import FORMATS, Format
from convert.heartbeat import heartbeat
from convert.meter import announce_resolution
from convert.record import write_record
from convert.report import ArtifactResult, ConvertReport
from convert.source import load_source
from convert.staging import build_sidecar
from convert.targets import resolve_formats
from ssd.sidecar import (
    HeldOutAccuracy,
    Sidecar,
    SidecarError,
    ValidationRecord,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)


def _remove_format_files(out: Path, fmt: Format) -> None:
    """Remove every file of ``fmt`` in ``out`` (sidecar first)."""
    stem = f"model_{fmt.name}"
    sidecar = sidecar_path(out / fmt.filename)
    sidecar.unlink(missing_ok=True)
    for path in out.glob(f"{stem}.*"):
        if path.is_file():
            path.unlink()


def _install(out: Path, fmt: Format, staged: list[Path], staged_sidecar: Path) -> Path:
    """Move staged files into ``out``, the sidecar last, over the old ones; old files that no new
    one replaces go after (:func:`convert.install.install`)."""
    stale = [p for p in [sidecar_path(out / fmt.filename), *out.glob(f"model_{fmt.name}.*")] if p.is_file()]
    installer.install(out, staged_sidecar.parent, [*staged, staged_sidecar], stale)
    return out / fmt.filename


def _held_out(ctx: ExportContext, fmt: Format, exported: Exported, stage: Path, index: str
              ) -> tuple[Exported, Sidecar | None, HeldOutAccuracy | None]:
    """``--max-drop`` on an INT8 format: see :func:`convert.fallback.enforce_max_drop`."""
    if ctx.options.max_drop is None or fmt.precision != "int8":
        return exported, None, None
    if exported.postprocess is not None:
        ctx.log(f"{index} {fmt.name}: --max-drop is enforced on its raw-head twin's format; this artifact is held to "
                "the twin's detections")
        return exported, None, None
    if fmt.name in UNMEASURABLE:
        ctx.log(f"{index} {fmt.name}: --max-drop not measured: the artifact runs in FP32 without TensorRT "
                "(measure its INT8 drop with ssd-compare on the device)")
        return exported, None, None
    return enforce_max_drop(ctx, fmt.name, exported, stage)


def _convert_one(ctx: ExportContext, fmt: Format, out: Path, index: str) -> ArtifactResult:
    log = ctx.log
    start = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=f"{fmt.name}.", dir=ctx.work))
    try:
        log(f"{index} {fmt.name}: exporting ({fmt.description})")
        with heartbeat(log, f"exporting {fmt.name}"):
            exported = fmt.exporter(ctx, stage, f"model_{fmt.name}")
        if exported.artifact.name != fmt.filename:
            raise ConvertError(f"exporter wrote {exported.artifact.name}, expected {fmt.filename}")
        sidecar = build_sidecar(ctx, fmt, exported, fmt.filename)
        staged_sidecar = write_sidecar(sidecar, exported.artifact)
        sidecar = read_sidecar(exported.artifact)  # round trip + sha256, as a reader will do
        exported, refit, accuracy = _held_out(ctx, fmt, exported, stage, index)
        if refit is not None:  # layers left float: the re-export is what gets checked and installed
            sidecar, staged_sidecar = refit, sidecar_path(exported.artifact)
        log(f"{index} {fmt.name}: validating in {fmt.runtime} on {len(ctx.validation_frames())} calibration images")
        validation = fmt.check(ctx, exported.artifact, sidecar)
        if not validation.passed:
            raise ConvertError(f"{fmt.name}: validation failed: {validation.summary}")
        # record the check (and the held-out accuracy) in the sidecar, then install
        sidecar = dataclasses.replace(sidecar, accuracy=accuracy, validation=ValidationRecord(
            kind=str(validation.kind), passed=True, summary=validation.summary, images=len(ctx.validation_frames()),
            images_from=(ctx.calib.manifest_sha256 if ctx.calib is not None else "") or "seeded random frames",
            metrics={k: (None if not np.isfinite(v) else float(v)) for k, v in validation.metrics.items()},
        ))
        write_sidecar(sidecar, exported.artifact)
        files = [*exported.companions, exported.artifact]
        size = sum(p.stat().st_size for p in files) / 1e6
        path = _install(out, fmt, files, staged_sidecar)
        seconds = time.perf_counter() - start
        held = "" if accuracy is None else (f"; held-out drop {accuracy.interval_text()} points (95 % interval, "
                                             f"{accuracy.images} images, limit {accuracy.max_drop_points:g})")
        log(f"{index} {fmt.name}: ok, {path.name} ({size:.2f} MB, {seconds:.1f} s): {validation.summary}{held}")
        return ArtifactResult(fmt.name, path, size, seconds, validation, files=[out / p.name for p in files])
    except Exception as exc:  # one format failing must not leave files or stop the others
        installer.abandon(stage)
        _remove_format_files(out, fmt)
        expected = isinstance(exc, (ConvertError, SidecarError, CalibrationError))
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if not expected:
            message = f"{type(exc).__name__}: {message}"
        if not message.startswith(fmt.name):
            message = f"{fmt.name}: {message}"
        log(f"{index} {message}")
        validation = None
        return ArtifactResult(fmt.name, None, 0.0, time.perf_counter() - start, validation, error=message.split(": ", 1)[-1])
    finally:
        installer.finish(stage, out)  # an interrupt (Ctrl-C) during the moves: complete them
        shutil.rmtree(stage, ignore_errors=True)


def load_calibration(calib: str | Path | CalibrationSet | None, image_size: int, labels: list[str]) -> CalibrationSet | None:
    """A loaded set (or ``None``) checked against the model's input size and labels."""
    if calib is None:
        return None
    try:
        loaded = calib if isinstance(calib, CalibrationSet) else load_calibration_set(calib)
        check_matches_model(loaded, image_size, labels)
    except CalibrationError as exc:
        raise ConvertError(str(exc)) from None
    return loaded


def export(
    checkpoint: str | Path,
    formats: str | Sequence[str],
    out: str | Path,
    calib: str | Path | CalibrationSet | None = None,
    options: ConvertOptions | None = None,
    log: Log = print,
) -> ConvertReport:
    """Convert ``checkpoint`` into every format of ``formats`` under ``out``.

    Args:
        checkpoint: a checkpoint written by ``train.checkpoint.save_checkpoint``.
        formats: a target (``"intel"``, ``"rpi"``, ``"jetson"``, ``"all"``), a format name, or
            a list / comma-separated mix (see :data:`convert.targets.TARGETS`, :data:`FORMATS`).
        out: output folder; artifacts are ``model_<format><suffix>`` with ``.json`` sidecars.
        calib: a calibration-set folder (``ssd-calibrate``) or a loaded set. Required by
            the INT8 formats; it also supplies the validation images (FP-only runs without
            it are validated on seeded random frames).
        options: see :class:`ConvertOptions`.
        log: progress sink (one line per call).
    Returns:
        A :class:`ConvertReport`; ``report.ok`` is False when any format failed (those
        formats left no files).
    Raises:
        ConvertError: bad input, before anything is written.
    """
    start = time.perf_counter()
    options = options or ConvertOptions()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file, not a folder; pass a folder (it is created when missing)")
    names = resolve_formats(formats)
    chosen = [FORMATS[n] for n in names]
    source = load_source(checkpoint)
    calib_set = load_calibration(calib, source.image_size, source.labels)
    needing = [f.name for f in chosen if f.needs_calibration]
    if needing and calib_set is None:
        raise ConvertError(f"{', '.join(needing)} need a calibration set; pass --calib (make calibrate builds one)")
    if options.max_drop is not None and any(f.precision == "int8" for f in chosen):
        require_holdout(calib_set)
    if calib_set is None:
        calib_set = _random_validation_set(source.image_size, options.validate_images)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConvertError(f"cannot create --out {out} ({exc.strerror or exc}); pass a folder you can write") from None
    installer.recover(out, log)
    work = Path(tempfile.mkdtemp(prefix=installer.WORK_PREFIX, dir=out))
    installer.mark_owner(work)
    ctx = ExportContext(source, calib_set, options, work, log)
    log(f"ssd-convert: {source.arch} ({source.spec.name}, {source.image_size} px, {source.num_classes} classes) from "
        f"{source.checkpoint}; {len(chosen)} formats -> {out}" + (f"; calibration {calib_set.root} ({len(calib_set)} images)" if calib else ""))
    results = []
    try:
        if options.max_drop is not None and any(f.precision == "int8" for f in chosen):
            announce_resolution(ctx)
        for i, fmt in enumerate(chosen, start=1):
            results.append(_convert_one(ctx, fmt, out, f"[{i}/{len(chosen)}]"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        write_record(out, results, {f.name: (f.runtime, f.precision) for f in chosen})
    return ConvertReport(out, results, time.perf_counter() - start)


def _random_validation_set(image_size: int, count: int) -> CalibrationSet:
    """Seeded random frames standing in for calibration images in FP-only runs."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 256, size=(max(1, count), 3, image_size, image_size), dtype=np.uint8)
    return CalibrationSet(Path("<random frames>"), inputs, {"source": "random"}, "")
