"""The fitted Dice estimate: evidence -> a Dice with an 80 % interval, stored in a bundle beside the weights.

The regressor of one structure (both lungs, right lung, left lung) of one lung
convention is a ridge regression on standardised evidence (some evidence
log-transformed) predicting ``log(1 - Dice + EPSILON)``, the log of the error:
an error of 0.02 and one of 0.04 differ as much as 0.2 and 0.4. An isotonic
map (pool-adjacent-violators) then calibrates that prediction against the
Dice of the calibration films, and the interval comes from the out-of-fold
residuals of the calibration films (split conformal: the 10th and 90th
percentiles, in the log-error space, in bins of the predicted error).

Two evidence levels can be fitted: ``fast`` (one network pass: margin,
convention, shape and quality evidence) and ``perturbed`` (three more passes;
:mod:`medlung.inference.perturbations`). The file (``models/dice_estimate.json``,
:data:`FILE_NAME`) holds, for each convention the model draws, the shape models
and the regressors, and says what they were fitted on.

numpy only; :func:`fit_regressor` is what ``scripts/fit_dice_estimate.py`` calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medlung.estimation.shape_model import ShapeModel

#: Name of the calibration file in a bundle's ``models/`` folder (named in ``configs/metadata.json``).
FILE_NAME = "dice_estimate.json"
#: Format of that file; a medlung that reads another format ignores the file with a warning.
FORMAT = 2
#: Added to the error 1 - Dice before its logarithm, so that a perfect mask has a finite target.
EPSILON = 0.01
#: Evidence levels: ``fast`` needs no network pass beyond the segmentation's; ``perturbed`` three more.
LEVELS = ("fast", "perturbed")
#: The interval's coverage: the estimate's low and high are these quantiles of the calibration residuals.
INTERVAL = (0.1, 0.9)
#: Bins of the predicted log-error the interval's residual quantiles are taken in.
INTERVAL_BINS = 3
#: Probability levels at which the residual distribution is kept (its quantiles), for the interval and for the
#: chance that the Dice lies below a threshold (:meth:`DiceEstimate.probability_below`).
QUANTILE_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def to_target(dice: np.ndarray | float) -> np.ndarray:
    """Dice -> the regression target ``log(1 - dice + EPSILON)``."""
    return np.log(1.0 - np.asarray(dice, dtype=np.float64) + EPSILON)


def from_target(target: np.ndarray | float) -> np.ndarray:
    """The regression target -> Dice, clipped to [0, 1]."""
    return np.clip(1.0 + EPSILON - np.exp(np.asarray(target, dtype=np.float64)), 0.0, 1.0)


@dataclass
class Regressor:
    """One fitted estimate: evidence of one structure -> Dice with an interval.

    Attributes
    ----------
    features : list of str
        Evidence names (``"<structure>.<name>"``, :func:`medlung.estimation.evidence.film_evidence`).
    log : list of bool
        Per feature: take ``log(value + 1e-4)`` first.
    fill : list of float
        Per feature: the value used when the evidence is missing (NaN), the calibration median.
    mean, scale : list of float
        Standardisation of the (transformed) features.
    coef : list of float
        Ridge coefficients on the standardised features.
    intercept : float
    iso_x, iso_y : list of float
        The isotonic map from the linear prediction to the calibrated log-error (``numpy.interp`` knots).
    bins : list of float
        Upper edges of the calibrated log-error bins of the interval (the last is ``inf``).
    residuals : list of list of float
        Per bin: the out-of-fold residual (true minus calibrated log-error) at each of :data:`QUANTILE_LEVELS`.
    """

    features: list
    log: list
    fill: list
    mean: list
    scale: list
    coef: list
    intercept: float
    iso_x: list
    iso_y: list
    bins: list
    residuals: list

    def target(self, evidence: Mapping[str, float]) -> float:
        """The calibrated log-error of one film's evidence."""
        return float(self.targets(self.matrix([evidence]))[0])

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``(n, features)`` of evidence dictionaries, missing values as NaN."""
        return np.array([[float(row.get(name, np.nan)) for name in self.features] for row in rows], dtype=np.float64)

    def targets(self, x: np.ndarray) -> np.ndarray:
        """Calibrated log-errors of a raw evidence matrix (:meth:`matrix`)."""
        return np.interp(self.linear(x), self.iso_x, self.iso_y)

    def linear(self, x: np.ndarray) -> np.ndarray:
        """The ridge prediction of a raw evidence matrix, before the isotonic map."""
        z = _standardised(x, self.log, self.fill, self.mean, self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def predict(self, evidence: Mapping[str, float]) -> tuple[float, float, float]:
        """``(dice, low, high)`` of one film's evidence: the estimate and its 80 % interval."""
        value, quantiles = self.distribution(evidence)
        low, high = (float(np.interp(q, QUANTILE_LEVELS, quantiles)) for q in INTERVAL)
        return value, min(low, value), max(high, value)

    def distribution(self, evidence: Mapping[str, float]) -> tuple[float, list[float]]:
        """The estimate and the Dice at each of :data:`QUANTILE_LEVELS` (the chance the true Dice is below it)."""
        target = self.target(evidence)
        index = min(int(np.searchsorted(self.bins, target)), len(self.residuals) - 1)
        # a larger log-error is a lower Dice: the residual at level q is the Dice at level 1 - q
        errors = target + np.asarray(self.residuals[index], dtype=np.float64)
        return float(from_target(target)), [float(v) for v in from_target(errors)[::-1]]

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "log": [bool(v) for v in self.log],
            **{
                name: [round(float(v), 6) for v in getattr(self, name)]
                for name in ("fill", "mean", "scale", "coef", "iso_x", "iso_y")
            },
            "residuals": [[round(float(v), 6) for v in values] for values in self.residuals],
            "bins": [round(float(v), 6) if np.isfinite(v) else "inf" for v in self.bins],
            "intercept": round(float(self.intercept), 6),
        }

    @classmethod
    def from_dict(cls, values: Mapping) -> Regressor:
        data = dict(values)
        data["bins"] = [float(v) for v in data["bins"]]
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass
class DiceEstimate:
    """The estimated Dice of one film's masks against a careful annotation of the same convention.

    Attributes
    ----------
    dice, low, high : float
        Both lungs: the estimate and its 80 % interval, 0-1.
    lungs : dict
        ``{"right": (dice, low, high), "left": (...)}`` per lung.
    level : str
        The evidence used: ``"fast"`` or ``"perturbed"``.
    quantiles : list of float
        Both lungs: the Dice at each of :data:`QUANTILE_LEVELS` of the calibrated error distribution.
    evidence : dict
        What was measured (:func:`medlung.estimation.evidence.film_evidence`).
    """

    dice: float
    low: float
    high: float
    lungs: dict = field(default_factory=dict)
    level: str = "fast"
    quantiles: list = field(default_factory=list, repr=False)
    evidence: dict = field(default_factory=dict, repr=False)

    def probability_below(self, dice: float) -> float:
        """The chance, from the calibration's residuals, that the true Dice of both lungs is below ``dice``."""
        if not self.quantiles:
            return float(self.dice < dice)
        knots = [0.0, *self.quantiles, 1.0]
        levels = [0.0, *QUANTILE_LEVELS, 1.0]
        order = np.maximum.accumulate(np.asarray(knots))  # quantiles are non-decreasing; guard ties
        return float(np.clip(np.interp(dice, order, levels), 0.0, 1.0))

    def report_fields(self) -> dict:
        """Report columns: ``dice_estimate``, ``dice_estimate_low``, ``dice_estimate_high``, then per lung."""
        out: dict[str, float | None] = {"dice_estimate": round(self.dice, 4), "dice_estimate_low": round(self.low, 4)}
        out["dice_estimate_high"] = round(self.high, 4)
        for side in ("right", "left"):
            values = self.lungs.get(side)
            for suffix, index in (("", 0), ("_low", 1), ("_high", 2)):
                out[f"{side}_dice_estimate{suffix}"] = None if values is None else round(float(values[index]), 4)
        return out


