"""The float fallback's search: which layer groups to leave float, accepting only real improvements.

A step (one more group float) is accepted only when it improves the fidelity signal
(:mod:`convert.meter`) beyond its own paired-bootstrap interval: the lower end of the gain's 95 %
interval is above zero. A step whose gain could be chance is refused, however the labelled drop
moved (on a few dozen images one detection moves it by points). A refused group is carried into
the next step (two layers may only help together: a wide activation's producer and consumer),
so each step tries the refused groups since the last accepted one plus the next; when a step is
accepted they all go float with it. The search stops as soon as the enforced signal is no longer
significantly above the limit (``done``), gives up after ``patience`` refused steps in a row,
and finally tries each float group quantized again, keeping it quantized where the limit still
holds without it: no group stays float that the limit does not need (with many images almost
any float layer improves the fidelity measurably, so that alone does not keep a layer float).

Pure logic over callables, so it is tested without any export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ssd.bootstrap import Interval


class HasLayers(Protocol):
    float_layers: tuple[str, ...]


C = TypeVar("C", bound=HasLayers)


@dataclass(frozen=True)
class Unit:
    """Layers that are left float together (one step of the search)."""

    name: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Step(Generic[C]):
    """One tried step: the unit, the candidate with it float, its fidelity gain, the verdict."""

    unit: Unit
    candidate: C
    gain: Interval
    accepted: bool


@dataclass
class Outcome(Generic[C]):
    """``met``: the candidate that meets the limit (``None``: none did); ``best``: the last
    accepted candidate (the start when nothing was accepted); ``steps``: every step tried."""

    met: C | None
    best: C
    steps: list[Step[C]]


def flatten(units: Sequence[Unit]) -> tuple[str, ...]:
    return tuple(layer for unit in units for layer in unit.layers)


def search(start: C, units: Iterable[Unit], evaluate: Callable[[tuple[str, ...]], C], gain: Callable[[C, C], Interval],
           done: Callable[[C], bool], log: Callable[[str], None] = lambda s: None, patience: int = 5,
           max_layers: int | None = None) -> Outcome[C]:
    """Leave ``units`` float one at a time (consumed lazily) from ``start`` (full INT8).

    evaluate: float layers -> a measured candidate; gain(better, worse): fidelity of ``better``
    minus ``worse``'s with its interval; done(candidate): the limit is no longer significantly
    exceeded. ``patience``: give up after this many refused steps in a row; ``max_layers``: never
    leave more layers float.
    """
    steps: list[Step[C]] = []
    if done(start):
        return Outcome(start, start, steps)
    chosen: list[Unit] = []
    pending: list[Unit] = []
    current = start
    for unit in units:
        if max_layers is not None and len(flatten([*chosen, *pending])) + len(unit.layers) > max_layers:
            break
        trial = evaluate(flatten([*chosen, *pending, unit]))
        g = gain(trial, current)
        accepted = g.low > 0.0
        steps.append(Step(unit, trial, g, accepted))
        carried = f" (with {', '.join(u.name for u in pending)})" if pending else ""
        log(f"{unit.name} float{carried}: fidelity gain {g.text()} -> "
            f"{'accepted' if accepted else 'refused: not beyond its interval'}")
        if not accepted:
            pending.append(unit)
            if len(pending) >= patience:
                log(f"{patience} steps in a row did not measurably help; stopping")
                break
            continue
        chosen += [*pending, unit]
        current, pending = trial, []
        if done(current):
            return Outcome(_prune(current, chosen, evaluate, gain, done, log), current, steps)
    return Outcome(None, current, steps)


def _prune(current: C, chosen: list[Unit], evaluate: Callable[[tuple[str, ...]], C], gain: Callable[[C, C], Interval],
           done: Callable[[C], bool], log: Callable[[str], None]) -> C:
    """Each float unit quantized again, in the order added: kept quantized when the limit still
    holds without it (the fidelity it gives back is logged)."""
    if len(chosen) < 2:
        return current
    for unit in list(chosen):
        rest = [u for u in chosen if u is not unit]
        if not rest:  # full INT8 is the start, which did not meet the limit
            break
        without = evaluate(flatten(rest))
        g = gain(current, without)
        if done(without):
            log(f"{unit.name} back to INT8: the limit holds without it (fidelity {-g.value:+.2f} [{-g.high:.2f}, {-g.low:.2f}])")
            chosen, current = rest, without
    return current


__all__ = ["Outcome", "Step", "Unit", "flatten", "search"]
