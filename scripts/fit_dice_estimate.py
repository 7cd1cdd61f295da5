"""Fit a bundle's Dice estimate from the shared data, write it into the bundle, print how well it does.

One command per model version; it writes ``models/dice_estimate.json`` beside
the weights and names it in ``configs/metadata.json`` (key ``dice_estimate``)::

    python scripts/fit_dice_estimate.py --bundle bundles/medlung_cxr_lung --data runs/multi_source.csv \\
        --cache runs/dice_cache

DATA is a combined datalist CSV with ``image, mask, ignore, lungs, split,
source`` columns (``scripts/multi_source_datalist.py`` writes it from
``../shared/data``: Shenzhen, Montgomery, covid_v7 with their fixed splits).

Which films do what (never a test film for fitting)
---------------------------------------------------
The bundle's ``configs/metadata.json`` says which sources its weights were
trained on (``training.sources``):

* **calibration** films (the regressor is fitted on them): the ``val`` split
  of the sources the model was trained on, and the ``train`` split of the
  sources it never saw (films the model did not train on either way);
* **evaluation** films (the numbers printed): the ``test`` split of every
  source, and the ``val`` split of sources the model never saw;
* the **shape model** is built from the ``train`` masks of the sources the
  model was trained on.

Low-quality examples without more labels
----------------------------------------
Every calibration and evaluation film is segmented as it is and as
``--degraded`` (default 4) degraded copies (:mod:`medlung.estimation.degrade`:
noise, blur, low resolution, wrong windows, reversed polarity, crops, a box
over a lung; the kinds rotate over the films), whose truth is the film's mask
(cut like the film). ``--extra-model`` adds the masks of other checkpoints
(weaker epochs) on the clean calibration films. The perturbed passes (three
more network passes, the ``perturbed`` level) are run on the clean films and
on half of the degraded copies.

Predictions are cached in ``--cache`` (one ``.npz`` per film and variant,
keyed by the weights' SHA-256), so a second run only fits.

What it prints
--------------
Per lung convention and source of the evaluation films: MAE, Pearson and
Spearman r, the 80 % interval's coverage, how many films below 0.90 the
``low_dice_estimate`` flag caught and how many films at or above 0.95 it
flagged, on the clean films and on clean + degraded; then the same with the
calibration fitted without the source being evaluated (a hospital the
calibration never saw). The numbers also go into the calibration file
(``fitted.evaluation``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The evidence each level's regressor uses, by structure (names without the structure prefix are the structure's).
FEATURES = {
    "fast": ("soft_error", "band", "edge", "cleanup", "shape_residual", "shape_mahalanobis", "conv_dice"),
    "perturbed": (
        "soft_error",
        "band",
        "edge",
        "cleanup",
        "shape_residual",
        "shape_mahalanobis",
        "conv_dice",
        "tta_dice_mean",
        "tta_dice_min",
    ),
}
#: Evidence measured on both lungs only (film-level), used by every structure's regressor.
FILM_LEVEL = (
    "saturated",
    "lung_mean",
    "contrast",
    "edge_contrast",
    "lung_std",
    "conv_dice",
    "field_outside",
    "uncertain_fraction",
    "mean_probability",
    "centre_offset",
    "ratio",
    "centre",
)
#: Evidence taken as log(value) (errors, fractions and distances spanning decades).
LOG_FEATURES = {
    "soft_error",
    "soft_error_t2",
    "band",
    "cleanup",
    "edge",
    "shape_residual",
    "shape_mahalanobis",
    "field_outside",
    "uncertain_fraction",
}
#: Weight of a clean film's example against a degraded copy's (most archive films are clean).
CLEAN_WEIGHT = 3.0
#: Ridge penalty of the standardised coefficients.
ALPHA = 0.05
#: The truth of the quality flag's record: threshold (from the plan) and the "good film" line.
STRUCTURES = ("both", "right", "left")


@dataclass
class Example:
    """One segmentation to learn from or to evaluate on: a film, how it was changed, and by which model."""

    row: dict
    role: str
    kind: str
    perturb: bool
    model: str = "bundle"

    @property
    def stem(self) -> str:
        return Path(self.row["image"]).stem


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle to fit (its models/ gets the file)")
    parser.add_argument("--data", type=Path, required=True, help="combined datalist CSV (image, mask, ..., source)")
    parser.add_argument("--cache", type=Path, default=Path("runs/dice_cache"), help="prediction cache folder")
    parser.add_argument("--degraded", type=int, default=4, help="degraded copies per film (default 4)")
    parser.add_argument("--no-perturbed", action="store_true", help="fit the fast level only (no extra passes)")
    parser.add_argument(
        "--extra-model", action="append", default=[], type=Path, help="another checkpoint (e.g. an early epoch)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="at most this many films per role (a quick check)")
    parser.add_argument("--dry-run", action="store_true", help="fit and print, write nothing into the bundle")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    started = time.perf_counter()

    from medlung.estimation.calibration import DiceCalibration, weights_digest

    bundle = args.bundle.resolve()
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    trained = set(metadata.get("training", {}).get("sources") or [])
    if not trained:
        print(
            f"error: {bundle}/configs/metadata.json names no training.sources: cannot tell films apart", file=sys.stderr
        )
        return 2
    digest = weights_digest(bundle / "models" / "model.pt")
    rows = read_datalist(args.data)
    examples = plan_examples(rows, trained, args.degraded, not args.no_perturbed, args.limit)
    examples += [
        Example(e.row, e.role, "clean", False, model=str(path))
        for path in args.extra_model
        for e in examples
        if e.kind == "clean" and e.role == "calibration"
    ]
    levels = ("fast",) if args.no_perturbed else ("fast", "perturbed")
    segmenters = load_segmenters(bundle, args.device)
    shapes = build_shapes([r for r in rows if r["split"] == "train" and r["source"] in trained], segmenters)
    print(f"{len(examples)} segmentations ({sum(e.role == 'calibration' for e in examples)} to fit)", flush=True)
    cache = args.cache / digest[:16]
    records = predict(examples, segmenters, cache, args.device)
    predicted = time.perf_counter()
    table = [(example, meta, evidence_of(segmenters, meta, working, shapes)) for example, meta, working in records]
    regressors, evaluation = fit_and_evaluate(table, levels, threshold=segmenters["field"].spec.plan.min_dice_estimate)
    print_evaluation(evaluation)
    calibration = DiceCalibration(
        model_version=str(metadata.get("version", "?")),
        shapes=shapes,
        regressors=regressors,
        fitted={
            "weights_sha256": digest,
            "data": str(args.data),
            "trained_sources": sorted(trained),
            "calibration_films": len({(e.row["image"]) for e, *_ in table if e.role == "calibration"}),
            "evaluation_films": len({(e.row["image"]) for e, *_ in table if e.role == "evaluation"}),
            "degraded_per_film": args.degraded,
            "extra_models": [str(p) for p in args.extra_model],
            "features": {level: list(FEATURES[level]) for level in levels},
            "evaluation": evaluation,
            "command": "python scripts/fit_dice_estimate.py " + " ".join(sys.argv[1:] if argv is None else argv),
        },
    )
    seconds = time.perf_counter() - started
    if not args.dry_run:
        write_calibration(bundle, calibration, metadata)
        print(f"wrote {bundle / 'models' / 'dice_estimate.json'} and configs/metadata.json's dice_estimate")
    print(f"{seconds / 60:.1f} min ({(predicted - started) / 60:.1f} min predicting)")
    return 0


# --- films ------------------------------------------------------------------------------------------------------------
def read_datalist(path: Path) -> list[dict]:
    """The rows of a combined datalist CSV (``image, mask, ignore, lungs, split, source``)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"image", "mask", "lungs", "split", "source"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"error: {path} lacks the column(s) {', '.join(sorted(missing))}")
    return rows