@dataclass
class DiceCalibration:
    """The contents of a bundle's ``models/dice_estimate.json``.

    Attributes
    ----------
    model_version : str
        The bundle version it was fitted for (a bundle of another version warns).
    shapes : dict
        ``convention -> structure -> ShapeModel``.
    regressors : dict
        ``convention -> level -> structure -> Regressor``.
    fitted : dict
        What it was fitted on and how well it did (films, sources, command, evaluation numbers).
    """

    model_version: str
    shapes: dict
    regressors: dict
    fitted: dict = field(default_factory=dict)

    def levels(self, lungs: str) -> list[str]:
        """The evidence levels fitted for a convention."""
        return [level for level in LEVELS if level in self.regressors.get(lungs, {})]

    def estimate(self, evidence: Mapping[str, float], lungs: str, level: str = "fast") -> DiceEstimate:
        """The estimate of one film's evidence for convention ``lungs`` at evidence ``level``."""
        fitted = self.regressors[lungs][level]
        dice, low, high = fitted["both"].predict(evidence)
        _, quantiles = fitted["both"].distribution(evidence)
        sides = {side: fitted[side].predict(evidence) for side in ("right", "left") if side in fitted}
        return DiceEstimate(dice, low, high, sides, level, quantiles, dict(evidence))

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "model_version": self.model_version,
            "fitted": self.fitted,
            "shapes": {c: {s: m.to_dict() for s, m in shapes.items()} for c, shapes in self.shapes.items()},
            "regressors": {
                c: {level: {s: r.to_dict() for s, r in fits.items()} for level, fits in levels.items()}
                for c, levels in self.regressors.items()
            },
        }

    @classmethod
    def from_dict(cls, values: Mapping) -> DiceCalibration:
        if int(values.get("format", 0)) != FORMAT:
            raise ValueError(f"Dice estimate format {values.get('format')!r}; this medlung reads format {FORMAT}.")
        return cls(
            model_version=str(values["model_version"]),
            fitted=dict(values.get("fitted", {})),
            shapes={c: {s: ShapeModel.from_dict(m) for s, m in v.items()} for c, v in values["shapes"].items()},
            regressors={
                c: {level: {s: Regressor.from_dict(r) for s, r in fits.items()} for level, fits in levels.items()}
                for c, levels in values["regressors"].items()
            },
        )

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (replacing an earlier one: a refit replaces its calibration)."""
        from medlung.atomic import write_atomically

        text = json.dumps(self.to_dict(), separators=(",", ":")) + "\n"

        def write(tmp: Path) -> None:
            tmp.write_text(text)

        return write_atomically(Path(path), write, overwrite=True)

    @classmethod
    def load(cls, path: str | Path) -> DiceCalibration:
        return cls.from_dict(json.loads(Path(path).read_text()))


# --- fitting ---------------------------------------------------------------------------------------------------------
def fit_regressor(
    rows: Sequence[Mapping[str, float]],
    dice: np.ndarray,
    features: Sequence[str],
    log: Sequence[bool],
    groups: np.ndarray,
    weights: np.ndarray | None = None,
    alpha: float = 1.0,
    folds: int = 5,
) -> tuple[Regressor, np.ndarray]:
    """Fit one :class:`Regressor`; return it and the out-of-fold calibrated log-errors of ``rows``.

    Parameters
    ----------
    rows : sequence of mapping
        Evidence of each calibration example.
    dice : numpy.ndarray
        Their true Dice.
    features, log : sequence
        Evidence names used, and which are log-transformed.
    groups : numpy.ndarray
        A group per example (the film: its degraded copies and weaker models' masks stay in one fold).
    weights : numpy.ndarray, optional
        Example weights (default 1).
    alpha : float
        Ridge penalty on the standardised coefficients (per unit of total weight).
    folds : int
        Cross-validation folds by group, for the interval's residuals.
    """
    dice = np.asarray(dice, dtype=np.float64)
    y = to_target(dice)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    template = Regressor(list(features), list(log), [], [], [], [], 0.0, [], [], [], [])
    x = template.matrix(rows)
    fold_of = _folds(groups, folds)
    out_of_fold = np.empty(len(y))
    for fold in range(folds):
        test = fold_of == fold
        if test.any() and (~test).any():
            part = _fit(x[~test], y[~test], w[~test], template, alpha)
            out_of_fold[test] = part.targets(x[test])
    fitted = _fit(x, y, w, template, alpha)
    residual = y - out_of_fold
    edges = np.quantile(out_of_fold, np.linspace(0, 1, INTERVAL_BINS + 1)[1:-1]) if len(y) > 30 else np.array([])
    bins = [*edges.tolist(), float("inf")]
    which = np.searchsorted(edges, out_of_fold)
    fitted.bins = bins
    fitted.residuals = [
        [_weighted_quantile(residual[which == b], w[which == b], q) for q in QUANTILE_LEVELS] for b in range(len(bins))
    ]
    return fitted, out_of_fold


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, template: Regressor, alpha: float) -> Regressor:
    """Ridge on standardised features, then the isotonic map of its predictions to ``y``."""
    transformed = _transformed(x, template.log)
    seen = np.isfinite(transformed).any(axis=0)
    fill = np.zeros(transformed.shape[1])
    fill[seen] = np.nanmedian(transformed[:, seen], axis=0)
    filled = np.where(np.isnan(transformed), fill, transformed)
    mean = np.average(filled, axis=0, weights=w)
    scale = np.sqrt(np.average((filled - mean) ** 2, axis=0, weights=w))
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (filled - mean) / scale
    y_mean = np.average(y, weights=w)
    gram = (z * w[:, None]).T @ z + alpha * w.sum() * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, (z * w[:, None]).T @ (y - y_mean))
    # the fill is stored as a raw value so that it can be used before the transform
    raw_fill = np.where(np.asarray(template.log), np.exp(fill) - 1e-4, fill)
    regressor = Regressor(
        features=list(template.features),
        log=list(template.log),
        fill=raw_fill.tolist(),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        intercept=float(y_mean),
        iso_x=[],
        iso_y=[],
        bins=[float("inf")],
        residuals=[[0.0] * len(QUANTILE_LEVELS)],
    )
    linear = regressor.linear(x)
    regressor.iso_x, regressor.iso_y = isotonic_knots(linear, y, w)
    return regressor


def isotonic_knots(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[list, list]:
    """Knots of the non-decreasing least-squares fit of ``y`` on ``x`` (pool-adjacent-violators), for ``numpy.interp``."""
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    ws = np.ones(len(xs)) if w is None else np.asarray(w, dtype=np.float64)[order]
    values, weights, starts = [], [], []
    for i in range(len(xs)):
        values.append(ys[i])
        weights.append(ws[i])
        starts.append(i)
        while len(values) > 1 and values[-2] >= values[-1]:
            total = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / total
            values[-2:], weights[-2:] = [merged], [total]
            starts.pop()
    knots_x, knots_y = [], []
    ends = [*starts[1:], len(xs)]
    for value, start, end in zip(values, starts, ends, strict=True):
        knots_x += [xs[start], xs[end - 1]]
        knots_y += [value, value]
    return [float(v) for v in knots_x], [float(v) for v in knots_y]


def _transformed(x: np.ndarray, log: Sequence[bool]) -> np.ndarray:
    out = np.array(x, dtype=np.float64)
    columns = np.asarray(log, dtype=bool)
    out[:, columns] = np.log(np.clip(out[:, columns], 0.0, None) + 1e-4)
    return out


def _standardised(x: np.ndarray, log, fill, mean, scale) -> np.ndarray:
    filled = np.where(np.isnan(x), np.asarray(fill, dtype=np.float64), x)
    return (_transformed(filled, log) - np.asarray(mean)) / np.asarray(scale)


def _folds(groups: np.ndarray, folds: int) -> np.ndarray:
    """A fold number per example, whole groups to one fold, assigned in a fixed pseudo-random order."""
    names = sorted(set(np.asarray(groups).tolist()))
    order = np.random.default_rng(0).permutation(len(names))
    fold = {name: int(order[i] % folds) for i, name in enumerate(names)}
    return np.array([fold[g] for g in np.asarray(groups).tolist()])


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0:
        return 0.0
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


# --- the bundle's file -----------------------------------------------------------------------------------------------
#: Key of ``configs/metadata.json`` that names the calibration file (relative to the bundle) and its facts.
METADATA_KEY = "dice_estimate"


def weights_digest(path: str | Path) -> str:
    """SHA-256 of a weights file (``models/model.pt``): what binds a calibration to the weights it was fitted for."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_calibration(bundle: str | Path) -> tuple[DiceCalibration | None, str | None]:
    """The Dice calibration of a bundle folder, or None and why.

    The file is the one ``configs/metadata.json`` names under
    :data:`METADATA_KEY` (``{"file": "models/dice_estimate.json", ...}``), else
    ``models/dice_estimate.json``. A calibration fitted for other weights
    (its ``weights_sha256`` is not that of ``models/model.pt``) is not used:
    a stale estimate is worse than none.

    Returns
    -------
    calibration : DiceCalibration or None
    problem : str or None
        Why there is no calibration when the bundle has a file that cannot be used (None when it has none).
    """
    root = Path(bundle)
    name = f"models/{FILE_NAME}"
    metadata = root / "configs" / "metadata.json"
    try:
        entry = json.loads(metadata.read_text()).get(METADATA_KEY) if metadata.is_file() else None
    except (OSError, ValueError):
        entry = None
    if isinstance(entry, dict) and entry.get("file"):
        name = str(entry["file"])
    path = root / name
    if not path.is_file():
        return None, None
    try:
        calibration = DiceCalibration.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return (
            None,
            f"{path}: not a Dice calibration this medlung reads ({exc}); refit it (scripts/fit_dice_estimate.py)",
        )
    expected = calibration.fitted.get("weights_sha256")
    weights = root / "models" / "model.pt"
    if expected and weights.is_file() and weights_digest(weights) != expected:
        return None, (
            f"{path} was fitted for other weights than {weights}: no Dice estimate; "
            "refit it (scripts/fit_dice_estimate.py --bundle ...)"
        )
    return calibration, None
