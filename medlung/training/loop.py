"""The training loop: partial-label loss on the working grid, sliding-window validation, best-by-Dice.

The network has one sigmoid output channel per lung convention found in the
data (``field``, ``anatomical``; see :mod:`medlung.plans`); each film
supervises the convention its mask follows (:mod:`medlung.transforms.conventions`).
Validation Dice is measured per film on its own convention's channel, outside
its ignore mask, and averaged per group: the film's source and convention
(``shenzhen_field``, ``montgomery_field``, ``covid_v7_anatomical``, ...), or
its convention alone when the data names no source. The model is chosen by
the mean of the per-group averages, so a source of 11 validation films counts
as much as one of 76.

Sampling: with ``sampling`` weights (``{"source/convention": share}``), every
epoch draws ``samples_per_epoch`` crops, each group its share, films of a
group equally often (with replacement), so a source of 48 films is not
drowned by one of 400.

Reproducibility: every epoch reseeds Python, NumPy, torch, the augmentation
transforms and the batch order from ``seed + epoch``, and checkpoints hold
the model, optimizer and scheduler states, so ``--resume`` continues to the
same result as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import Compose
from monai.utils import set_determinism

from medlung import environment
from medlung.atomic import write_atomically
from medlung.errors import MedlungError, UsageError
from medlung.io.datasets import Datalist, check_datalist, find_datalist, split_datalist
from medlung.metrics import dice_iou_pooled
from medlung.networks import DeepSupervision, build_network, count_parameters
from medlung.networks.running import autocast, predict_logits, resolve_device, resolve_precision
from medlung.plans import CONVENTIONS, DEFAULT_CONVENTION, ModelPlan
from medlung.training.config import TrainConfig
from medlung.training.losses import PartialLabelLoss
from medlung.transforms.presets import (
    augmentation_transforms,
    named_augmentations,
    partial_label_transforms,
    sick_film_transforms,
)
from medlung.version import __version__

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_dice",
    "train_iou",
    "val_loss",
    "val_dice",
    "val_iou",
    "val_dice_field",
    "val_dice_anatomical",
    "lr",
    "seconds",
    "images_per_s",
)


#: Dice columns that are not per-group ones.
_FIXED_DICE = ("val_dice_field", "val_dice_anatomical")


def sampling_group(entry: dict) -> str:
    """A training film's group for sampling: ``"source/convention"`` (``"convention"`` without a source)."""
    lungs = entry.get("lungs") or DEFAULT_CONVENTION
    return f"{entry['source']}/{lungs}" if entry.get("source") else lungs


def metric_group(entry: dict) -> str:
    """The per-group Dice column suffix of a film: ``source_convention`` (``convention`` without a source)."""
    return sampling_group(entry).replace("/", "_")


def _group_counts(entries: list[dict]) -> str:
    counts: dict = {}
    for e in entries:
        counts[sampling_group(e)] = counts.get(sampling_group(e), 0) + 1
    return ", ".join(f"{g} {n}" for g, n in sorted(counts.items()))


class TrainingError(MedlungError):
    """Training cannot start or go on (bad data, existing run, bad checkpoint)."""


class RunExistsError(TrainingError, UsageError):
    """The RUN folder holds an earlier run and neither resuming nor overwriting was asked for."""


