"""The float fallback's search: which layer groups to leave float, accepting only real improvements.

A step (one more group float) is accepted only when it improves the fidelity signal
(:mod:`convert.meter`) beyond its own paired-bootstrap interval: the lower end of the gain's 95 %
interval is above zero. A step whose gain could be chance is refused and the group stays
quantized, however the labelled drop moved (on a few dozen images one detection moves it by
points). The search stops as soon as the enforced signal is no longer significantly above the
limit (``done``), gives up after ``patience`` refused steps in a row, and finally tries each
accepted group quantized again, keeping it quantized where that costs no measurable fidelity
and the limit still holds: no group stays float that does not measurably help.

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
           done: Callable[[C], bool], log: Callable[[str], None] = lambda s: None, patience: int = 3,
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
    current, refused = start, 0
    for unit in units:
        if max_layers is not None and len(flatten(chosen)) + len(unit.layers) > max_layers:
            break
        trial = evaluate(flatten([*chosen, unit]))
        g = gain(trial, current)
        accepted = g.low > 0.0
        steps.append(Step(unit, trial, g, accepted))
        log(f"{unit.name} float: fidelity gain {g.text()} -> {'accepted' if accepted else 'refused: not beyond its interval'}")
        if not accepted:
            refused += 1
            if refused >= patience:
                log(f"{patience} steps in a row did not measurably help; stopping")
                break
            continue
        chosen.append(unit)
        current, refused = trial, 0
        if done(current):
            return Outcome(_prune(current, chosen, evaluate, gain, done, log), current, steps)
    return Outcome(None, current, steps)


def _prune(current: C, chosen: list[Unit], evaluate: Callable[[tuple[str, ...]], C], gain: Callable[[C, C], Interval],
           done: Callable[[C], bool], log: Callable[[str], None]) -> C:
    """Each accepted unit but the last, quantized again: kept quantized when the fidelity it
    loses is not measurable and the limit still holds."""
    for unit in list(chosen[:-1]):
        rest = [u for u in chosen if u is not unit]
        without = evaluate(flatten(rest))
        g = gain(current, without)
        if g.low <= 0.0 and done(without):
            log(f"{unit.name} back to INT8: it does not measurably help ({g.text()})")
            chosen, current = rest, without
    return current


__all__ = ["Outcome", "Step", "Unit", "flatten", "search"]
