"""The figures of ``medlung evaluate``: ``boxplot.png``, ``worst.png`` and ``calibration.png``.

This module owns the pictures of an evaluation, drawn with matplotlib's Agg
backend (imported when first drawn, so scoring needs no matplotlib):

* :func:`thumbnails`: the small film and label pictures kept for each scored
  film (longest side :data:`THUMBNAIL_SIDE` pixels), so that the worst films
  can be drawn after every film was scored without keeping full-size films;
* :func:`boxplot_png`: one box per metric and structure (both lungs, patient
  right, patient left) over the films scored; distances in the most common
  unit (mm, or px for films without spacing), films in other units left out
  and the title says so;
* :func:`worst_png`: the :data:`N_WORST_PICTURE` films of lowest Dice: the
  film, the truth, the prediction (orange right lung, blue left lung, yellow
  lung without side) and the agreement overlay (green agree, blue missed,
  red extra);
* :func:`calibration_png`: estimated against true Dice, with each estimate's
  80 % interval and the ``low_dice_estimate`` threshold.

The figures are returned as PNG bytes; writing them is
:func:`medlung.evaluation.write_outputs`.
"""

from __future__ import annotations

import io
import math

import numpy as np

from medlung.metrics import DISTANCE_METRICS, METRICS, STRUCTURES

__all__ = ["N_WORST_PICTURE", "THUMBNAIL_SIDE", "boxplot_png", "calibration_png", "thumbnails", "worst_png"]

#: Films shown in worst.png.
N_WORST_PICTURE = 5
#: Longest side of the pictures kept for worst.png, pixels.
THUMBNAIL_SIDE = 320


