"""The Segmenter: film -> LungMasks on the native grid.

The network runs on the working grid (a fixed spacing in mm). Only the lung
logit margin (lung minus background, one channel) is brought back to the
native grid, bilinearly, and thresholded at 0 there: the mask follows the
film's own pixels, and no multi-channel full-resolution tensor is built.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medlung.errors import MedlungError
from medlung.film import Film
from medlung.inference.postprocess import LEFT, RIGHT, clean_lung_mask, split_lungs
from medlung.networks import build_network
from medlung.networks.running import predict_logits, resolve_device, resolve_precision
from medlung.spacing import Spacing
from medlung.transforms.loading import film_to_metatensor
from medlung.transforms.presets import INTENSITY_PERCENTILES
from medlung.transforms.working_grid import ToWorkingGrid, nominal_spacing

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "medlung_cxr_lung"


class ModelError(MedlungError):
    """A model (bundle or checkpoint) cannot be found or loaded."""


@dataclass
class ModelSpec:
    """What a trained model needs around it.

    Attributes
    ----------
    network : str
        ``"basicunet"`` or ``"unetpp"``.
    features : tuple of int
        Network widths.
    working_spacing : float
        Working pixel size, mm.
    roi_size : int
        Sliding-window size on the working grid, pixels.
    version : str
        Model version (bundle version, or ``"run:<folder>@epoch<N>"``).
    source : str
        Where it was loaded from.
    """

    network: str
    features: tuple
    working_spacing: float
    roi_size: int
    version: str
    source: str
    intensity_percentiles: tuple = INTENSITY_PERCENTILES


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
        Seconds per stage: working_grid, network, native_grid, cleanup.
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
    probability: np.ndarray | None = None
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

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


#: Where a wheel installs the shipped bundle, relative to the installation prefix (see setup.cfg).
INSTALLED_BUNDLE = "share/medlung/bundles/medlung_cxr_lung"


def find_default_model() -> Path:
    """The shipped bundle.

    Looked for in this order: ``$MEDLUNG_BUNDLE``; ``bundles/medlung_cxr_lung``
    in the source tree (a checkout or an editable install); the copy a wheel
    installs under ``<prefix>/share/medlung/bundles/``.
    """
    if os.environ.get("MEDLUNG_BUNDLE"):
        candidates = [Path(os.environ["MEDLUNG_BUNDLE"])]
    else:
        candidates = [DEFAULT_BUNDLE] + _installed_bundles()
    for path in candidates:
        if (path / "models" / "model.pt").is_file():
            return path
    raise ModelError("the shipped model was not found", candidates[0],
                     "Give --bundle DIR (a medlung bundle or a training run's best.pt), or set MEDLUNG_BUNDLE.")


def _installed_bundles() -> list[Path]:
    """The bundle folder recorded in the installed distribution's file list, if any."""
    from importlib import metadata

    try:
        files = metadata.distribution("medlung").files or []
    except metadata.PackageNotFoundError:
        return []
    marker = f"{INSTALLED_BUNDLE}/models/model.pt"
    return [Path(f.locate()).resolve().parents[1] for f in files if str(f).replace("\\", "/").endswith(marker)]