class Trainer:
    """One training run.

    Parameters
    ----------
    config : TrainConfig
        The settings.
    resume : bool
        Continue from ``RUN/last.pt``.
    overwrite : bool
        Replace an existing RUN folder's results.
    log : callable
        Receives progress lines (``print`` by default).
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False, log=print) -> None:
        self.config = config
        self.run = Path(config.output)
        self.log = log
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        if self.run.exists() and not self.run.is_dir():
            raise RunExistsError("is a file, not a run folder", self.run, "Give -o a folder (it is created).")
        exists = self.run.exists() and any(self.run.iterdir())
        if self.rank == 0 and exists and not (resume or overwrite):  # other ranks may see rank 0's files
            raise RunExistsError(
                "run folder exists and is not empty",
                self.run,
                "Use --resume to continue it, --overwrite to replace it, or another -o.",
            )
        if config.deep_supervision and config.plan.network != "unetpp":
            raise ValueError(f"deep supervision needs --network unetpp; this run trains {config.plan.network}.")
        self.resume = resume
        self.device = resolve_device(config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.dtype = resolve_precision(config.precision, self.device)

    # ---------------------------------------------------------------- data
    def prepare_data(self) -> Datalist:
        """Find, split and check the data; write ``split.json`` and report problems."""
        c = self.config
        datalist = find_datalist(c.data)
        if not datalist.has_split or not datalist.parts["validation"]:
            datalist = split_datalist(
                datalist, seed=c.seed, fractions=(1 - 2 * c.val_fraction, c.val_fraction, c.val_fraction)
            )
        if c.limit:
            for part in datalist.parts:
                datalist.parts[part] = datalist.parts[part][: c.limit]
        datalist = check_datalist(datalist)
        if datalist.problems:
            self.log(f"{len(datalist.problems)} film(s) left out:")
            for line in datalist.problems:
                self.log(f"  - {line}")
            if c.strict:
                raise TrainingError(
                    f"{len(datalist.problems)} unusable film(s) and --strict was given",
                    c.data,
                    "Fix or remove the files listed above, or drop --strict.",
                )
        if not datalist.parts["training"] or not datalist.parts["validation"]:
            raise TrainingError(
                "no usable training or validation films", c.data, "Check the layout and the problems listed above."
            )
        return datalist

    def plan_for(self, datalist: Datalist) -> ModelPlan:
        """The model plan: the configured one, with the conventions the training and validation masks follow."""
        found = {e.get("lungs") or DEFAULT_CONVENTION for p in ("training", "validation") for e in datalist.parts[p]}
        return self.config.plan_with(tuple(c for c in CONVENTIONS if c in found))

    def augmentation(self, plan: ModelPlan, references=None) -> Compose:
        """The random part of the training chain: the named augmentations, or the chain of models up to 2.0.0."""
        c = self.config
        keys = ("image", "label", "weight")
        if c.augmentations is None:
            return Compose(
                [
                    augmentation_transforms((plan.roi_size, plan.roi_size), keys=keys),
                    sick_film_transforms(plan, c.sick_film_prob),
                ]
            )
        return named_augmentations(c.augmentations, plan, keys, c.sick_film_prob, references)

    def sampler(self, entries: list[dict], generator: torch.Generator):
        """A source-balanced sampler over ``entries`` (``sampling`` weights), or None to shuffle them all.

        Groups of ``sampling`` that no training film has are left out (said once in the log); when none is
        left, or with several processes, every film is drawn once per epoch as without ``sampling``.
        """
        shares = self.sampling_shares(entries)
        if not shares:
            return None
        groups = [sampling_group(e) for e in entries]
        total = sum(shares.values())
        counts = {g: groups.count(g) for g in set(groups)}
        weights = [shares.get(g, 0.0) / total / counts[g] for g in groups]
        return torch.utils.data.WeightedRandomSampler(
            weights, self.config.samples_per_epoch or len(entries), replacement=True, generator=generator
        )

    def sampling_shares(self, entries: list[dict], say: bool = False) -> dict:
        """The ``sampling`` shares of the groups the training films have (empty: no balanced sampling)."""
        c = self.config
        groups = {sampling_group(e) for e in entries}
        shares = {g: float(v) for g, v in c.sampling.items() if g in groups and float(v) > 0}
        if say and c.sampling:
            missing = sorted(set(c.sampling) - groups)
            if missing:
                self.log(f"sampling: no training film in group(s) {', '.join(missing)}; left out")
            if self.world > 1:
                self.log("sampling: not used with several processes (each film once per epoch)")
            elif not shares:
                self.log("sampling: no group left; each film once per epoch")
            else:
                total = sum(shares.values())
                self.log("sampling: " + ", ".join(f"{g} {v / total:.0%}" for g, v in sorted(shares.items())))
        return shares if self.world == 1 else {}

    # ---------------------------------------------------------------- main
    def fit(self, stop_after: int | None = None) -> dict:
        """Train; return the summary written to ``RUN/summary.json``.

        Parameters
        ----------
        stop_after : int, optional
            Stop after this epoch as an interruption would (last.pt written,
            no final figures); ``--resume`` continues from there.
        """
        c = self.config
        distributed = self.world > 1
        if distributed and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        main = self.rank == 0
        datalist = self.prepare_data()  # before the RUN folder exists: bad data leaves no empty folder behind
        self.run.mkdir(parents=True, exist_ok=True)
        if main:
            _write_json(self.run / "split.json", {p: datalist.parts[p] for p in datalist.parts})

        set_determinism(c.seed)
        self.plan = plan = self.plan_for(datalist)
        model = build_network(plan.network, plan.features, out_channels=plan.out_channels)
        if c.init and not self.resume:
            from medlung.training.warm_start import warm_start

            self.log(warm_start(model, plan, c.init))
        model = model.to(self.device)
        preprocessing = partial_label_transforms(plan, c.pseudo_weight)
        # the deterministic part is cached once; the random part runs on a copy of each cached film per draw
        cached = CacheDataset(datalist.parts["training"], preprocessing, progress=False, num_workers=0)
        references = None
        if c.augmentations is not None and "histogram" in c.augmentations:
            from medlung.transforms.domain import film_quantiles

            references = [film_quantiles(cached[i]["image"]) for i in range(len(cached))]
        augmentation = self.augmentation(plan, references)
        train_ds = Dataset(cast("Sequence[dict]", cached), augmentation)  # a CacheDataset indexes like one
        # seeded as one chain with the preprocessing, as runs before the cache was split off were
        seeded = Compose([preprocessing, augmentation])
        val_ds = CacheDataset(datalist.parts["validation"], preprocessing, progress=False, num_workers=0)
        sampler: torch.utils.data.distributed.DistributedSampler | None = None
        if distributed:
            sampler = torch.utils.data.distributed.DistributedSampler(train_ds, shuffle=True, seed=c.seed)
        balanced = bool(self.sampling_shares(datalist.parts["training"], say=main))
        draws = (c.samples_per_epoch or len(train_ds)) if balanced else len(sampler or train_ds)
        steps_per_epoch = math.ceil(draws / c.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=c.lr, total_steps=max(2, c.epochs * steps_per_epoch), pct_start=0.1
        )
        loss_fn = PartialLabelLoss(consistency_weight=c.consistency_weight, conventions=plan.conventions)
        trained = DeepSupervision(model) if c.deep_supervision else model
        # a UNet++ trained on its final output alone leaves its three nested heads without a gradient
        unused = plan.network == "unetpp" and not c.deep_supervision
        net = (
            torch.nn.parallel.DistributedDataParallel(trained, find_unused_parameters=unused)
            if distributed
            else trained
        )

        start_epoch, best, history = 1, {"val_dice": -1.0, "epoch": 0}, []
        if self.resume:
            state = torch.load(self.run / "last.pt", map_location=self.device, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        if main:
            _write_json(self.run / "config.json", self._config_record(datalist, model))
            self.log(
                f"{datalist.source}: {len(train_ds)} training, {len(val_ds)} validation films; "
                f"{plan.network} {count_parameters(model):,} parameters on {self.device} "
                f"({'bf16' if self.dtype else 'fp32'}), working spacing {plan.working_spacing} mm, "
                f"roi {plan.roi_size}, conventions {', '.join(plan.conventions)}"
            )
            self.log("training films per group: " + _group_counts(datalist.parts["training"]))
            self.log("validation films per group: " + _group_counts(datalist.parts["validation"]))

        for epoch in range(start_epoch, c.epochs + 1):
            started = time.perf_counter()
            set_determinism(c.seed + epoch)
            seeded.set_random_state(seed=c.seed + epoch)
            generator = torch.Generator().manual_seed(c.seed + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            balanced = self.sampler(datalist.parts["training"], generator)
            loader = DataLoader(
                train_ds,
                batch_size=c.batch_size,
                shuffle=sampler is None and balanced is None,
                sampler=sampler or balanced,
                generator=generator,
                num_workers=c.num_workers,
                drop_last=False,
            )
            train = self._train_epoch(net, loader, optimizer, scheduler, loss_fn, epoch)
            train_seconds = time.perf_counter() - started
            row = {"epoch": epoch, **train}
            if main:
                row.update(self._validate(model, val_ds, loss_fn))
            row["lr"] = optimizer.param_groups[0]["lr"]
            row["seconds"] = time.perf_counter() - started
            # training throughput of all processes, validation excluded
            row["images_per_s"] = train["images"] * self.world / train_seconds
            row.pop("images")
            history.append(row)
            if main:
                improved = row["val_dice"] > best["val_dice"]
                if improved:
                    best = {"val_dice": row["val_dice"], "epoch": epoch}
                    self._save(self.run / "best.pt", model, optimizer, scheduler, epoch, best, history)
                self._save(self.run / "last.pt", model, optimizer, scheduler, epoch, best, history)
                _write_metrics(self.run / "metrics.csv", history)
                groups = [k[len("val_dice_") :] for k in row if k.startswith("val_dice_") and k not in _FIXED_DICE]
                self.log(
                    f"epoch {epoch}/{c.epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
                    f"val Dice {row['val_dice']:.4f} ("
                    + ", ".join(f"{g} {row[f'val_dice_{g}']:.4f}" for g in groups or self.plan.conventions)
                    + f")  IoU {row['val_iou']:.4f}  {row['seconds']:.0f}s  "
                    f"{row['images_per_s']:.1f} img/s{'  *best*' if improved else ''}"
                )
                if epoch in c.keep_epochs:
                    shutil.copyfile(self.run / "last.pt", self.run / f"epoch{epoch:03d}.pt")
            if distributed:
                torch.distributed.barrier()
            if stop_after is not None and epoch >= stop_after:
                return {"stopped_after": epoch}

        summary = {}
        if main:
            summary = self._finish(model, datalist, loss_fn, history, best)
        if distributed:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return summary

    # ---------------------------------------------------------------- steps
    def _train_epoch(self, net, loader, optimizer, scheduler, loss_fn, epoch) -> dict:
        net.train()
        losses, dices, ious, images = [], [], [], 0
        bar = _progress(loader, f"epoch {epoch}", self.rank == 0)
        for batch in bar:
            image, label = batch["image"].to(self.device), batch["label"].to(self.device)
            weight, own = batch["weight"].to(self.device), batch["own"].to(self.device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.dtype):
                outputs = net(image)
            # deep supervision: every nested output, the model's own last; the loss is their mean
            outputs = outputs if isinstance(outputs, list) else [outputs]
            loss = sum(loss_fn(o.float(), label, weight, own) for o in outputs) / len(outputs)
            logits = outputs[-1]
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            supervised = (weight > 0) & (own[:, :, None, None] > 0)
            dice, iou = dice_iou_pooled(logits.detach() > 0, label > 0.5, supervised)
            dices.append(dice)
            ious.append(iou)
            images += image.shape[0]
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.4f}")
        return {
            "train_loss": float(np.mean(losses)),
            "train_dice": float(np.mean(dices)),
            "train_iou": float(np.mean(ious)),
            "images": images,
        }

    def evaluate_part(self, model, dataset, loss_fn) -> dict:
        """Loss, Dice and IoU (working grid, whole films, sliding window) over ``dataset``.

        Each film is scored on its own convention's channel outside its ignore
        mask. ``dice_<convention>`` and ``dice_<group>`` (:func:`metric_group`) are per-convention and
        per-group means; ``dice`` is the mean of the per-group means (per-convention ones when the data
        names no source: then the groups are the conventions).
        """
        model.eval()
        plan = self.plan
        losses: list[float] = []
        dices: list[float] = []
        ious: list[float] = []
        per_convention: dict[str, list[float]] = {c: [] for c in plan.conventions}
        per_group: dict[str, list[float]] = {}
        for item in dataset:
            image, label = item["image"][None], item["label"][None].to(self.device)
            weight, own = item["weight"][None].to(self.device), item["own"][None].to(self.device)
            logits = predict_logits(model, image, plan.roi_size, plan.overlap, self.device, self.dtype)
            losses.append(loss_fn(logits, label, weight, own).item())
            channel = int(own[0].argmax())
            where = weight[:, channel] > 0
            dice, iou = dice_iou_pooled(logits[:, channel] > 0, label[:, channel] > 0.5, where)
            dices.append(dice)
            ious.append(iou)
            per_convention[plan.conventions[channel]].append(dice)
            per_group.setdefault(metric_group({**item, "lungs": plan.conventions[channel]}), []).append(dice)
        means = {f"dice_{c}": float(np.mean(v)) for c, v in per_convention.items() if v}
        groups = {f"dice_{g}": float(np.mean(v)) for g, v in sorted(per_group.items())}
        return {
            "loss": float(np.mean(losses)),
            "dice": float(np.mean(list(groups.values()))),
            "iou": float(np.mean(ious)),
            **groups,
            **means,
            "dice_per_film": dices,
        }

    def _validate(self, model, val_ds, loss_fn) -> dict:
        result = self.evaluate_part(model, val_ds, loss_fn)
        groups = {
            f"val_{k}": v
            for k, v in result.items()
            if k.startswith("dice_") and k[5:] not in CONVENTIONS and isinstance(v, float)
        }
        return {
            "val_loss": result["loss"],
            "val_dice": result["dice"],
            "val_iou": result["iou"],
            **{f"val_dice_{c}": result.get(f"dice_{c}", float("nan")) for c in CONVENTIONS},
            **groups,
        }

    def _finish(self, model, datalist, loss_fn, history, best) -> dict:
        from medlung.training.plots import plot_curves, plot_group_curves, plot_samples

        state = torch.load(self.run / "best.pt", map_location=self.device, weights_only=True)
        model.load_state_dict(state["model"])
        preprocessing = partial_label_transforms(self.plan)
        test = None
        if datalist.parts["test"]:
            test = self.evaluate_part(model, Dataset(datalist.parts["test"], preprocessing), loss_fn)
            test.pop("dice_per_film")
        plot_curves(self.run / "curves.png", history, test, best["epoch"])
        plot_group_curves(self.run / "curves_groups.png", history, best["epoch"])
        samples = Dataset(datalist.parts["validation"][:4], preprocessing)
        plan = self.plan
        plot_samples(self.run / "samples.png", model, samples, plan.roi_size, plan.overlap, self.device, self.dtype)
        summary = {
            "best_epoch": best["epoch"],
            "best_val_dice": best["val_dice"],
            "test": test,
            "epochs": len(history),
            "seconds": sum(r["seconds"] for r in history),
            "images_per_s": float(np.mean([r["images_per_s"] for r in history])),
        }
        _write_json(self.run / "summary.json", summary)
        self.log(
            f"best val Dice {best['val_dice']:.4f} at epoch {best['epoch']}"
            + (f"; test Dice {test['dice']:.4f} IoU {test['iou']:.4f}" if test else "")
        )
        return summary

    def _save(self, path, model, optimizer, scheduler, epoch, best, history) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "best": best,
            "history": history,
            "config": self.config.to_dict(),
            "plan": self.plan.to_dict(),
            "network": self.plan.network_def(),
            "preprocessing": {
                "working_spacing": self.plan.working_spacing,
                "roi_size": self.plan.roi_size,
                "intensity_percentiles": list(self.plan.intensity_percentiles),
            },
            "medlung_version": __version__,
        }
        # torch names the archive inside the file after the file it saves to ("best", "last"): write_atomically's
        # temporary file has the checkpoint's own name (in a private folder), so equal checkpoints stay equal
        write_atomically(path, lambda tmp: torch.save(state, tmp), overwrite=True)

    def _config_record(self, datalist: Datalist, model) -> dict:
        import monai

        return {
            **self.config.to_dict(),
            "device_used": str(self.device),
            "precision_used": "bf16" if self.dtype else "fp32",
            "world_size": self.world,
            "parameters": count_parameters(model),
            "plan": self.plan.to_dict(),
            "versions": {
                "medlung": __version__,
                "monai": monai.__version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
            "data_summary": datalist.summary(),
            "problems": datalist.problems,
        }


def _progress(iterable, description: str, enabled: bool):
    if not enabled or environment.no_progress():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)


def _write_json(path: Path, content) -> None:
    text = json.dumps(content, indent=2, default=str)
    write_atomically(path, lambda tmp: tmp.write_text(text), overwrite=True)


def _write_metrics(path: Path, history: list[dict]) -> None:
    """``metrics.csv``: :data:`METRIC_COLUMNS`, then the per-group validation Dice columns (``val_dice_<group>``)."""
    from medlung.tables import csv_text

    extra = sorted({k for row in history for k in row if k.startswith("val_dice_") and k not in METRIC_COLUMNS})

    table = csv_text([*METRIC_COLUMNS, *extra], history, lambda v: f"{v:.6g}" if isinstance(v, float) else v)
    write_atomically(path, lambda tmp: tmp.write_text(table, encoding="utf-8"), overwrite=True)
