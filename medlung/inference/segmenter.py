"""The Segmenter: film -> LungMasks on the native grid.

The network runs on the working grid (a fixed spacing in mm). Only the lung
logit margin of the asked convention (one channel) is brought back to the
native grid, bilinearly, and thresholded at 0 there: the mask follows the
film's own pixels, and no multi-channel full-resolution tensor is built.

The margin is ``lung - background`` for a softmax model, and the convention's
own logit for a per-convention (sigmoid) model; there the ``field`` margin is
the smaller of the field and anatomical logits, so a lung field never reaches
outside the whole lung of the same film.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from medlung.defaults import DEFAULT_DICE_ESTIMATE, DICE_ESTIMATES
from medlung.errors import MedlungError, QualityWarning
from medlung.estimation.calibration import DiceEstimate
from medlung.film import Film
from medlung.inference.native_grid import convention_margin, native_labels
from medlung.inference.postprocess import LEFT, RIGHT
from medlung.networks.loading import ModelError, ModelSpec, find_default_model, load_model
from medlung.networks.running import predict_logits, resolve_device, resolve_precision
from medlung.orientation import DisplayTransform, OrientationCheck, check_orientation, display_transform, is_frontal
from medlung.plans import DEFAULT_CONVENTION
from medlung.quality import QC_OK, check_quality, estimate_reasons
from medlung.spacing import Spacing
from medlung.transforms.display import display_of
from medlung.transforms.presets import inference_transforms

#: The note of a film without spacing: why its areas are in pixels, and how to give the spacing.
SPACING_UNKNOWN_NOTE = (
    "spacing unknown: areas in px only, not cm² (the file gives no pixel spacing); if you know it, give it: "
    "medlung predict --spacing MM (or ROW,COL), load_film(path, spacing=MM)"
)

# Model loading lives in medlung.networks.loading; these names stay importable from here.
__all__ = ["LungMasks", "ModelError", "ModelSpec", "Segmenter", "find_default_model", "load_model"]


@dataclass
class WorkingOutput:
    """The network's output for one film on the working grid, in the standard display.

    Attributes
    ----------
    logits : numpy.ndarray of float32
        ``(channels, rows, cols)``: every channel of the model (one per lung convention for a sigmoid head).
    labels : numpy.ndarray of uint8
        ``(rows, cols)``: the film's final labels (0/1/2, after clean-up) sampled at the working-grid pixels.
    perturbed : numpy.ndarray of float32 or None
        ``(3, channels, rows, cols)``: the logits of the flipped, shifted and zoomed-out film back on this grid
        (:mod:`medlung.inference.perturbations`; NaN where a copy saw nothing), when they were computed.
    image : numpy.ndarray of float32 or None
        ``(rows, cols)``: the film as the network saw it (scaled to 0-1 by the plan's percentiles).
    """

    logits: np.ndarray
    labels: np.ndarray
    perturbed: np.ndarray | None = None
    image: np.ndarray | None = None


@dataclass
class LungMasks:
    """The result for one film, on its native grid.

    Attributes
    ----------
    labels : numpy.ndarray of uint8
        ``(rows, cols)``: 0 background, 1 patient right lung, 2 patient left lung.
    spacing : tuple of float or None
        The film's ``(row_mm, col_mm)``.
    spacing_source : str
        Where the spacing came from.
    areas_cm2 : dict or None
        ``{"right", "left", "total"}`` in cm², ``None`` when uncalibrated.
    areas_px : dict
        The same in pixels.
    orientation : tuple of str
        The PatientOrientation used for right/left.
    orientation_assumed : bool
        True when the standard PA display was assumed.
    empty : list of str
        Lungs not found (``"right"``, ``"left"``).
    convention : str
        The lung convention drawn: ``"field"`` or ``"anatomical"``.
    working_spacing : float
        Working pixel size, mm.
    working_shape : tuple of int
        Shape on the working grid.
    model_version : str
        The model that produced it.
    probability : numpy.ndarray or None
        Lung probability (float32, native grid) when asked for.
    notes : list of str
        Assumptions made.
    seconds : float
        Time spent in the segmenter.
    timings : dict
        Seconds per stage: working_grid, network, orientation_check, native_grid, cleanup
        (clean-up, right/left split, back to the stored grid), quality, dice_estimate.
    qc : str
        ``"ok"`` or ``"flagged"`` (see :mod:`medlung.quality`).
    qc_reasons : list of medlung.quality.QcReason
        Why the film is flagged (code and sentence); empty when ``ok``.
    qc_measures : dict
        What the quality check measured (see :func:`medlung.quality.measure_lungs`).
    orientation_check : str
        How the film looked against the standard display (after its
        PatientOrientation was applied): ``"ok"``, ``"mirrored?"``,
        ``"upside down?"``, ``"rotated 180?"``, ``"rotated 90?"`` or
        ``"unknown"`` (see :func:`medlung.orientation.check_orientation`).
    """

    labels: np.ndarray
    spacing: Spacing | None
    spacing_source: str
    areas_cm2: dict | None
    areas_px: dict
    orientation: tuple
    orientation_assumed: bool
    empty: list
    working_spacing: float
    working_shape: tuple
    model_version: str
    convention: str = DEFAULT_CONVENTION
    probability: np.ndarray | None = None
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    qc: str = QC_OK
    qc_reasons: list = field(default_factory=list)
    qc_measures: dict = field(default_factory=dict)
    orientation_check: str = "unknown"
    #: The estimated Dice of the masks with its interval (:class:`medlung.estimation.calibration.DiceEstimate`);
    #: None when the model has no Dice calibration or the estimate is off.
    dice_estimate: DiceEstimate | None = None
    #: The network's output on the working grid (:class:`WorkingOutput`), kept when asked (``keep_working``).
    working: WorkingOutput | None = field(default=None, repr=False, compare=False)
    #: The segmented film (a reference, for notebook thumbnails); None when built without one.
    film: Film | None = field(default=None, repr=False, compare=False)

    @property
    def lungs(self) -> np.ndarray:
        """Union mask of both lungs (bool)."""
        return self.labels > 0

    @cached_property
    def measures(self) -> dict:
        """Shape of each lung, computed when first asked: see :func:`medlung.inference.measures.lung_measures`."""
        from medlung.inference.measures import lung_measures

        return lung_measures(self.labels, self.spacing)

    def to_itk(self):
        """The label map as an ``itk.Image`` (extra ``[itk]``) with the film's spacing (:mod:`medlung.io.itk_formats`)."""
        from medlung.io.itk_formats import labels_to_itk

        return labels_to_itk(self.labels, self.spacing)

    def _repr_png_(self) -> bytes:
        """The overlay thumbnail for Jupyter (:func:`medlung.notebook.masks_png`)."""
        from medlung.notebook import masks_png

        return masks_png(self)

    def _repr_html_(self) -> str:
        """The thumbnail with areas, spacing and flags for Jupyter (:func:`medlung.notebook.masks_html`)."""
        from medlung.notebook import masks_html

        return masks_html(self)


class Segmenter:
    """Segment the lungs of films with a trained model.

    Parameters
    ----------
    model : str or Path, optional
        Bundle folder, run folder or checkpoint (default: the shipped bundle).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    roi_size : int, optional
        Sliding-window size on the working grid (default: the model's).
    overlap : float, optional
        Sliding-window overlap, 0-1 (default: the model's plan).
    sw_batch_size : int
        Windows per forward pass.
    tta : bool
        Also segment the left-right mirrored film and average (the model
        predicts "lung", not a side, so mirroring is label-safe); about
        twice the network time.
    precision : str
        ``"auto"`` (bf16 where the CPU/GPU has it), ``"bf16"`` or ``"fp32"``.
    min_lung_mm2 : float, optional
        Components smaller than this are dropped, mm² (default: the model's plan).
    lungs : str
        Lung convention to draw: ``"field"`` (the radiographic lung field, the
        default) or ``"anatomical"`` (the whole lung, behind the heart too);
        the model must have been trained for it.
    fix_orientation : bool
        For films without PatientOrientation (PNG, a missing tag), segment
        them in the orientation :func:`~medlung.orientation.check_orientation`
        detects instead of assuming the standard display (up to three network
        passes; films with the tag always follow it).
    dice_estimate : str
        The estimated Dice of each mask (:mod:`medlung.estimation`), from the
        calibration in the model's bundle: ``"fast"`` (the default: evidence
        from the one network pass, a few ms), ``"perturbed"`` (also the
        agreement with the flipped, shifted and zoomed-out film: three more
        network passes) or ``"off"``. Models without a calibration give none.

    Examples
    --------
    >>> seg = Segmenter()                                   # doctest: +SKIP
    >>> masks = seg(medlung.load_film("chest.dcm"))         # doctest: +SKIP
    >>> masks.labels.shape, masks.areas_cm2                 # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        roi_size: int | None = None,
        overlap: float | None = None,
        sw_batch_size: int = 4,
        tta: bool = False,
        precision: str = "auto",
        min_lung_mm2: float | None = None,
        lungs: str = DEFAULT_CONVENTION,
        fix_orientation: bool = False,
        dice_estimate: str = DEFAULT_DICE_ESTIMATE,
    ) -> None:
        self.device = resolve_device(device)
        self.model, self.spec = load_model(model, self.device)
        plan = self.spec.plan
        if plan.head == "softmax" and lungs != plan.conventions[0]:
            raise ValueError(
                f"this model draws the {plan.conventions[0]} lung convention only, not {lungs!r}; "
                "use lungs='field' or a model trained for both conventions."
            )
        if plan.head == "sigmoid":
            plan.channel(lungs)  # raises for a convention the model was not trained for
        self.lungs = lungs
        self.roi_size = int(roi_size or plan.roi_size)
        overlap = plan.overlap if overlap is None else overlap
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
        self.overlap = overlap
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be a positive number of windows, got {sw_batch_size}.")
        self.sw_batch_size = int(sw_batch_size)
        self.tta = tta
        self.dtype = resolve_precision(precision, self.device)
        self.min_lung_mm2 = plan.min_lung_mm2 if min_lung_mm2 is None else min_lung_mm2
        self.fix_orientation = fix_orientation
        self.dice_estimate = dice_estimate
        #: The bundle's Dice calibration (None: no estimate), and whether its perturbed passes run.
        self.calibration = self._calibration(dice_estimate)
        self.perturb = self.calibration is not None and dice_estimate == "perturbed"
        #: The chain before the network, from the plan (shared with the bundle's ``preprocessing`` property).
        self.preprocessing = inference_transforms(plan)
        self._scale_step = len(self.preprocessing.transforms) - 1  # the intensity step is the chain's last

    @property
    def model_version(self) -> str:
        return self.spec.version

    def _calibration(self, level: str):
        """The Dice calibration of the model's bundle for ``level``, or None (off, none fitted, stale: warned)."""
        from medlung.estimation.calibration import bundle_calibration

        if level not in DICE_ESTIMATES:
            raise ValueError(f"dice_estimate must be one of {', '.join(DICE_ESTIMATES)}; got {level!r}.")
        if level == "off" or not Path(self.spec.source).is_dir():
            return None
        calibration, problem = bundle_calibration(self.spec.source)
        if problem:
            warnings.warn(problem, stacklevel=3)
        if calibration is not None and level not in calibration.levels(self.lungs):
            fitted = ", ".join(calibration.levels(self.lungs)) or "none"
            raise ValueError(
                f"the Dice calibration of {self.spec.source} has no {level!r} estimate for the {self.lungs} "
                f"convention (fitted: {fitted}); use dice_estimate='fast' or refit it."
            )
        return calibration

    def dice_evidence(self, working: WorkingOutput, measures: dict, shapes=None) -> dict:
        """The Dice estimate's evidence of one film (:func:`medlung.estimation.evidence.film_evidence`).

        Parameters
        ----------
        working : WorkingOutput
            The network's output on the working grid.
        measures : dict
            The quality check's measures of the film.
        shapes : mapping, optional
            Shape models by structure (default: the calibration's for this convention).
        """
        from medlung.estimation.evidence import film_evidence

        plan = self.spec.plan
        logits = torch.from_numpy(working.logits)
        channels = None
        if plan.head == "sigmoid" and len(plan.conventions) > 1:
            channels = {c: working.logits[i] for i, c in enumerate(plan.conventions)}
        perturbed = None
        if working.perturbed is not None:
            perturbed = np.stack([self.margin_of(torch.from_numpy(p)).numpy() for p in working.perturbed])
        if shapes is None and self.calibration is not None:
            shapes = self.calibration.shapes.get(self.lungs)
        margin = self.margin_of(logits).numpy()
        return film_evidence(margin, working.labels, channels, measures, shapes, perturbed, working.image)

    def __call__(self, film: Film, probability: bool = False, keep_working: bool = False) -> LungMasks:
        """Segment one film; see :class:`LungMasks`.

        ``probability`` keeps the lung probability on the native grid; ``keep_working`` keeps the network's
        output on the working grid (:class:`WorkingOutput`, what the Dice estimate reads).
        """
        started = time.perf_counter()
        clock = _StageClock()
        # orientation: run in the standard display (from PatientOrientation, or detected); labels back to stored grid
        stored, display, check = film, display_transform(film.orientation), None
        if self.fix_orientation and film.orientation is None:
            display, check = self.detect_orientation(film)
        film = display.film(stored)
        working = self.working_image(stored, display)
        clock.stop("working_grid")
        logits, perturbed = self.lung_logits(working.as_tensor(), perturb=self.perturb)
        margin = self.margin_of(logits)
        clock.stop("network")
        if check is None:  # orientation: judge the film as the network saw it (a lateral film is not judged)
            check = (
                check_orientation(margin.numpy() > 0, working.as_tensor()[0].numpy())
                if stored.orientation is None or is_frontal(stored.orientation)
                else OrientationCheck("unknown")
            )
        clock.stop("orientation_check")
        meta = working.meta
        native = native_labels(
            margin,
            meta["native_shape"],
            meta["native_spacing"],
            meta["orientation"],
            self.min_lung_mm2,
            display_of(meta),
            keep_margin=probability,
        )
        clock.add(native.timings)
        labels, assumed, notes = native.labels, native.orientation_assumed, native.notes
        quality = check_quality(film, native.display_labels, margin.numpy())
        notes += _orientation_notes(stored, display, check)  # orientation
        clock.stop("quality")
        kept: WorkingOutput | None = None
        estimate = None
        if keep_working or self.calibration is not None:
            kept = WorkingOutput(
                logits=logits.numpy(),
                labels=on_grid(native.display_labels, margin.shape),
                perturbed=None if perturbed is None else perturbed.numpy(),
                image=self.scaled(working.as_tensor())[0].numpy(),
            )
        if self.calibration is not None and kept is not None:
            level = "perturbed" if self.perturb else "fast"
            estimate = self.calibration.estimate(self.dice_evidence(kept, quality.measures), self.lungs, level)
            threshold = self.spec.plan.min_dice_estimate
            quality.reasons += estimate_reasons(estimate.dice, estimate.probability_below(threshold), threshold)
            clock.stop("dice_estimate")
        counts = {"right": int((labels == RIGHT).sum()), "left": int((labels == LEFT).sum())}
        counts["total"] = counts["right"] + counts["left"]
        areas = None
        if film.spacing is not None:
            areas = {k: v * film.spacing[0] * film.spacing[1] / 100.0 for k, v in counts.items()}  # swap-invariant
        else:
            notes.append(SPACING_UNKNOWN_NOTE)
        if quality.reasons:
            where = film.path or "film"
            text = "; ".join(str(r) for r in quality.reasons)
            warnings.warn(f"{where}: quality check flagged it ({text})", QualityWarning, stacklevel=2)
        prob = None
        if probability and native.margin is not None:
            prob = (1.0 / (1.0 + np.exp(-np.ascontiguousarray(native.margin)))).astype(np.float32)
        return LungMasks(
            labels=labels,
            spacing=stored.spacing,
            spacing_source=film.spacing_source,
            areas_cm2=areas,
            areas_px=counts,
            orientation=stored.orientation or display.stored_orientation,
            orientation_assumed=assumed,
            film=stored,
            working=kept if keep_working else None,
            dice_estimate=estimate,
            empty=[side for side in ("right", "left") if counts[side] == 0],
            working_spacing=self.spec.working_spacing,
            working_shape=tuple(working.shape[-2:]),
            model_version=self.model_version,
            convention=self.lungs,
            probability=prob,
            notes=notes,
            seconds=time.perf_counter() - started,
            timings=clock.stages,
            qc=quality.qc,
            qc_reasons=quality.reasons,
            qc_measures=quality.measures,
            orientation_check=check.verdict + (" fixed" if stored.orientation is None and not display.identity else ""),
        )

    def detect_orientation(self, film: Film, passes: int = 3) -> tuple:
        """The transform to the standard display of a film whose orientation is unknown, from the film itself.

        Segments the film as stored, checks it with
        :func:`~medlung.orientation.check_orientation`, and while the check
        flags it, turns it as the check says and segments it again (at most
        ``passes`` network passes).

        Returns
        -------
        display : medlung.orientation.DisplayTransform
            Stored grid -> standard display.
        check : medlung.orientation.OrientationCheck
            The check of the film as stored.
        """
        display = display_transform(None)
        first = None
        for _ in range(passes):
            working = self.working_image(film, display)
            check = check_orientation(self.lung_margin(working.as_tensor()).numpy() > 0, working.as_tensor()[0].numpy())
            first = first or check
            if not check.flagged:
                break
            display = display.then(check.correction)
        return display, first

    def segment_files(self, paths, spacing=None):
        """Segment many films, one at a time; a bad file does not stop the loop.

        Parameters
        ----------
        paths : iterable of str or Path
            Film files.
        spacing : float, str or tuple of float, optional
            Spacing in mm for every film (see :func:`medlung.load_film`).

        Yields
        ------
        path : Path
        result : LungMasks or MedlungError
            The masks, or the error that made the film unusable.
        """
        from medlung.io import load_film

        for path in paths:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    film = load_film(path, spacing=spacing)
                yield Path(path), self(film)
            except MedlungError as exc:
                yield Path(path), exc

    def working_image(self, film: Film, display: DisplayTransform | None = None):
        """The film in the standard display on the working grid, before intensity scaling (``MetaTensor (1, r, c)``).

        The first steps of :attr:`preprocessing`; ``display`` overrides the
        film's PatientOrientation (an orientation detected from the film).
        """
        return self.preprocessing({"image": film, "display": display}, end=self._scale_step)["image"]

    def lung_margin(self, image: torch.Tensor) -> torch.Tensor:
        """The asked convention's lung margin (logit, > 0 = lung) on the working grid, ``(rows, cols)`` float32.

        Parameters
        ----------
        image : torch.Tensor
            ``(1, rows, cols)`` film on the working grid, not yet intensity scaled.
        """
        return self.margin_of(self.lung_logits(image)[0])

    def scaled(self, image: torch.Tensor) -> torch.Tensor:
        """The film on the working grid scaled as the network sees it (the plan's percentiles), ``(1, rows, cols)``."""
        with warnings.catch_warnings():  # a flat film (a 16x16 stub) divides by zero: it is flagged, not warned of
            warnings.filterwarnings("ignore", message="Divide by zero")
            scaled = self.preprocessing({"image": image}, start=self._scale_step)["image"]  # the plan's percentiles
        return torch.as_tensor(scaled, dtype=torch.float32)

    def lung_logits(self, image: torch.Tensor, perturb: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's logits of all channels on the working grid, and those of the perturbed film if asked.

        Parameters
        ----------
        image : torch.Tensor
            ``(1, rows, cols)`` film on the working grid, not yet intensity scaled.
        perturb : bool
            Also run the film flipped, shifted and zoomed out (:mod:`medlung.inference.perturbations`) in the
            same batch: three more network passes.

        Returns
        -------
        logits : torch.Tensor
            ``(channels, rows, cols)`` float32 on the CPU.
        perturbed : torch.Tensor or None
            ``(3, channels, rows, cols)``, each perturbed pass back on the film's grid (NaN where it saw nothing).
        """
        from medlung.inference import perturbations

        batch = self.scaled(image)[None]
        if perturb:
            batch = torch.cat([batch, perturbations.perturbed(batch)])
        window = (self.roi_size, self.overlap, self.device, self.dtype, self.sw_batch_size)
        logits = predict_logits(self.model, batch, *window)
        if self.tta:
            mirrored = predict_logits(self.model, batch.flip(-1), *window)
            logits = (logits + mirrored.flip(-1)) / 2
        logits = logits.cpu()
        return logits[0], (perturbations.restored(logits[1:]) if perturb else None)

    def margin_of(self, logits: torch.Tensor) -> torch.Tensor:
        """The asked convention's lung margin (> 0 = lung) from one film's logits ``(channels, rows, cols)``, with the
        plan's shape prior (:func:`~medlung.inference.native_grid.convention_margin`)."""
        return convention_margin(logits, self.spec.plan, self.lungs)


def on_grid(labels: np.ndarray, shape: tuple) -> np.ndarray:
    """A label map sampled at the pixel centres of a coarser grid of ``shape`` ``(rows, cols)`` over the same film."""
    rows = ((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp)
    cols = ((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp)
    return np.ascontiguousarray(labels[rows[:, None], cols[None, :]])


def _orientation_notes(stored: Film, display, check: OrientationCheck) -> list[str]:
    """What the report says about the orientation check and any correction."""
    notes = []
    if stored.orientation is None and not display.identity:
        detected = "\\".join(display.stored_orientation)
        notes.append(
            f"orientation detected: the film looked {display.description}; segmented in the standard "
            f"display as if its PatientOrientation were {detected}"
        )
    elif check.flagged and stored.orientation:
        tag = "\\".join(stored.orientation)
        notes.append(
            f"orientation check: turned as its PatientOrientation {tag} says, the film still looks "
            f"{check.correction.description} ({check.verdict}): check the tag"
        )
    elif check.flagged:
        notes.append(
            f"orientation check: the film looks {check.correction.description} ({check.verdict}); "
            "--orientation-fix segments it as detected"
        )
    return notes


class _StageClock:
    """Seconds spent in consecutive stages."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._last = time.perf_counter()

    def stop(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = now - self._last
        self._last = now

    def add(self, stages: dict) -> None:
        """Stages timed elsewhere, ending now."""
        self.stages.update(stages)
        self._last = time.perf_counter()
