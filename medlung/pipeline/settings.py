"""One predict-settings object: how films are segmented and what is written, built once, handed whole.

``medlung predict`` builds a :class:`PredictSettings` from its options (or a
script builds one in Python), and that one frozen object travels to every path
a film can take: the one-process pipeline (:func:`medlung.pipeline.batch.predict_files`),
``--workers``, the Dask workers (pickled whole, :mod:`medlung.services.distributed`),
the DICOM node (:class:`medlung.services.node.ServeConfig` holds one) and the
bundle's inference config. Each path builds its model with
:func:`load_segmenter`, so no option can be dropped on the way, and the options
that change what is written enter the outputs' UIDs from here
(:meth:`PredictSettings.output_options`).

Examples
--------
>>> from medlung.pipeline.settings import PredictSettings
>>> settings = PredictSettings(lungs="anatomical", formats=("seg", "png"), qc_fail=True)
>>> settings.replace(workers=2).workers
2
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from medlung import defaults

__all__ = ["MODEL_FIELDS", "PredictSettings", "SettingError", "load_segmenter"]

#: The settings a :class:`~medlung.inference.Segmenter` is built from (its keyword arguments, ``bundle`` as ``model``).
MODEL_FIELDS = (
    "bundle",
    "device",
    "roi_size",
    "overlap",
    "sw_batch_size",
    "tta",
    "precision",
    "min_lung_mm2",
    "lungs",
    "fix_orientation",
    "dice_estimate",
)


class SettingError(ValueError):
    """A setting that is not valid; ``setting`` names it (the command line shows its option)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class PredictSettings:
    """How to segment films and what to write (frozen: change one with :meth:`replace`).

    Model (what :func:`load_segmenter` builds the Segmenter from)

    Attributes
    ----------
    bundle : str or None
        Model: a bundle folder, a training run or a ``.pt`` checkpoint, as an
        absolute path (``None``: the shipped bundle, or ``$MEDLUNG_BUNDLE``).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    roi_size : int or None
        Sliding-window size on the working grid, pixels (``None``: the model's).
    overlap : float or None
        Sliding-window overlap, 0-0.95 (``None``: the model's).
    sw_batch_size : int
        Windows per forward pass.
    tta : bool
        Average with the mirrored film (about 2x network time).
    precision : str
        ``"auto"``, ``"bf16"`` or ``"fp32"``.
    min_lung_mm2 : float or None
        Smallest lung component kept, mm² (``None``: the model's).
    lungs : str
        Lung convention drawn, ``"field"`` or ``"anatomical"``.
    fix_orientation : bool
        Films without PatientOrientation that look mirrored or turned are
        segmented as detected (``--orientation-fix``).
    dice_estimate : str
        The estimated Dice of each mask: ``"fast"`` (one network pass), ``"perturbed"`` (three more passes) or
        ``"off"`` (``--dice-estimate``; models without a Dice calibration give none).

    Films in

    spacing : str or None
        Spacing in mm for every film (``"MM"`` or ``"ROW,COL"``), replacing the files'.
    max_pixels : int
        Films declaring more pixels (rows x cols) are refused before decoding.
    decode : str
        ``"reduced"``: DICOM films are decoded only at the resolution the working grid and the overlay need
        (JPEG 2000 levels, DCT-scaled JPEG, area averages; :func:`medlung.load_film`); ``"full"``: every
        native pixel first (``--decode``). It enters the UIDs (the masks differ slightly).

    Outputs

    formats : tuple of str
        Subset of :data:`medlung.defaults.OUTPUT_FORMATS`.
    overwrite : bool
        Replace existing outputs (and the report).
    seg_syntax : str
        DICOM-SEG form, one of :data:`medlung.defaults.SEG_SYNTAXES`.
    include_identifiers : bool
        Add the patient ID and study UID of DICOM films to the report.
    qc_fail : bool
        A film the quality check flags becomes an error row and writes nothing.
    extra_options : tuple of (str, value) pairs
        Further options that change the output, for tools built on medlung
        (they enter the UIDs; a tuple so that the settings stay hashable).

    Sending

    send : str or None
        ``AE@HOST:PORT`` to C-STORE each SEG to.
    send_tls : medlung.pacs.tls.TlsConfig or None
        Open the ``send`` associations over DICOM TLS with these files.
    stow : str or None
        DICOMweb URL to STOW-RS each SEG to.
    send_source : bool
        Also send the film itself.

    Running

    workers : int
        Films processed at once by one process (threads sharing the model).
    max_memory : int or None
        Bytes the films in flight may use together (``--max-memory``;
        default :func:`medlung.memory.default_budget`): each film holds its
        declared decode cost (:func:`medlung.io.headers.film_cost`, read from
        its header) from before it is decoded until it is written, so
        ``workers`` films run at once only while they fit; a film whose cost
        alone is over the budget is an error row, never decoded.

    Raises
    ------
    SettingError
        A ValueError, in a full sentence naming the setting and the values allowed.
    """

    bundle: str | None = None
    device: str = defaults.DEFAULT_DEVICE
    roi_size: int | None = None
    overlap: float | None = None
    sw_batch_size: int = defaults.DEFAULT_SW_BATCH_SIZE
    tta: bool = False
    precision: str = defaults.DEFAULT_PRECISION
    min_lung_mm2: float | None = None
    lungs: str = defaults.DEFAULT_CONVENTION
    fix_orientation: bool = False
    dice_estimate: str = defaults.DEFAULT_DICE_ESTIMATE
    spacing: str | None = None
    max_pixels: int = defaults.DEFAULT_MAX_PIXELS
    decode: str = defaults.DEFAULT_DECODE
    formats: tuple[str, ...] = defaults.DEFAULT_FORMATS
    overwrite: bool = False
    seg_syntax: str = defaults.DEFAULT_SEG_SYNTAX
    include_identifiers: bool = False
    qc_fail: bool = False
    extra_options: tuple[tuple[str, Any], ...] = ()
    send: str | None = None
    send_tls: Any = field(default=None, compare=True)
    stow: str | None = None
    send_source: bool = False
    workers: int = defaults.DEFAULT_WORKERS
    max_memory: int | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.bundle is not None:
            put("bundle", str(Path(self.bundle).expanduser().absolute()))
        formats = self.formats.split(",") if isinstance(self.formats, str) else self.formats
        formats = tuple(dict.fromkeys(str(f).strip().lower() for f in formats if str(f).strip()))
        unknown = [f for f in formats if f not in defaults.OUTPUT_FORMATS]
        if unknown or not formats:
            raise SettingError(
                "formats",
                f"formats must be one or more of {','.join(defaults.OUTPUT_FORMATS)}; "
                f"got {','.join(unknown) or 'none'}.",
            )
        put("formats", formats)
        _choice("device", self.device, defaults.DEVICES, prefix_ok="cuda:")
        _choice("lungs", self.lungs, defaults.CONVENTIONS)
        _choice("seg_syntax", self.seg_syntax, defaults.SEG_SYNTAXES)
        _choice("precision", self.precision, defaults.PRECISIONS)
        _choice("dice_estimate", self.dice_estimate, defaults.DICE_ESTIMATES)
        _choice("decode", self.decode, defaults.DECODE_MODES)
        if self.roi_size is not None and (not _whole(self.roi_size) or int(self.roi_size) < 32):
            raise SettingError(
                "roi_size", f"roi_size must be a whole number of working-grid pixels >= 32; got {self.roi_size!r}."
            )
        if self.overlap is not None and not (_number(self.overlap) and 0 <= float(self.overlap) <= 0.95):
            raise SettingError(
                "overlap", f"overlap must be a fraction of the window from 0 to 0.95; got {self.overlap!r}."
            )
        if self.min_lung_mm2 is not None and not (_number(self.min_lung_mm2) and float(self.min_lung_mm2) >= 0):
            raise SettingError("min_lung_mm2", f"min_lung_mm2 must be an area in mm² >= 0; got {self.min_lung_mm2!r}.")
        if self.max_memory is not None:
            from medlung.memory import MIN_BUDGET_BYTES

            if not _whole(self.max_memory) or int(self.max_memory) < MIN_BUDGET_BYTES:
                raise SettingError(
                    "max_memory",
                    f"max_memory must be a number of bytes >= {MIN_BUDGET_BYTES} (512 MB); got {self.max_memory!r}.",
                )
            put("max_memory", int(self.max_memory))
        for name in ("sw_batch_size", "workers", "max_pixels"):
            if not _whole(getattr(self, name)) or int(getattr(self, name)) < 1:
                raise SettingError(name, f"{name} must be a whole number >= 1; got {getattr(self, name)!r}.")
        if self.seg_syntax != defaults.DEFAULT_SEG_SYNTAX and (self.send or self.stow) and "seg" in self.formats:
            raise SettingError(
                "seg_syntax",
                "a JPEG 2000 DICOM-SEG is not sent to a PACS (Orthanc cannot serve it and crashes with "
                "orthanc-gdcm); keep seg_syntax 'uncompressed' or drop send/stow.",
            )
        if self.send_tls is not None and not self.send:
            raise SettingError("send_tls", "send_tls applies to send: give send='AE@HOST:PORT' too.")
        extra = self.extra_options.items() if isinstance(self.extra_options, dict) else self.extra_options
        put("extra_options", tuple(sorted((str(k), v) for k, v in extra)))
        for name in ("tta", "fix_orientation", "overwrite", "include_identifiers", "qc_fail", "send_source"):
            put(name, bool(getattr(self, name)))
        for name in ("sw_batch_size", "workers", "max_pixels", "roi_size"):
            if getattr(self, name) is not None:
                put(name, int(getattr(self, name)))
        for name in ("overlap", "min_lung_mm2"):
            if getattr(self, name) is not None:
                put(name, float(getattr(self, name)))

    # --- views ------------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> PredictSettings:
        """A copy with ``changes`` (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    def segmenter_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :class:`medlung.inference.Segmenter` (``bundle`` is its ``model``)."""
        arguments = {name: getattr(self, name) for name in MODEL_FIELDS}
        arguments["model"] = arguments.pop("bundle")
        return arguments

    def model_key(self) -> tuple:
        """What tells two models apart: equal keys share one loaded Segmenter (a Dask worker's cache)."""
        return tuple((name, getattr(self, name)) for name in MODEL_FIELDS)

    def output_options(self) -> dict[str, Any]:
        """The options of this run that change a film's outputs besides the model's (they enter the UIDs).

        See :func:`medlung.uids.output_options`, which adds what the loaded
        Segmenter and its model read from these settings.
        """
        return {
            "spacing": self.spacing,
            "seg_syntax": self.seg_syntax,
            "decode": self.decode,
            **dict(self.extra_options),
        }

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-friendly values (TLS files as paths; the TLS key's passphrase never)."""
        values: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "send_tls" and value is not None:
                value = {"cert": _text(value.cert), "key": _text(value.key), "ca": _text(value.ca)}
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            values[item.name] = value
        return values


def load_segmenter(settings: PredictSettings):
    """The :class:`~medlung.inference.Segmenter` these settings describe (the model loaded, on its device).

    Every path that segments (``medlung predict``, its Dask workers, ``medlung
    serve``) builds its model here, from the same settings object.

    Raises
    ------
    medlung.errors.MedlungError
        When the model cannot be loaded.
    ValueError
        When a setting does not fit the model (a convention it was not trained for).
    """
    from medlung.inference import Segmenter

    return Segmenter(**settings.segmenter_arguments())


def _choice(name: str, value: Any, allowed: tuple[str, ...], prefix_ok: str | None = None) -> None:
    if value in allowed or (prefix_ok and isinstance(value, str) and value.startswith(prefix_ok)):
        return
    raise SettingError(name, f"{name} must be one of {', '.join(allowed)}; got {value!r}.")


def _whole(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (_number(value) and float(value).is_integer())


def _number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
