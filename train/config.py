"""Experiment configuration: YAML files in ``train/configs/`` plus ``key=value`` overrides.

A config names the model, data, augmentation, optimizer, loss, evaluation and runtime
settings (see the dataclasses below; every field has a default). ``load_config("tiny_synth",
["optim.epochs=5", "optim.lr=0.01"])`` reads ``train/configs/tiny_synth.yaml`` (or any YAML
path), applies the overrides (values parsed with ``yaml.safe_load``) and validates: an
unknown key or a value of the wrong type is a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from train.augment import AugmentConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A bad config file, key or value; the message names it."""


@dataclass
class ModelConfig:
    """arch: registry key; spec: prior spec name (None = the arch's own); spec_overrides:
    :class:`ssd.specs.SSDSpec` fields to change (e.g. smaller ``scales`` for small objects; give
    a new ``name``), kept in every checkpoint; kwargs: builder arguments (``width``,
    ``batch_norm``); backbone_weights: ImageNet backbone to start from: ``imagenet`` (the arch's
    torchvision ImageNet weights, fetched and hash-checked), a name in
    :data:`train.models.pretrained.REGISTRY`, an http(s)/file URL or a local torchvision state
    dict; ``scratch`` or null trains from random init. init_weights: a whole model to start
    from (a checkpoint of ``ssd-train``/``ssd-import``, or a torchvision detector name such as
    ``ssdlite320_mobilenet_v3_large_coco``): tensors of matching name and shape load, so another
    class count re-initializes the classification heads."""

    arch: str = "tiny"
    spec: str | None = None
    spec_overrides: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = None
    init_weights: str | None = None


@dataclass
class DataConfig:
    """format: voc | coco | synth | auto. labels: the foreground class names in model order
    (empty: ``labels.txt`` in the root, else every name in the annotations, sorted; for COCO the
    categories in id order); objects of other classes are dropped with one warning. ``root`` holds the validation split and, unless
    ``train_roots`` lists several folders (VOC 2007 + 2012), the training split too. For
    ``synth`` the dataset under ``root`` is generated (once) from ``synth``
    (:class:`train.synth.SynthConfig` fields)."""

    format: str = "synth"
    root: str = "data/synth"
    labels: list[str] = field(default_factory=list)
    train_roots: list[str] = field(default_factory=list)
    train_split: str = "train"
    val_split: str = "val"
    keep_difficult: bool = False
    workers: int = 2
    synth: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """SGD with momentum; lr is for the whole (global) batch; warm-up linear from
    ``lr * warmup_factor`` over ``warmup_epochs``; ``schedule`` cosine (to ``lr * min_lr_ratio``)
    or multistep (``gamma`` at each epoch in ``milestones``); ``grad_clip`` 0 = off."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    warmup_epochs: float = 1.0
    warmup_factor: float = 0.001
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0
    no_decay_norm_bias: bool = True


@dataclass
class LossConfig:
    iou_threshold: float = 0.5
    neg_pos_ratio: float = 3.0
    alpha: float = 1.0


@dataclass
class EvalConfig:
    """every: evaluate every K epochs (and after the last); 0 = only after the last.
    best_metric: ``map50`` or ``map`` (mAP@[.5:.95]) decides which epoch is ``best.pt``.
    batch_size: evaluation batch; ``ssd-eval`` and ``ssd-compare`` use the checkpoint's (and its
    ``runtime.channels_last``), so they reproduce this run's figures exactly. The thresholds
    are :data:`ssd.postprocess.EVAL`, those of every mAP the project reports; not a setting."""

    every: int = 1
    best_metric: str = "map50"
    batch_size: int = 32


@dataclass
class RuntimeConfig:
    """device: auto | cpu | cuda | cuda:N | mps. amp: auto (bf16 on GPUs that have it, else
    fp16 with a scaler; off on CPU) | bf16 | fp16 | off. threads: CPU threads (0 = torch's default)."""

    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int = 0
    log_every: int = 10
    tensorboard: bool = True
    plot: bool = True


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists): YAML/checkpoint friendly."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` (a small subset of typing)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if origin is tuple:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
        return [_coerce(v, args[0], where) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp}")


def _build(cls: type, data: Any, where: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {(where + '.' if where else '') + unknown[0]!s}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a nested dict into a :class:`TrainConfig`."""
    return _build(TrainConfig, data)


def resolve_config_path(name_or_path: str) -> Path:
    """``tiny_synth`` -> ``train/configs/tiny_synth.yaml``; an existing path is used as is."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {name_or_path!r} is neither a file nor one of {known}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.01"`` -> ``(["optim", "lr"], 0.01)``; the value goes through ``yaml.safe_load``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` in a copy of the nested dict ``data``."""
    out = _plain(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def load_config(name_or_path: str | None, overrides: list[str] | None = None, base: dict[str, Any] | None = None) -> TrainConfig:
    """Read a config (or start from ``base``, e.g. a checkpoint's config), apply overrides, validate."""
    data = read_yaml(resolve_config_path(name_or_path)) if name_or_path else dict(base or {})
    if name_or_path and "name" not in data:
        data["name"] = Path(name_or_path).stem
    return config_from_dict(apply_overrides(data, overrides or []))