def role_of(row: dict, trained: set) -> str | None:
    """``"calibration"``, ``"evaluation"`` or None (a training film of the model) for one datalist row."""
    if row["source"] in trained:
        return {"val": "calibration", "test": "evaluation"}.get(row["split"])
    return {"train": "calibration", "val": "evaluation", "test": "evaluation"}.get(row["split"])


def plan_examples(rows: list[dict], trained: set, degraded: int, perturbed: bool, limit: int | None) -> list[Example]:
    """Every film as it is (perturbed passes too) and ``degraded`` degraded copies (kinds rotating over films)."""
    from medlung.estimation.degrade import DEGRADATIONS

    kinds = list(DEGRADATIONS)
    chosen: dict = {"calibration": [], "evaluation": []}
    for row in rows:
        role = role_of(row, trained)
        if role is not None and (limit is None or len(chosen[role]) < limit):
            chosen[role].append(row)
    films = [(row, role) for role in ("calibration", "evaluation") for row in chosen[role]]
    examples = [Example(row, role, "clean", perturbed) for row, role in films]
    for copy in range(degraded):
        for index, (row, role) in enumerate(films):
            examples.append(Example(row, role, kinds[(index + 3 * copy) % len(kinds)], perturbed and copy < 2))
    return examples


def load_segmenters(bundle: Path, device: str) -> dict:
    """One Segmenter per lung convention of the bundle (its calibration not used: it is being fitted)."""
    from medlung.inference import Segmenter

    probe = Segmenter(bundle, device=device, dice_estimate="off")
    return {
        lungs: Segmenter(bundle, device=device, lungs=lungs, dice_estimate="off")
        for lungs in probe.spec.plan.conventions
    }


