"""Loading a trained model: a bundle folder, a training run or a checkpoint -> network + plan.

The shipped bundle is found without a path (:func:`find_default_model`); every
source gives the same pair: the network in eval mode and a :class:`ModelSpec`
whose :class:`~medlung.plans.ModelPlan` says how to run it.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from medlung import environment
from medlung.errors import UsageError
from medlung.networks import build_network
from medlung.plans import ModelPlan, plan_from_bundle_config, plan_from_checkpoint

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "medlung_cxr_lung"


class ModelError(UsageError):
    """A model (bundle or checkpoint) cannot be found or loaded."""


@dataclass
class ModelSpec:
    """A loaded model's plan and where it came from.

    Attributes
    ----------
    plan : ModelPlan
        Network, working grid, intensity rule, output head and conventions.
    version : str
        Model version (bundle version, or ``"run:<folder>@epoch<N>"``).
    source : str
        Where it was loaded from.
    """

    plan: ModelPlan
    version: str
    source: str

    @property
    def network(self) -> str:
        return self.plan.network

    @property
    def features(self) -> tuple:
        return self.plan.features

    @property
    def working_spacing(self) -> float:
        return self.plan.working_spacing

    @property
    def roi_size(self) -> int:
        return self.plan.roi_size

    @property
    def intensity_percentiles(self) -> tuple:
        return self.plan.intensity_percentiles


#: Where a wheel installs the shipped bundle, relative to the installation prefix (see setup.cfg).
INSTALLED_BUNDLE = "share/medlung/bundles/medlung_cxr_lung"


def find_default_model() -> Path:
    """The shipped bundle.

    Looked for in this order: ``$MEDLUNG_BUNDLE``; ``bundles/medlung_cxr_lung``
    in the source tree (a checkout or an editable install); the copy a wheel
    installs under ``<prefix>/share/medlung/bundles/``.
    """
    override = environment.bundle_override()
    if override is not None:
        candidates = [override]
    else:
        candidates = [DEFAULT_BUNDLE, *_installed_bundles()]
    for path in candidates:
        if (path / "models" / "model.pt").is_file():
            return path
    raise ModelError(
        "the shipped model was not found",
        candidates[0],
        "Give --bundle DIR (a medlung bundle or a training run's best.pt), or set MEDLUNG_BUNDLE.",
    )


def _installed_bundles() -> list[Path]:
    """The bundle folder recorded in the installed distribution's file list, if any."""
    from importlib import metadata

    try:
        files = metadata.distribution("medlung").files or []
    except metadata.PackageNotFoundError:
        return []
    marker = f"{INSTALLED_BUNDLE}/models/model.pt"
    return [Path(f.locate()).resolve().parents[1] for f in files if str(f).replace("\\", "/").endswith(marker)]


def load_model(
    source: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelSpec]:
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
            spec = ModelSpec(plan_from_bundle_config(config), f"{path.name}@{version}", str(path))
            state = torch.load(path / "models" / "model.pt", map_location="cpu", weights_only=True)
        else:
            checkpoint = path / "best.pt" if path.is_dir() else path
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            spec = ModelSpec(
                plan_from_checkpoint(state), f"run:{checkpoint.parent.name}@epoch{state['epoch']}", str(checkpoint)
            )
            state = state["model"]
        model = build_network(spec.network, spec.features, out_channels=spec.plan.out_channels)
        model.load_state_dict(state)
    except FileNotFoundError as exc:
        raise ModelError(
            f"model file missing ({exc.filename})",
            path,
            "Give a medlung bundle folder, a run folder or a best.pt checkpoint.",
        ) from None
    except IsADirectoryError:
        raise ModelError(
            "folder holds no model (configs/inference.json + models/model.pt, or best.pt)",
            path,
            "Give a medlung bundle folder, a run folder or a best.pt checkpoint.",
        ) from None
    except (
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        RuntimeError,
        ValueError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
    ) as exc:
        raise ModelError(
            f"not a medlung model ({type(exc).__name__}: {exc})",
            path,
            "Give a medlung bundle folder, a run folder or a best.pt checkpoint.",
        ) from None
    return model.to(device).eval(), spec
