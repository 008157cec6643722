"""The training-curve plot (PNG): training loss and validation NDCG@10 per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_curve(history: Sequence[dict[str, Any]], path: str | Path, best_epoch: int) -> Path:
    """Two panels over epochs; the best epoch marked. Uses the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_ndcg) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_ndcg.plot(epochs, [h["valid_ndcg@10"] for h in history], marker=".", color="tab:green")
    ax_ndcg.axvline(best_epoch, color="grey", linestyle="--", label=f"best (epoch {best_epoch})")
    ax_ndcg.set(xlabel="epoch", ylabel="NDCG@10", title="validation NDCG@10")
    ax_ndcg.legend()
    for ax in (ax_loss, ax_ndcg):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