def truth_of(row: dict, film) -> tuple:
    """Both lungs, right, left and ignore masks of a datalist row on its film's grid."""
    from medlung.evaluation.scoring import load_truth
    from medlung.inference.postprocess import split_lungs
    from medlung.io.masks import load_label_map

    truth = load_truth(row["mask"], film.shape)
    if truth.per_lung:
        right, left = truth.right, truth.left
    else:
        labels = split_lungs(truth.both, film.orientation)[0]
        right, left = labels == 1, labels == 2
    ignore = np.zeros(film.shape, bool)
    if row.get("ignore"):
        ignore = load_label_map(row["ignore"], film.shape) > 0
    return truth.both, right, left, ignore


def build_shapes(rows: list[dict], segmenters: dict) -> dict:
    """Shape models of the training masks, per convention and structure, on each film's working grid."""
    from medlung.estimation.shape_model import ShapeModel, structure_images
    from medlung.inference.segmenter import on_grid
    from medlung.io import load_film

    images: dict = {lungs: {} for lungs in segmenters}
    for row in rows:
        if row["lungs"] not in segmenters:
            continue
        film = load_film(row["image"])
        both, right, left, _ = truth_of(row, film)
        labels = np.where(right, 1, np.where(left, 2, np.where(both, 1, 0))).astype(np.uint8)
        working = segmenters[row["lungs"]].working_image(film)
        for name, image in structure_images(on_grid(labels, tuple(working.shape[-2:]))).items():
            if image is not None:
                images[row["lungs"]].setdefault(name, []).append(image)
    return {
        lungs: {name: ShapeModel.fit(np.array(found)) for name, found in by_structure.items()}
        for lungs, by_structure in images.items()
        if by_structure
    }


# --- predictions ------------------------------------------------------------------------------------------------------
def predict(examples: list[Example], segmenters: dict, cache: Path, device: str) -> list:
    """``(example, meta, WorkingOutput)`` of every example, from the cache or segmented now (and cached)."""
    from medlung.inference.segmenter import WorkingOutput

    extra: dict = {}
    out = []
    for number, example in enumerate(examples, 1):
        tag = "bundle" if example.model == "bundle" else "extra-" + Path(example.model).stem
        path = cache / tag / example.kind / f"{example.stem}.npz"
        if not path.is_file():
            segmenter = segmenters[example.row["lungs"]]
            if example.model != "bundle":
                segmenter = extra.setdefault(
                    (example.model, example.row["lungs"]), _segmenter(example.model, example.row["lungs"], device)
                )
            segment(example, segmenter, path)
            if number % 25 == 0:
                print(f"  {number}/{len(examples)} segmented", flush=True)
        stored = dict(np.load(path))
        if "image" not in stored:  # a cache from before the image evidence: the film again, without the network
            stored["image"] = _film_image(example, segmenters[example.row["lungs"]]).astype(np.float16)
            _save(path, stored)
        meta = json.loads(str(stored["meta"]))
        perturbed = stored["perturbed"].astype(np.float32) if "perturbed" in stored else None
        image = stored["image"].astype(np.float32)
        working = WorkingOutput(stored["logits"].astype(np.float32), stored["labels"], perturbed, image)
        out.append((example, meta, working))
    return out


def _film(example: Example):
    """The example's film (degraded as the example says) and the box of the original grid it covers."""
    from medlung.estimation.degrade import degrade
    from medlung.io import load_film

    film = load_film(example.row["image"])
    if example.kind == "clean":
        return film, (slice(None), slice(None))
    return degrade(film, example.kind, seed=_seed(example.stem))


