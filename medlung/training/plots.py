"""Training figures: ``curves.png`` (3x3: train/val/test x loss/IoU/Dice), ``curves_groups.png``
(validation Dice per source and convention, per epoch) and ``samples.png``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from medlung.atomic import write_atomically


def _save(fig, path: Path) -> None:
    """The figure as a PNG at ``path``, written atomically (a link there is replaced, not followed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()), overwrite=True)


def plot_curves(path: Path, history: list[dict], test: dict | None, best_epoch: int) -> None:
    """Rows train / validation / test, columns loss / IoU / Dice, per epoch.

    The test row shows best.pt evaluated once on the test split, drawn at the
    best epoch.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
    for row, (part, prefix) in enumerate((("train", "train_"), ("validation", "val_"), ("test", None))):
        for col, metric in enumerate(("loss", "iou", "dice")):
            ax = axes[row, col]
            if prefix is not None:
                ax.plot(epochs, [r[prefix + metric] for r in history], marker=".", color="C0" if row == 0 else "C1")
            elif test is not None:
                ax.axhline(test[metric], color="C2", linestyle="--")
                ax.plot([best_epoch], [test[metric]], marker="o", color="C2")
                ax.annotate(
                    f"{test[metric]:.4f}", (best_epoch, test[metric]), textcoords="offset points", xytext=(5, 5)
                )
            else:
                ax.text(0.5, 0.5, "no test split", ha="center", va="center", transform=ax.transAxes)
            if best_epoch and prefix is not None:
                ax.axvline(best_epoch, color="grey", linewidth=0.5)
            ax.set_title(f"{part} {metric if metric != 'iou' else 'IoU'}".replace("dice", "Dice"))
            ax.grid(alpha=0.3)
            if row == 2:
                ax.set_xlabel("epoch")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_group_curves(path: Path, history: list[dict], best_epoch: int) -> None:
    """Validation Dice per group (``val_dice_<source>_<convention>``) and their mean, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fixed = ("val_dice_field", "val_dice_anatomical")
    groups = sorted({k for r in history for k in r if k.startswith("val_dice_") and k not in fixed})
    fig, ax = plt.subplots(figsize=(8, 5))
    for key in groups or [k for k in fixed if any(k in r for r in history)]:
        ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker=".", label=key[len("val_dice_") :])
    ax.plot(epochs, [r["val_dice"] for r in history], color="black", linewidth=2, label="mean (model selection)")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linewidth=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice (working grid)")
    ax.set_title("validation Dice per source and convention")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_samples(path: Path, model, dataset, roi_size: int, overlap: float, device, dtype) -> None:
    """Montage, one validation film per row: film | ground truth | prediction | overlay (its own convention)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medlung.networks.running import predict_logits

    items = list(dataset)
    model.eval()
    fig, axes = plt.subplots(len(items), 4, figsize=(12, 3 * len(items)), squeeze=False)
    for row, item in enumerate(items):
        image = item["image"][None]
        channel = int(item["own"].argmax())  # the film's own lung convention
        logits = predict_logits(model, image, roi_size, overlap, device, dtype)
        prediction = (logits[0, channel] > 0).cpu().numpy()
        film = item["image"][0].cpu().numpy()
        truth = item["label"][channel].cpu().numpy() > 0.5
        overlay = np.dstack([film] * 3)
        overlay[prediction > 0] = 0.6 * overlay[prediction > 0] + 0.4 * np.array([1.0, 0.2, 0.2])
        for col, (title, picture) in enumerate(
            (("film", film), ("ground truth", truth), ("prediction", prediction), ("overlay", overlay))
        ):
            axes[row, col].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axes[row, col].set_title(title)
            axes[row, col].axis("off")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
