"""The bundle's inference config as a standard MONAI workflow: the ``InferProperties`` as medlung components.

MONAI's generic consumers (``monai.bundle.create_workflow(workflow_type="inference")``,
MONAI Deploy's bundle inference operator, MONAI Label, the model zoo's property
check) look for ``dataset``, ``preprocessing``, ``network_def``, ``inferer``,
``postprocessing``, ``evaluator`` and ``handlers`` in ``configs/inference.json``.
Each is the piece of :class:`~medlung.inference.Segmenter` it names:

=================  ===========================================================================
property           medlung component
=================  ===========================================================================
``preprocessing``  :func:`inference_preprocessing`: load the film (spacing kept), standard display,
                   working grid, the plan's intensity scaling -- the Segmenter's own chain
                   (:func:`medlung.transforms.presets.inference_transforms`)
``dataset``        a ``monai.data.Dataset`` of ``{"image": path}`` over the films found in
                   ``dataset_dir``, with ``preprocessing`` as its transform
``network_def``    :func:`medlung.networks.build_network` (weights: ``models/model.pt``)
``inferer``        :class:`medlung.networks.running.LungInferer` (sliding windows, optional TTA)
``postprocessing`` :func:`lung_postprocessing`: the convention's lung margin (with the plan's
                   shape prior) back to the native grid, threshold, clean-up, patient
                   right/left split, back to the stored grid -- labels 0/1/2 as the
                   Segmenter returns them (:mod:`medlung.inference.native_grid`)
``evaluator``      :class:`PredictEvaluator`: ``medlung predict``'s batch over the dataset's films
``handlers``       per-film callbacks of the evaluator (:class:`~medlung.bundle.ProgressLogger`)
=================  ===========================================================================

``preprocessing`` -> ``inferer(image, network)`` -> ``postprocessing`` gives the
Segmenter's labels for every film (``tests/bundle/test_workflow.py`` checks
it), so a consumer that drives those pieces itself gets what ``medlung
predict`` writes. The ``run`` step of the config runs the ``evaluator``, which
writes ``medlung predict``'s outputs and report.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, MapTransform

from medlung.inference.native_grid import convention_margin, native_labels
from medlung.plans import (
    DEFAULT_ANATOMICAL_CLOSING_MM,
    DEFAULT_INTENSITY_PERCENTILES,
    DEFAULT_MIN_LUNG_MM2,
    DEFAULT_WORKING_SPACING,
    ModelPlan,
)
from medlung.transforms.display import display_of
from medlung.transforms.presets import inference_transforms


def inference_preprocessing(
    working_spacing: float,
    spacing: str | float | Sequence[float] | None = None,
    keys: str | Sequence[str] = "image",
    intensity_percentiles: Sequence[float] = DEFAULT_INTENSITY_PERCENTILES,
) -> Compose:
    """The Segmenter's chain before the network (:func:`medlung.transforms.presets.inference_transforms`).

    Parameters
    ----------
    working_spacing : float
        Working pixel size of the trained weights, mm.
    spacing : str, float or sequence of float, optional
        Spacing in mm for every film instead of the files' (``--spacing``).
    keys : str or sequence of str
        Keys holding film paths (or :class:`~medlung.film.Film` objects).
    intensity_percentiles : sequence of float
        The model plan's film percentiles mapped to 0 and 1 (the config's
        ``intensity_percentiles``; configs exported before it was passed here
        all belong to models trained with the default).

    Returns
    -------
    monai.transforms.Compose
        ``{"image": path}`` -> ``{"image": MetaTensor (1, rows, cols)}`` in the
        standard display, on the working grid, scaled to [0, 1]; its meta
        keeps what :func:`lung_postprocessing` needs to bring the labels back
        to the film's stored grid.
    """
    plan = ModelPlan(
        working_spacing=float(working_spacing), intensity_percentiles=tuple(float(p) for p in intensity_percentiles)
    )
    return inference_transforms(plan, keys=keys, spacing=spacing)


class LungLabelsd(MapTransform):
    """Network logits on the working grid -> the Segmenter's label map on the film's stored grid.

    The convention's lung margin is brought to the native grid, thresholded,
    cleaned, split into patient right (1) and left (2) and turned back to the
    grid the film is stored on by :func:`medlung.inference.native_grid.native_labels`,
    as :class:`~medlung.inference.Segmenter` does.

    Parameters
    ----------
    keys : str or sequence of str
        Keys holding logits ``(C, rows, cols)`` on the working grid.
    reference_key : str
        Key of the preprocessed film (its meta gives the native grid and the display transform).
    min_lung_mm2 : float
        Components smaller than this are dropped, mm².
    head, conventions : str, sequence of str
        The model's output head and lung conventions (its :class:`~medlung.plans.ModelPlan`).
    lungs : str
        The convention drawn (see :func:`medlung.inference.native_grid.convention_margin`).
    working_spacing : float
        Working-grid pixel size of the logits, mm.
    anatomical_closing_mm : float
        The plan's shape prior of the anatomical lungs: closing radius, mm (0 = none).
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        reference_key: str = "image",
        min_lung_mm2: float = DEFAULT_MIN_LUNG_MM2,
        head: str = "softmax",
        conventions=("field",),
        lungs: str = "field",
        working_spacing: float = DEFAULT_WORKING_SPACING,
        anatomical_closing_mm: float = DEFAULT_ANATOMICAL_CLOSING_MM,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.min_lung_mm2 = float(min_lung_mm2)
        self.plan = ModelPlan(
            head=head,
            conventions=tuple(conventions),
            working_spacing=float(working_spacing),
            min_lung_mm2=self.min_lung_mm2,
            anatomical_closing_mm=float(anatomical_closing_mm),
        )
        if self.plan.head == "sigmoid":
            self.plan.channel(lungs)  # refuses a convention the model lacks
        self.lungs = lungs

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        meta: dict = d[self.reference_key].meta  # type: ignore[attr-defined]  # a MetaTensor from the preprocessing
        display = display_of(meta)
        native_spacing = tuple(float(s) for s in meta["native_spacing"])  # given, or the nominal rule's
        for key in self.key_iterator(d):
            logits = torch.as_tensor(d[key]).detach().float().cpu()
            margin = convention_margin(logits, self.plan, self.lungs)
            native = native_labels(
                margin, meta["native_shape"], native_spacing, meta.get("orientation"), self.min_lung_mm2, display
            )
            affine = torch.eye(3, dtype=torch.float64)
            shown = display.display_spacing(native_spacing)  # a swap is its own inverse
            if meta.get("spacing_known") and shown is not None:
                affine[0, 0], affine[1, 1] = shown
            out_meta = {k: v for k, v in meta.items() if k != "affine"}
            out_meta.update(
                orientation=meta.get("stored_orientation", meta.get("orientation")),
                spatial_shape=np.array(native.labels.shape),
                orientation_assumed=native.orientation_assumed,
                notes=native.notes,
            )
            d[key] = MetaTensor(torch.from_numpy(native.labels)[None], affine=affine, meta=out_meta)
        return d


