"""Calibration sets: class-stratified seeded selection, shared preprocessing, manifest.

Torch-free. ``build_calibration_set`` writes a set; ``load_calibration_set`` reads one.
"""

from calibration.build import CalibrationRequest, build_calibration_set
from calibration.select import stratified_indices
from calibration.sets import (
    CalibrationError,
    CalibrationSet,
    Holdout,
    load_calibration_set,
    write_calibration_set,
)

__all__ = [
    "CalibrationError",
    "CalibrationRequest",
    "CalibrationSet",
    "Holdout",
    "build_calibration_set",
    "load_calibration_set",
    "stratified_indices",
    "write_calibration_set",
]