def _film_image(example: Example, segmenter) -> np.ndarray:
    """The example's film as the network sees it (working grid, scaled), without running the network."""
    film, _ = _film(example)
    return segmenter.scaled(segmenter.working_image(film))[0].numpy()


def _save(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.npz")
    np.savez_compressed(partial, **arrays)
    partial.replace(path)


def _segmenter(model: str, lungs: str, device: str):
    from medlung.inference import Segmenter

    return Segmenter(model, device=device, lungs=lungs, dice_estimate="off")


def segment(example: Example, segmenter, path: Path) -> None:
    """Segment one example and cache its working-grid output, true Dice and quality measures."""
    from medlung.io import load_film
    from medlung.metrics import dice

    both, right, left, ignore = truth_of(example.row, load_film(example.row["image"]))
    film, box = _film(example)
    segmenter.perturb = example.perturb
    masks = segmenter(film, keep_working=True)
    keep = ~ignore[box]
    labels = masks.labels
    truth = {"both": both[box], "right": right[box], "left": left[box]}
    values = {"both": labels > 0, "right": labels == 1, "left": labels == 2}
    meta = {
        "stem": example.stem,
        "image": example.row["image"],
        "source": example.row["source"],
        "split": example.row["split"],
        "lungs": example.row["lungs"],
        "role": example.role,
        "kind": example.kind,
        "model": example.model,
        "dice": {name: dice(values[name] & keep, truth[name] & keep) for name in STRUCTURES},
        "qc_measures": masks.qc_measures,
        "seconds": masks.seconds,
        "timings": masks.timings,
    }
    arrays = {
        "logits": masks.working.logits.astype(np.float16),
        "labels": masks.working.labels,
        "image": masks.working.image.astype(np.float16),
        "meta": np.array(json.dumps(meta, default=float)),
    }
    if masks.working.perturbed is not None:
        arrays["perturbed"] = masks.working.perturbed.astype(np.float16)
    _save(path, arrays)


def _seed(stem: str) -> int:
    """A seed from a film's name that does not change between runs (Python's hash() does)."""
    import zlib

    return zlib.crc32(stem.encode()) % 1000


def evidence_of(segmenters: dict, meta: dict, working, shapes: dict) -> dict:
    """The evidence of one cached segmentation, as the Segmenter computes it at run time."""
    segmenter = segmenters[meta["lungs"]]
    return segmenter.dice_evidence(working, meta["qc_measures"], shapes.get(meta["lungs"]))


# --- fitting and evaluation -------------------------------------------------------------------------------------------
def feature_names(level: str, structure: str) -> list[str]:
    """The evidence names of one regressor: the structure's own, film-level ones from both lungs."""
    names = []
    for name in FEATURES[level]:
        names.append(f"both.{name}" if name in FILM_LEVEL else f"{structure}.{name}")
    return names


def fit_and_evaluate(table: list, levels: tuple, threshold: float) -> tuple[dict, dict]:
    """Regressors per convention, level and structure, and their numbers on the evaluation films."""
    from medlung.estimation.calibration import fit_regressor

    regressors: dict = {}
    evaluation: dict = {}
    conventions = sorted({meta["lungs"] for _, meta, _ in table})
    for lungs in conventions:
        for level in levels:
            usable = [t for t in table if t[1]["lungs"] == lungs and (level == "fast" or _perturbed(t[2]))]
            calibration = [t for t in usable if t[0].role == "calibration"]
            evaluated = [t for t in usable if t[0].role == "evaluation" and t[0].model == "bundle"]
            if len({t[0].stem for t in calibration}) < 5:
                continue
            fitted = {}
            for structure in STRUCTURES:
                fitted[structure] = _fit(calibration, level, structure, fit_regressor)
            regressors.setdefault(lungs, {})[level] = fitted
            evaluation.setdefault(lungs, {})[level] = _evaluate(evaluated, fitted, threshold)
            held_out = {}
            for source in sorted({t[1]["source"] for t in evaluated}):
                others = [t for t in calibration if t[1]["source"] != source]
                if len({t[0].stem for t in others}) < 5:
                    continue
                alone = {s: _fit(others, level, s, fit_regressor) for s in STRUCTURES}
                held_out[source] = _evaluate([t for t in evaluated if t[1]["source"] == source], alone, threshold)[
                    source
                ]
            evaluation[lungs][level + "_source_held_out"] = held_out
    return regressors, evaluation


def _perturbed(evidence: dict) -> bool:
    return "both.tta_dice_mean" in evidence


def _fit(calibration: list, level: str, structure: str, fit_regressor):
    names = feature_names(level, structure)
    rows = [t[2] for t in calibration]
    dice = np.array([t[1]["dice"][structure] for t in calibration])
    weights = np.array([CLEAN_WEIGHT if t[0].kind == "clean" else 1.0 for t in calibration])
    groups = np.array([t[0].stem for t in calibration])
    log = [name.split(".", 1)[1] in LOG_FEATURES for name in names]
    regressor, _ = fit_regressor(rows, dice, names, log, groups, weights, alpha=ALPHA)
    return regressor


def _evaluate(evaluated: list, fitted: dict, threshold: float) -> dict:
    """Numbers per source: clean films and clean + degraded, both lungs and each lung."""
    from medlung.estimation.agreement import estimate_agreement

    out: dict = {}
    for source in sorted({t[1]["source"] for t in evaluated}):
        chosen = [t for t in evaluated if t[1]["source"] == source]
        out[source] = {}
        for name, subset in (("clean", [t for t in chosen if t[0].kind == "clean"]), ("with_degraded", chosen)):
            out[source][name] = {}
            for structure in STRUCTURES:
                estimates = [fitted[structure].predict(t[2]) for t in subset]
                out[source][name][structure] = estimate_agreement(
                    [e[0] for e in estimates],
                    [t[1]["dice"][structure] for t in subset],
                    [e[1] for e in estimates],
                    [e[2] for e in estimates],
                    threshold,
                    [flagged(fitted["both"], t[2], threshold) for t in subset] if structure == "both" else None,
                )
    return out


def flagged(regressor, evidence: dict, threshold: float) -> bool:
    """Whether the Segmenter would flag this film ``low_dice_estimate`` (:func:`medlung.quality.estimate_reasons`)."""
    from medlung.estimation.calibration import DiceEstimate
    from medlung.quality import estimate_reasons

    dice, quantiles = regressor.distribution(evidence)
    estimate = DiceEstimate(dice, dice, dice, quantiles=quantiles)
    return bool(estimate_reasons(dice, estimate.probability_below(threshold), threshold))


def print_evaluation(evaluation: dict) -> None:
    """The table of the evaluation films' numbers (both lungs), per convention, level and source."""
    header = f"{'lungs':10} {'level':28} {'source':10} {'films':6} {'n':>4} {'MAE':>6} {'r':>6} {'rho':>6} "
    print(header + f"{'cover':>6} {'caught':>8} {'false':>8}")
    for lungs, levels in evaluation.items():
        for level, sources in levels.items():
            for source, parts in sources.items():
                for part, numbers in parts.items():
                    a = numbers["both"]
                    print(
                        f"{lungs:10} {level:28} {source:10} {part[:6]:6} {a['n']:4d} {_f(a['mae'])} {_f(a['pearson'])} "
                        f"{_f(a['spearman'])} {_f(a['coverage'])} {a['caught']:>3}/{a['below']:<4} "
                        f"{a['false_flags']:>3}/{a['good']:<4}"
                    )


def _f(value) -> str:
    return "  none" if value is None else f"{value:6.3f}"


def write_calibration(bundle: Path, calibration, metadata: dict) -> None:
    """The calibration file into ``models/`` and its entry into ``configs/metadata.json``."""
    from medlung.atomic import write_atomically
    from medlung.estimation.calibration import FILE_NAME, METADATA_KEY

    calibration.save(bundle / "models" / FILE_NAME)
    metadata[METADATA_KEY] = {
        "file": f"models/{FILE_NAME}",
        "description": "calibration of the estimated Dice of each mask (medlung.estimation), fitted for these "
        "weights by scripts/fit_dice_estimate.py",
        "model_version": calibration.model_version,
        "weights_sha256": calibration.fitted["weights_sha256"],
    }
    text = json.dumps(metadata, indent=4) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    write_atomically(bundle / "configs" / "metadata.json", write, overwrite=True)


if __name__ == "__main__":
    sys.exit(main())