def load_model(source: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelSpec]:
    """Load a trained network from a bundle folder, a run folder or a checkpoint file.

    Parameters
    ----------
    source : str or Path, optional
        A MONAI bundle folder (``configs/inference.json`` + ``models/model.pt``),
        a training run folder (``best.pt``) or a ``.pt`` checkpoint. ``None``
        loads the shipped bundle.
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    spec : ModelSpec
    """
    path = find_default_model() if source is None else Path(source)
    try:
        if path.is_dir() and (path / "configs" / "inference.json").is_file():
            config = json.loads((path / "configs" / "inference.json").read_text())
            metadata_path = path / "configs" / "metadata.json"
            version = json.loads(metadata_path.read_text()).get("version", "?") if metadata_path.is_file() else "?"
            net_def = config["network_def"]
            spec = ModelSpec(net_def["name"], tuple(net_def["features"]), float(config["working_spacing"]),
                             int(config["roi_size"]), f"{path.name}@{version}", str(path))
            state = torch.load(path / "models" / "model.pt", map_location="cpu", weights_only=True)
        else:
            checkpoint = path / "best.pt" if path.is_dir() else path
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
            spec = ModelSpec(state["network"]["name"], tuple(state["network"]["features"]),
                             float(state["preprocessing"]["working_spacing"]), int(state["preprocessing"]["roi_size"]),
                             f"run:{checkpoint.parent.name}@epoch{state['epoch']}", str(checkpoint))
            state = state["model"]
        model = build_network(spec.network, spec.features)
        model.load_state_dict(state)
    except FileNotFoundError as exc:
        raise ModelError(f"model file missing ({exc.filename})", path,
                         "Give a medlung bundle folder, a run folder or a best.pt checkpoint.") from None
    except (KeyError, RuntimeError, ValueError, json.JSONDecodeError) as exc:
        raise ModelError(f"not a medlung model ({type(exc).__name__}: {exc})", path,
                         "Give a medlung bundle folder, a run folder or a best.pt checkpoint.") from None
    return model.to(device).eval(), spec


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
    overlap : float
        Sliding-window overlap, 0-1.
    sw_batch_size : int
        Windows per forward pass.
    tta : bool
        Also segment the left-right mirrored film and average (the model
        predicts "lung", not a side, so mirroring is label-safe); about
        twice the network time.
    precision : str
        ``"auto"`` (bf16 where the CPU/GPU has it), ``"bf16"`` or ``"fp32"``.
    min_lung_mm2 : float
        Components smaller than this are dropped.

    Examples
    --------
    >>> seg = Segmenter()                                   # doctest: +SKIP
    >>> masks = seg(medlung.load_film("chest.dcm"))         # doctest: +SKIP
    >>> masks.labels.shape, masks.areas_cm2                 # doctest: +SKIP
    """

    def __init__(self, model: str | Path | None = None, device: str = "auto", roi_size: int | None = None,
                 overlap: float = 0.25, sw_batch_size: int = 4, tta: bool = False, precision: str = "auto",
                 min_lung_mm2: float = 1500.0) -> None:
        self.device = resolve_device(device)
        self.model, self.spec = load_model(model, self.device)
        self.roi_size = int(roi_size or self.spec.roi_size)
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.tta = tta
        self.dtype = resolve_precision(precision, self.device)
        self.min_lung_mm2 = min_lung_mm2
        self.to_working_grid = ToWorkingGrid(self.spec.working_spacing)

    @property
    def model_version(self) -> str:
        return self.spec.version

    def __call__(self, film: Film, probability: bool = False) -> LungMasks:
        """Segment one film; see :class:`LungMasks`."""
        started = time.perf_counter()
        clock = _StageClock()
        working = self.to_working_grid(film_to_metatensor(film))
        clock.stop("working_grid")
        margin = self.lung_margin(working.as_tensor())
        clock.stop("network")
        native = _upsample(margin, film.shape)
        lungs = native > 0
        clock.stop("native_grid")
        pixel_area = float(np.prod(film.spacing if film.spacing else nominal_spacing(film.shape)))
        lungs = clean_lung_mask(lungs, pixel_area, self.min_lung_mm2)
        labels, assumed, notes = split_lungs(lungs, film.orientation)
        clock.stop("cleanup")
        counts = {"right": int((labels == RIGHT).sum()), "left": int((labels == LEFT).sum())}
        counts["total"] = counts["right"] + counts["left"]
        areas = None
        if film.spacing is not None:
            areas = {k: v * film.spacing[0] * film.spacing[1] / 100.0 for k, v in counts.items()}
        else:
            notes.append("spacing unknown: areas not calibrated (nominal rule used for the working grid)")
        prob = None
        if probability:
            prob = (1.0 / (1.0 + np.exp(-native))).astype(np.float32)
        return LungMasks(
            labels=labels, spacing=film.spacing, spacing_source=film.spacing_source, areas_cm2=areas,
            areas_px=counts, orientation=film.orientation or ("L", "F"), orientation_assumed=assumed,
            empty=[side for side in ("right", "left") if counts[side] == 0],
            working_spacing=self.spec.working_spacing, working_shape=tuple(working.shape[-2:]),
            model_version=self.model_version, probability=prob, notes=notes,
            seconds=time.perf_counter() - started, timings=clock.stages,
        )

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

    def lung_margin(self, image: torch.Tensor) -> torch.Tensor:
        """Lung-minus-background logit on the working grid, ``(rows, cols)`` float32.

        Parameters
        ----------
        image : torch.Tensor
            ``(1, rows, cols)`` film on the working grid, not yet intensity scaled.
        """
        from monai.transforms import ScaleIntensityRangePercentiles

        low, high = self.spec.intensity_percentiles
        scaled = ScaleIntensityRangePercentiles(low, high, 0.0, 1.0, clip=True)(image)
        batch = torch.as_tensor(scaled, dtype=torch.float32)[None]
        logits = predict_logits(self.model, batch, self.roi_size, self.overlap, self.device, self.dtype)
        if self.tta:
            mirrored = predict_logits(self.model, batch.flip(-1), self.roi_size, self.overlap, self.device, self.dtype)
            logits = (logits + mirrored.flip(-1)) / 2
        return (logits[0, 1] - logits[0, 0]).cpu()


def _upsample(margin: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(rows, cols)`` map to the native ``shape`` (pixel centres aligned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = F.interpolate(margin[None, None], size=tuple(shape), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


class _StageClock:
    """Seconds spent in consecutive stages."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._last = time.perf_counter()

    def stop(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = now - self._last
        self._last = now
