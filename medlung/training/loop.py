"""The training loop: DiceCE on the working grid, sliding-window validation, best-by-Dice.

Reproducibility: every epoch reseeds Python, NumPy, torch, the augmentation
transforms and the batch order from ``seed + epoch``, and checkpoints hold
the model, optimizer and scheduler states, so ``--resume`` continues to the
same result as an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.transforms import Compose
from monai.utils import set_determinism

from medlung import __version__
from medlung.errors import MedlungError
from medlung.io.datasets import Datalist, check_datalist, find_datalist, split_datalist
from medlung.metrics import dice_iou_pooled
from medlung.networks import build_network, count_parameters
from medlung.networks.running import autocast, predict_logits, resolve_device, resolve_precision
from medlung.training.config import TrainConfig
from medlung.transforms.presets import INTENSITY_PERCENTILES, augmentation_transforms, labelled_transforms
from medlung.writers.atomic import write_atomically

METRIC_COLUMNS = (
    "epoch", "train_loss", "train_dice", "train_iou", "val_loss", "val_dice", "val_iou", "lr", "seconds", "images_per_s"
)


class TrainingError(MedlungError):
    """Training cannot start or go on (bad data, existing run, bad checkpoint)."""


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
        exists = self.run.exists() and any(self.run.iterdir())
        if self.rank == 0 and exists and not (resume or overwrite):  # other ranks may see rank 0's files
            raise TrainingError("run folder exists and is not empty", self.run,
                                "Use --resume to continue it, --overwrite to replace it, or another -o.")
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
            datalist = split_datalist(datalist, seed=c.seed,
                                      fractions=(1 - 2 * c.val_fraction, c.val_fraction, c.val_fraction))
        if c.limit:
            for part in datalist.parts:
                datalist.parts[part] = datalist.parts[part][: c.limit]
        datalist = check_datalist(datalist)
        if datalist.problems:
            self.log(f"{len(datalist.problems)} film(s) left out:")
            for line in datalist.problems:
                self.log(f"  - {line}")
            if c.strict:
                raise TrainingError(f"{len(datalist.problems)} unusable film(s) and --strict was given", c.data,
                                    "Fix or remove the files listed above, or drop --strict.")
        if not datalist.parts["training"] or not datalist.parts["validation"]:
            raise TrainingError("no usable training or validation films", c.data,
                                "Check the layout and the problems listed above.")
        return datalist

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
        self.run.mkdir(parents=True, exist_ok=True)
        datalist = self.prepare_data()
        if main:
            _write_json(self.run / "split.json", {p: datalist.parts[p] for p in datalist.parts})

        set_determinism(c.seed)
        model = build_network(c.network, c.features).to(self.device)
        preprocessing = labelled_transforms(c.working_spacing)
        train_ds = CacheDataset(datalist.parts["training"], Compose([preprocessing, augmentation_transforms(
            (c.roi_size, c.roi_size))]), progress=False, num_workers=0)
        val_ds = CacheDataset(datalist.parts["validation"], preprocessing, progress=False, num_workers=0)
        sampler = None
        if distributed:
            sampler = torch.utils.data.distributed.DistributedSampler(train_ds, shuffle=True, seed=c.seed)
        steps_per_epoch = math.ceil(len(sampler or train_ds) / c.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=c.lr, total_steps=max(2, c.epochs * steps_per_epoch), pct_start=0.1
        )
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

        start_epoch, best, history = 1, {"val_dice": -1.0, "epoch": 0}, []
        if self.resume:
            state = torch.load(self.run / "last.pt", map_location=self.device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        if main:
            _write_json(self.run / "config.json", self._config_record(datalist, model))
            self.log(f"{datalist.source}: {len(train_ds)} training, {len(val_ds)} validation films; "
                     f"{c.network} {count_parameters(model):,} parameters on {self.device} "
                     f"({'bf16' if self.dtype else 'fp32'}), working spacing {c.working_spacing} mm, roi {c.roi_size}")

        for epoch in range(start_epoch, c.epochs + 1):
            started = time.perf_counter()
            set_determinism(c.seed + epoch)
            train_ds.transform.set_random_state(seed=c.seed + epoch)
            generator = torch.Generator().manual_seed(c.seed + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader = DataLoader(train_ds, batch_size=c.batch_size, shuffle=sampler is None, sampler=sampler,
                                generator=generator, num_workers=c.num_workers, drop_last=False)
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
                self.log(f"epoch {epoch}/{c.epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
                         f"val Dice {row['val_dice']:.4f}  IoU {row['val_iou']:.4f}  {row['seconds']:.0f}s  "
                         f"{row['images_per_s']:.1f} img/s{'  *best*' if improved else ''}")
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
            optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.dtype):
                logits = net(image)
            loss = loss_fn(logits.float(), label)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            dice, iou = dice_iou_pooled(logits.argmax(1, keepdim=True), label > 0.5)
            dices.append(dice)
            ious.append(iou)
            images += image.shape[0]
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.4f}")
        return {"train_loss": float(np.mean(losses)), "train_dice": float(np.mean(dices)),
                "train_iou": float(np.mean(ious)), "images": images}

    def evaluate_part(self, model, dataset, loss_fn) -> dict:
        """Loss, Dice and IoU (working grid, whole films, sliding window) averaged over ``dataset``."""
        model.eval()
        losses, dices, ious = [], [], []
        for item in dataset:
            image, label = item["image"][None], item["label"][None].to(self.device)
            logits = predict_logits(model, image, self.config.roi_size, self.config.overlap, self.device, self.dtype)
            losses.append(loss_fn(logits, label).item())
            dice, iou = dice_iou_pooled(logits.argmax(1, keepdim=True), label > 0.5)
            dices.append(dice)
            ious.append(iou)
        return {"loss": float(np.mean(losses)), "dice": float(np.mean(dices)), "iou": float(np.mean(ious)),
                "dice_per_film": dices}

    def _validate(self, model, val_ds, loss_fn) -> dict:
        result = self.evaluate_part(model, val_ds, loss_fn)
        return {"val_loss": result["loss"], "val_dice": result["dice"], "val_iou": result["iou"]}

    def _finish(self, model, datalist, loss_fn, history, best) -> dict:
        from medlung.training.plots import plot_curves, plot_samples

        c = self.config
        state = torch.load(self.run / "best.pt", map_location=self.device, weights_only=False)
        model.load_state_dict(state["model"])
        preprocessing = labelled_transforms(c.working_spacing)
        test = None
        if datalist.parts["test"]:
            test = self.evaluate_part(model, Dataset(datalist.parts["test"], preprocessing), loss_fn)
            test.pop("dice_per_film")
        plot_curves(self.run / "curves.png", history, test, best["epoch"])
        samples = Dataset(datalist.parts["validation"][:4], preprocessing)
        plot_samples(self.run / "samples.png", model, samples, c.roi_size, c.overlap, self.device, self.dtype)
        summary = {
            "best_epoch": best["epoch"],
            "best_val_dice": best["val_dice"],
            "test": test,
            "epochs": len(history),
            "seconds": sum(r["seconds"] for r in history),
            "images_per_s": float(np.mean([r["images_per_s"] for r in history])),
        }
        _write_json(self.run / "summary.json", summary)
        self.log(f"best val Dice {best['val_dice']:.4f} at epoch {best['epoch']}"
                 + (f"; test Dice {test['dice']:.4f} IoU {test['iou']:.4f}" if test else ""))
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
            "network": {"name": self.config.network, "features": list(self.config.features),
                        "in_channels": 1, "out_channels": 2},
            "preprocessing": {"working_spacing": self.config.working_spacing, "roi_size": self.config.roi_size,
                              "intensity_percentiles": list(INTENSITY_PERCENTILES)},
            "medlung_version": __version__,
        }
        # not write_atomically: torch names the archive inside the file after the file it saves to ("best", "last"),
        # and a random temporary name would make equal checkpoints differ
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _config_record(self, datalist: Datalist, model) -> dict:
        import monai

        return {
            **self.config.to_dict(),
            "device_used": str(self.device),
            "precision_used": "bf16" if self.dtype else "fp32",
            "world_size": self.world,
            "parameters": count_parameters(model),
            "versions": {"medlung": __version__, "monai": monai.__version__, "torch": torch.__version__,
                         "numpy": np.__version__},
            "data_summary": datalist.summary(),
            "problems": datalist.problems,
        }


def _progress(iterable, description: str, enabled: bool):
    if not enabled or os.environ.get("MEDLUNG_NO_PROGRESS"):
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
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            for row in history:
                writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                                 for k in METRIC_COLUMNS})

    write_atomically(path, write, overwrite=True)