def lung_postprocessing(
    min_lung_mm2: float = DEFAULT_MIN_LUNG_MM2,
    head: str = "softmax",
    conventions=("field",),
    lungs: str = "field",
    keys: KeysCollection = "pred",
    reference_key: str = "image",
    working_spacing: float = DEFAULT_WORKING_SPACING,
    anatomical_closing_mm: float = DEFAULT_ANATOMICAL_CLOSING_MM,
) -> Compose:
    """The Segmenter's chain after the network: :class:`LungLabelsd` (``pred`` logits -> native labels 0/1/2)."""
    return Compose(
        [
            LungLabelsd(
                keys, reference_key, min_lung_mm2, head, conventions, lungs, working_spacing, anatomical_closing_mm
            )
        ]
    )


class PredictEvaluator:
    """The bundle's inference engine: ``medlung predict``'s batch over the films of a dataset.

    Each film is read, segmented by the Segmenter (the chain of the
    ``preprocessing``, ``inferer`` and ``postprocessing`` properties) and
    written as ``medlung predict`` writes it; one bad film does not stop the
    batch.

    Parameters
    ----------
    dataset : monai.data.Dataset
        Items ``{"image": path}``; only the paths are used.
    output_dir : str or Path
        Where the outputs and ``report.csv`` / ``report.json`` go.
    segmenter : medlung.inference.Segmenter
        The model ``settings`` describe, loaded.
    settings : medlung.pipeline.settings.PredictSettings
        The run's settings (model, formats, overwrite, spacing, sending), as ``medlung predict`` builds them.
    val_handlers : sequence of callable, optional
        Called with each film's report row when it is done (the MONAI name of
        an engine's handlers; here :class:`~medlung.bundle.ProgressLogger`).
    """

    def __init__(self, dataset, output_dir, segmenter, settings, val_handlers: Sequence | None = None) -> None:
        self.dataset = dataset
        self.output_dir = output_dir
        self.segmenter = segmenter
        self.settings = settings
        self.val_handlers = list(val_handlers or [])

    @property
    def inputs(self) -> list:
        """The film paths of the dataset, in order."""
        return [item["image"] for item in self.dataset.data]

    def _done(self, row: dict) -> None:
        for handler in self.val_handlers:
            handler(row)

    def run(self):
        """Segment and write every film; returns the :class:`~medlung.writers.report.Report`."""
        from medlung.pipeline.batch import predict_files

        return predict_files(self.inputs, self.output_dir, self.segmenter, self.settings, self._done)


__all__ = ["LungLabelsd", "PredictEvaluator", "inference_preprocessing", "lung_postprocessing"]
