"""Run records: per-epoch CSV, TensorBoard scalars and a PNG of the loss and mAP curves."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

from ssd.atomic import atomic_path, atomic_write_text

CSV_FIELDS = ("epoch", "step", "lr", "loss", "loc_loss", "conf_loss", "images_per_s", "epoch_time_s",
              "map50", "map", "ar100")


def write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the full history (one row per epoch; blanks where not evaluated)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    atomic_write_text(path, buf.getvalue())


def plot_curves(path: Path, history: list[dict[str, Any]], title: str = "", split: str = "validation") -> None:
    """Two panels: training loss (total, loc, conf) per epoch and mAP@0.5 / mAP@[.5:.95] per
    evaluation on ``split`` (named on the axis)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is missing (pip install -e '.[train]'); no curves PNG", stacklevel=2)
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss", "total"), ("loc_loss", "loc"), ("conf_loss", "conf")):
        ax1.plot(epochs, [h[key] for h in history], label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    evals = [h for h in history if h.get("map50") is not None and not math.isnan(h["map50"])]
    ax2.plot([h["epoch"] for h in evals], [h["map50"] for h in evals], "o-", label="mAP@0.5")
    ax2.plot([h["epoch"] for h in evals], [h["map"] for h in evals], "s-", label="mAP@[.5:.95]")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(f"{split} mAP")
    ax2.set_ylim(0, 1)
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


class TensorBoard:
    """A thin, optional SummaryWriter: does nothing when disabled or tensorboard is missing."""

    def __init__(self, log_dir: Path | None, purge_step: int | None = None) -> None:
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard is missing (pip install -e '.[train]'); no TensorBoard logs", stacklevel=2)
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
