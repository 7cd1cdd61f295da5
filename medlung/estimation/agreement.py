"""How well estimated Dice values agree with the true ones: the numbers ``medlung evaluate`` and the fit report.

MAE, Pearson and Spearman correlation, the share of true values inside the
80 % interval, and the quality flag's record: of the films whose true Dice is
below the flag's threshold, how many it caught, and of the good films (true
Dice at least :data:`GOOD_DICE`), how many it flagged needlessly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Films whose true Dice is at least this are "good": flagging one is a false alarm.
GOOD_DICE = 0.95


def estimate_agreement(
    estimated: Sequence[float],
    true: Sequence[float],
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    threshold: float = 0.90,
    flagged: Sequence[bool | None] | None = None,
) -> dict:
    """Agreement of estimated and true Dice values over the films that have both.

    Parameters
    ----------
    estimated, true : sequence of float
        Per film, 0-1; pairs with a NaN or None are left out.
    low, high : sequence of float, optional
        The estimates' interval.
    threshold : float
        The ``low_dice_estimate`` flag's threshold.
    flagged : sequence of bool, optional
        Whether each film was flagged ``low_dice_estimate`` (default: its estimate is below ``threshold``).

    Returns
    -------
    dict
        ``n``; ``mae``; ``bias`` (mean estimated - true); ``pearson`` and ``spearman`` (None with fewer than 3
        films or no spread); ``coverage`` (share of true values inside [low, high]); ``threshold``;
        ``below`` (films with true Dice < threshold), ``caught`` (of those, flagged) and ``catch_rate``;
        ``good`` (true >= :data:`GOOD_DICE`), ``false_flags`` (of those, flagged) and ``false_flag_rate``;
        rates are None when there is no film to count.
    """
    e = _floats(estimated)
    t = _floats(true)
    keep = np.isfinite(e) & np.isfinite(t)
    lo = _floats(low)[keep] if low is not None else None
    hi = _floats(high)[keep] if high is not None else None
    e, t = e[keep], t[keep]
    if flagged is None:
        flags = e < threshold
    else:
        flags = np.array([bool(f) for f in flagged], dtype=bool)[keep]
    below, good = t < threshold, t >= GOOD_DICE
    out: dict = {
        "n": len(e),
        "mae": _round(np.mean(np.abs(e - t))) if len(e) else None,
        "bias": _round(np.mean(e - t)) if len(e) else None,
        "pearson": _round(_pearson(e, t)),
        "spearman": _round(_pearson(_ranks(e), _ranks(t))) if len(e) else None,
        "coverage": None,
        "threshold": float(threshold),
        "below": int(below.sum()),
        "caught": int((flags & below).sum()),
        "catch_rate": _round((flags & below).sum() / below.sum()) if below.any() else None,
        "good": int(good.sum()),
        "false_flags": int((flags & good).sum()),
        "false_flag_rate": _round((flags & good).sum() / good.sum()) if good.any() else None,
    }
    if lo is not None and hi is not None and len(e):
        inside = np.isfinite(lo) & np.isfinite(hi)
        if inside.any():
            out["coverage"] = _round(np.mean((t[inside] >= lo[inside]) & (t[inside] <= hi[inside])))
    return out


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (Spearman's)."""
    from scipy.stats import rankdata

    return rankdata(values)


def _round(value) -> float | None:
    return None if value is None else round(float(value), 4)
