"""`quorum bench --plot`: a PNG of a bench report's timeline (matplotlib, optional).

Never: required. matplotlib is not a dependency; :func:`plot_support` says whether it is
installed before the bench starts, so a run is not wasted on a missing plotter.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

PLOT_SIZE_INCHES = (9, 6)


def plot_support() -> bool:
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def write_plot(document: dict[str, Any], path: Path) -> None:
    """A PNG with committed tx/s and latency (p50, p99) per second of the run."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    timeline = document["timeline"]
    xs = [p["t_s"] for p in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=PLOT_SIZE_INCHES)
    top.plot(xs, [p["committed"] for p in timeline], drawstyle="steps-post")
    top.set_ylabel("committed tx/s")
    top.set_title(
        f"quorum bench: {document['kind']}, {document['mode']} loop, "
        f"{document['validators']} validators, {document['tx_per_s']:,.0f} tx/s"
    )
    bottom.plot(xs, [p["p50_ms"] for p in timeline], label="p50")
    bottom.plot(xs, [p["p99_ms"] for p in timeline], label="p99")
    bottom.set_ylabel("submit-to-commit ms")
    bottom.set_xlabel("seconds since the load started (latency by submit second)")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