def thumbnails(pixels: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> dict:
    """Pictures of one film for ``worst.png``, longest side at most :data:`THUMBNAIL_SIDE` pixels.

    Parameters
    ----------
    pixels : numpy.ndarray
        The film ``(rows, cols)``; shown between its 1st and 99th percentiles.
    truth, pred : numpy.ndarray
        uint8 label maps on the film's grid (:meth:`medlung.evaluation.scoring.Structures.labels`).

    Returns
    -------
    dict
        ``image`` (uint8 grey, bilinear), ``truth`` and ``pred`` (nearest
        neighbour), all of the same shape.
    """
    from PIL import Image

    rows, cols = pixels.shape
    scale = min(1.0, THUMBNAIL_SIDE / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    low, high = np.percentile(pixels, (1, 99))
    grey = np.clip((pixels - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    return {
        "image": np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR)),
        "truth": np.asarray(Image.fromarray(truth).resize(size, Image.Resampling.NEAREST)),
        "pred": np.asarray(Image.fromarray(pred).resize(size, Image.Resampling.NEAREST)),
    }


def _figure_bytes(figure) -> bytes:
    """The PNG of ``figure`` at 100 dpi; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def boxplot_png(rows: list[dict]) -> bytes:
    """``boxplot.png``: Dice, IoU, HD95 and ASSD per structure over the films scored.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`medlung.evaluation.scoring.score_film`; only those
        with ``status`` ok and finite values are drawn.

    Returns
    -------
    bytes
        A PNG at 100 dpi, one panel per metric; distances in the most common
        unit of the films (mm, or px), films in another unit left out.
    """
    plt = _pyplot()
    ok = [r for r in rows if r["status"] == "ok"]
    units = [r["unit"] for r in ok]
    unit = max(set(units), key=units.count) if units else "px"
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4.2))
    for axis, metric in zip(axes, METRICS):
        data, names = [], []
        for suffix, _label in STRUCTURES:
            chosen = ok if metric not in DISTANCE_METRICS else [r for r in ok if r["unit"] == unit]
            values = [r[f"{metric}{suffix}"] for r in chosen]
            values = [v for v in values if v is not None and math.isfinite(v)]
            if values:
                data.append(values)
                names.append({"": "both", "_right": "right", "_left": "left"}[suffix])
        if data:
            axis.boxplot(data, showfliers=True)
            axis.set_xticks(range(1, len(names) + 1), names)
        else:
            axis.text(0.5, 0.5, "no values", ha="center", va="center", transform=axis.transAxes)
        title = {"dice": "Dice", "iou": "IoU"}.get(metric, metric.upper())
        if metric in DISTANCE_METRICS:
            title += f" ({unit})" + (" [films in other units left out]" if len(set(units)) > 1 else "")
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{len(ok)} films scored" + (f", {len(rows) - len(ok)} failed" if len(rows) > len(ok) else ""))
    figure.tight_layout()
    return _figure_bytes(figure)


def calibration_png(rows: list[dict], threshold: float = 0.90) -> bytes:
    """``calibration.png``: estimated against true Dice of both lungs, one point per film with its 80 % interval.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`medlung.evaluation.scoring.score_film`; films scored with an estimate are drawn.
    threshold : float
        The ``low_dice_estimate`` flag's threshold, drawn on both axes (films left of the vertical line are
        flagged; those below the horizontal line should be).

    Returns
    -------
    bytes
        A PNG at 100 dpi; a film whose estimate is off by more than 0.05 is drawn in red.
    """
    plt = _pyplot()
    pairs = [
        (r["dice_estimate"], r["dice_estimate_low"], r["dice_estimate_high"], r["dice"])
        for r in rows
        if r["status"] == "ok" and _finite(r.get("dice_estimate")) and _finite(r.get("dice"))
    ]
    figure, axis = plt.subplots(figsize=(5.6, 5.4))
    if not pairs:
        axis.text(0.5, 0.5, "no Dice estimates\n(the model has no Dice calibration)", ha="center", va="center")
        axis.set_axis_off()
        return _figure_bytes(figure)
    estimate, low, high, true = (np.array(v, dtype=float) for v in zip(*pairs, strict=True))
    lower = max(0.0, min(float(np.nanmin(true)), float(np.nanmin(estimate))) - 0.02)
    error = np.abs(estimate - true)
    colour = np.where(error > 0.05, "#c0392b", "#2c7fb8")
    spread = np.vstack([np.clip(estimate - low, 0, None), np.clip(high - estimate, 0, None)])
    spread = np.where(np.isfinite(spread), spread, 0.0)
    axis.errorbar(estimate, true, xerr=spread, fmt="none", ecolor="#999999", elinewidth=0.8, alpha=0.6)
    axis.scatter(estimate, true, c=colour, s=14, zorder=3)
    axis.plot([lower, 1], [lower, 1], color="black", linewidth=0.8)
    axis.axvline(threshold, color="#e67e22", linestyle="--", linewidth=0.8)
    axis.axhline(threshold, color="#e67e22", linestyle=":", linewidth=0.8)
    axis.set_xlim(lower, 1.0)
    axis.set_ylim(lower, 1.0)
    axis.set_xlabel("estimated Dice (80 % interval)")
    axis.set_ylabel("true Dice")
    mae = float(np.mean(error))
    r = float(np.corrcoef(estimate, true)[0, 1]) if len(true) > 2 and np.std(true) > 0 and np.std(estimate) > 0 else 0
    axis.set_title(f"{len(true)} films: MAE {mae:.3f}, Pearson r {r:.2f}")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _figure_bytes(figure)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def worst_png(pictures: list[dict]) -> bytes:
    """``worst.png``: one line per film (film, truth, prediction, agreement overlay).

    Parameters
    ----------
    pictures : list of dict
        The pictures of :func:`medlung.evaluation.scoring.score_film`
        (``film``, ``dice``, ``hd95``, ``unit`` and :func:`thumbnails`), in
        the order drawn (lowest Dice first); empty draws "no film was scored".

    Returns
    -------
    bytes
        A PNG at 100 dpi, 13 x 3.3 inches per film.
    """
    from matplotlib.colors import ListedColormap

    plt = _pyplot()
    if not pictures:
        figure = plt.figure(figsize=(6, 2))
        figure.text(0.5, 0.5, "no film was scored", ha="center", va="center")
        return _figure_bytes(figure)
    # 0 background (transparent), 1 right lung, 2 left lung, 3 lung without side
    colours = ListedColormap([(0, 0, 0, 0), (0.95, 0.45, 0.1, 1), (0.15, 0.55, 0.95, 1), (0.85, 0.8, 0.1, 1)])
    figure, axes = plt.subplots(len(pictures), 4, figsize=(13, 3.3 * len(pictures)), squeeze=False)
    for line, picture in zip(axes, pictures):
        image, truth, pred = picture["image"], picture["truth"], picture["pred"]
        line[0].imshow(image, cmap="gray")
        hd95 = picture["hd95"]
        line[0].set_title(
            f"{picture['film']}\nDice {picture['dice']:.3f}, HD95 {hd95:.1f} {picture['unit']}"
            if math.isfinite(hd95)
            else f"{picture['film']}\nDice {picture['dice']:.3f}, HD95 inf",
            fontsize=9,
        )
        for axis, labels, name in ((line[1], truth, "truth"), (line[2], pred, "prediction")):
            axis.imshow(image, cmap="gray")
            axis.imshow(labels, cmap=colours, vmin=0, vmax=3, alpha=0.55, interpolation="nearest")
            sides = "orange right, blue left" + (", yellow no side" if (labels == 3).any() else "")
            axis.set_title(f"{name} ({sides})", fontsize=9)
        t, p = truth > 0, pred > 0
        grey = np.repeat((image.astype(np.float32) / 255.0)[..., None], 3, axis=2)
        overlay = grey.copy()
        for mask, colour in ((t & p, (0.1, 0.8, 0.1)), (t & ~p, (0.2, 0.4, 1.0)), (p & ~t, (1.0, 0.15, 0.15))):
            overlay[mask] = 0.45 * grey[mask] + 0.55 * np.asarray(colour)
        line[3].imshow(overlay)
        line[3].set_title(f"overlay Dice {picture['dice']:.3f}\ngreen agree, blue missed, red extra", fontsize=9)
        for axis in line:
            axis.axis("off")
    figure.tight_layout()
    return _figure_bytes(figure)
