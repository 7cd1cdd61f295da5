"""``medlung train DATA -o RUN``: train a lung segmentation network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from medlung.cli.common import fail, is_verbose, quiet_warnings
from medlung.errors import MedlungError
from medlung.plans import AUGMENTATIONS, NETWORKS, ModelPlan
from medlung.training.config import TrainConfig

#: The defaults of every option: TrainConfig's and its plan's (neither module imports torch).
_DEFAULTS = TrainConfig()
_PLAN = _DEFAULTS.plan


class _TrainCommand(click.Command):
    """Shows ``train DATA -o RUN [OPTIONS]`` as the usage: DATA and -o are required unless --resume is given."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["DATA", "-o", "RUN", "[OPTIONS]"]


@click.command(cls=_TrainCommand)
@click.argument("data", required=False, metavar="DATA", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    metavar="RUN",
    type=click.Path(path_type=Path, file_okay=False),
    help="RUN folder for checkpoints, metrics, figures (created). Required, except with --resume.",
)
@click.option(
    "--network",
    type=click.Choice(NETWORKS),
    default=_PLAN.network,
    show_default=True,
    help="Architecture: MONAI BasicUNet, or BasicUNetPlusPlus.",
)
@click.option(
    "--features",
    default=",".join(map(str, _PLAN.features)),
    show_default=True,
    help="Six channel widths (default: the shipped model's).",
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=_DEFAULTS.epochs,
    show_default=True,
    help="Passes over the training films (the learning-rate schedule spans them).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=_DEFAULTS.batch_size,
    show_default=True,
    help="Crops per optimiser step.",
)
@click.option(
    "--roi-size",
    type=click.IntRange(32),
    default=_PLAN.roi_size,
    show_default=True,
    help="Training crop and sliding-window size on the working grid, pixels.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=_DEFAULTS.lr,
    show_default=True,
    help="Peak learning rate (AdamW, one-cycle).",
)
@click.option(
    "--spacing",
    "working_spacing",
    type=click.FloatRange(min=0, min_open=True),
    default=_PLAN.working_spacing,
    show_default=True,
    help="Working spacing in mm.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.01, 0.5),
    default=_DEFAULTS.val_fraction,
    show_default=True,
    help="Validation and test fraction when DATA has no split.",
)
@click.option(
    "--seed",
    type=int,
    default=_DEFAULTS.seed,
    show_default=True,
    help="Seed of the split (when DATA has none), the augmentation and the initial weights.",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Continue the run in this folder from last.pt.",
)
@click.option("--overwrite", is_flag=True, help="Replace the results of an existing RUN folder.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="Mixed precision: auto uses bf16 where the CPU/GPU supports it.",
)
@click.option("--strict", is_flag=True, help="Stop when any film or mask is unusable.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use at most N films per part (quick runs).")
@click.option(
    "--init",
    "init_model",
    type=click.Path(path_type=Path, exists=True),
    help="Start from this model's weights (bundle, run folder or checkpoint) instead of random ones.",
)
@click.option(
    "--sick-film-prob",
    type=click.FloatRange(0, 1),
    default=_DEFAULTS.sick_film_prob,
    show_default=True,
    help="Probability of the sick/portable-film augmentation (opacities, base haze, lines, leads, text).",
)
@click.option(
    "--augmentations",
    default=None,
    help=f"Comma-separated named augmentations ({', '.join(AUGMENTATIONS)}), 'all' or 'none'. "
    "Default: the chain of models up to 2.0.0 (affine, intensity, sick film).",
)
@click.option(
    "--sampling",
    default=None,
    help="Share of each epoch's crops per source/convention group, e.g. "
    "'shenzhen/field=0.3,montgomery/field=0.25,covid_v7/anatomical=0.3' (a CSV source column and lungs column). "
    "Default: every film once per epoch.",
)
@click.option(
    "--samples-per-epoch",
    type=click.IntRange(1),
    default=None,
    help="Crops per epoch with --sampling (default: the number of training films).",
)
@click.option(
    "--consistency-weight",
    type=click.FloatRange(0),
    default=_DEFAULTS.consistency_weight,
    show_default=True,
    help="Weight of the loss term keeping the lung field inside the anatomical lung (two-convention models).",
)
@click.option(
    "--deep-supervision",
    is_flag=True,
    default=False,
    help="UNet++ only: train every nested output of its decoder, not the final one alone (the model is unchanged).",
)
@click.option(
    "--pseudo-weight",
    type=click.FloatRange(0, 1),
    default=_DEFAULTS.pseudo_weight,
    show_default=True,
    help="Weight of pseudo-labelled pixels (a CSV pseudo column: anatomical pseudo-labels of field films).",
)
@click.option(
    "--keep-epochs",
    default="",
    help="Comma-separated epochs whose checkpoints are kept as RUN/epochNNN.pt (e.g. 1,2,4).",
)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option(
    "--nproc",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Processes for DistributedDataParallel (runs torchrun; gloo on CPU, nccl on CUDA).",
)
@click.pass_context
def train(
    ctx: click.Context,
    data,
    output,
    network,
    features,
    epochs,
    batch_size,
    roi_size,
    lr,
    working_spacing,
    val_fraction,
    seed,
    resume,
    overwrite,
    device,
    precision,
    strict,
    limit,
    init_model,
    sick_film_prob,
    augmentations,
    sampling,
    samples_per_epoch,
    consistency_weight,
    deep_supervision,
    pseudo_weight,
    keep_epochs,
    workers,
    nproc,
) -> None:
    """Train on DATA: a folder with images/ and masks/, a DICOM folder of films and the DICOM-SEGs that
    reference them, a CSV (columns image, mask; optional split, lungs, ignore) or a MONAI datalist JSON.

    Each mask follows a lung convention: field (the default) or anatomical (a
    `lungs` column or key); the network gets one output per convention found,
    and each film supervises only its own. Ignore masks (an `ignore` column or
    key, or masks/<stem>_ignore.png) are left out of loss and metrics.

    DATA and -o RUN are required; to continue an interrupted run give only
    --resume RUN (medlung train --resume RUN).

    Writes config.json, split.json, metrics.csv, best.pt, last.pt, curves.png,
    samples.png and summary.json into RUN. An existing RUN is refused unless
    --resume or --overwrite is given. Exit status: 0 trained, 1 training
    failed (e.g. unusable films with --strict), 2 usage error (bad DATA, an
    existing RUN, an unknown device); nothing is written for a usage error.
    """
    verbose = is_verbose(ctx)
    if nproc > 1:
        sys.exit(_launch_distributed(nproc))
    from medlung.training.loop import Trainer

    if resume is not None:
        config_path = resume / "config.json"
        if not config_path.is_file():
            raise click.BadParameter(f"{config_path} not found: is this a medlung run folder?", param_hint="--resume")
        config = TrainConfig.from_dict(json.loads(config_path.read_text()))
        config.output = str(resume)
        if _given(ctx, "epochs") and epochs != config.epochs:
            raise click.BadParameter(
                f"the run was planned for {config.epochs} epochs (its learning-rate schedule depends on it); "
                "resume without --epochs, or start a new run",
                param_hint="--epochs",
            )
    else:
        if data is None or output is None:
            raise click.UsageError("DATA and -o RUN are required (or --resume RUN).")
        if not data.exists():
            raise click.BadParameter(f"{data} does not exist.", param_hint="DATA")
        if deep_supervision and network != "unetpp":
            raise click.BadParameter(
                f"deep supervision needs --network unetpp (the nested decoder's outputs), not {network}",
                param_hint="--deep-supervision",
            )
        try:
            widths = tuple(int(f) for f in features.split(","))
        except ValueError:
            raise click.BadParameter("give six integers such as 16,16,32,64,128,16", param_hint="--features") from None
        try:
            plan = ModelPlan(
                network=network, features=widths, working_spacing=working_spacing, roi_size=roi_size, head="sigmoid"
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--features") from None
        config = TrainConfig(
            data=str(data.absolute()),
            output=str(output),
            plan=plan,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            precision=precision,
            strict=strict,
            limit=limit,
            num_workers=workers,
            init=str(init_model.resolve()) if init_model else None,
            sick_film_prob=sick_film_prob,
            augmentations=_augmentations(augmentations),
            sampling=_sampling(sampling),
            samples_per_epoch=samples_per_epoch,
            consistency_weight=consistency_weight,
            deep_supervision=deep_supervision,
            pseudo_weight=pseudo_weight,
            keep_epochs=_epochs(keep_epochs),
        )
    try:
        with quiet_warnings():
            trainer = Trainer(config, resume=resume is not None, overwrite=overwrite, log=click.echo)
            trainer.fit()
    except (MedlungError, ValueError) as exc:  # bad DATA, an existing RUN, an unknown device: exit 2
        fail(exc, verbose)


def _augmentations(text: str | None) -> tuple | None:
    if text is None:
        return None
    from medlung.transforms.presets import check_augmentations

    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(AUGMENTATIONS)
    if names == ["none"]:
        return ()
    try:
        return check_augmentations(names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--augmentations") from None


def _sampling(text: str | None) -> dict:
    if not text:
        return {}
    shares = {}
    for item in text.split(","):
        group, _, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not group.strip() or value < 0:
            raise click.BadParameter(
                f"{item!r}: give GROUP=SHARE pairs such as montgomery/field=0.25", param_hint="--sampling"
            )
        shares[group.strip()] = value
    if not sum(shares.values()) > 0:
        raise click.BadParameter("the shares add up to 0", param_hint="--sampling")
    return shares


def _epochs(text: str) -> tuple:
    try:
        return tuple(int(e) for e in text.split(",") if e.strip())
    except ValueError:
        raise click.BadParameter("give epoch numbers such as 1,2,4", param_hint="--keep-epochs") from None


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _launch_distributed(nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        args.append(arg)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "medlung",
        *args,
    ]
    return subprocess.call(command, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
