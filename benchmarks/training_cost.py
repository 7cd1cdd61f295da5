"""Training cost per step of the capacity candidates, as a ratio to the shipped model's network (#29 item 3).

One step is what ``medlung train`` does per batch: forward under autocast, the partial-label loss (with the
consistency term) on every output the network trains (the four nested outputs of a UNet++ with deep
supervision, averaged), backward and an AdamW step. Each candidate network is built from the shipped plan
with ``benchmarks/model_cost.py``'s changes (random weights: the cost does not depend on them), plus UNet++
with deep supervision; the 1.5 mm grid is left out (its window of 288 px is a larger crop, and its inference
already exceeds #29's 1.5x). The batches are random crops of ``--roi-size`` px with random masks: the cost
does not depend on their content either.

Prints per candidate the median seconds of a step over ``--steps`` steps in ``--rounds`` rounds (candidates
rotated per round, after a warm-up step each) and the ratio to the shipped network measured in the same
rounds. Run: ``python benchmarks/training_cost.py [--batch-size 8] [--roi-size 224] [--steps 3] [--rounds 3]
[--precision auto|bf16|fp32]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from model_cost import CANDIDATES  # noqa: E402


def step_function(network, plan, deep_supervision: bool, device, dtype):
    """One training step of ``network`` on a batch: returns the callable ``step(image, label, weight, own)``."""
    import torch

    from medlung.networks import DeepSupervision
    from medlung.networks.running import autocast
    from medlung.training.losses import PartialLabelLoss

    trained = DeepSupervision(network) if deep_supervision else network
    trained.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    loss_fn = PartialLabelLoss(consistency_weight=0.1, conventions=plan.conventions)

    def step(image, label, weight, own) -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            outputs = trained(image)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        loss = sum(loss_fn(o.float(), label, weight, own) for o in outputs) / len(outputs)
        loss.backward()
        optimizer.step()
        return float(loss.item())

    return step


def main(argv=None) -> int:
    import torch

    from medlung.networks import build_network, count_parameters
    from medlung.networks.loading import load_model
    from medlung.networks.running import resolve_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--roi-size", type=int, default=224, help="crop side (px), as medlung train's --roi-size")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per candidate and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = torch.device("cpu")
    dtype = resolve_precision(args.precision, device)
    shipped = load_model()[1].plan
    plans = {f"shipped ({shipped.network} {','.join(map(str, shipped.features))})": (shipped, False)}
    for name, changes in CANDIDATES.items():
        if "working_spacing" not in changes:
            plans[name] = (shipped.updated(**changes), False)
    plans["unetpp, deep supervision"] = (shipped.updated(network="unetpp"), True)

    channels = shipped.out_channels
    size = (args.batch_size, channels, args.roi_size, args.roi_size)
    image = torch.randn(args.batch_size, 1, args.roi_size, args.roi_size)
    label = (torch.rand(size) > 0.5).float()
    weight = torch.ones(size)
    own = torch.ones(args.batch_size, channels)

    steps, parameters = {}, {}
    for name, (plan, deep) in plans.items():
        network = build_network(**plan.network_def())
        parameters[name] = count_parameters(network)
        steps[name] = step_function(network, plan, deep, device, dtype)
        steps[name](image, label, weight, own)  # warm up
    seconds: dict = {name: [] for name in plans}
    names = list(plans)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            for _ in range(args.steps):
                start = time.perf_counter()
                steps[name](image, label, weight, own)
                seconds[name].append(time.perf_counter() - start)
    reference = statistics.median(seconds[names[0]])
    precision = "bf16" if dtype is not None else "fp32"
    print(
        f"batch {args.batch_size} x {args.roi_size} px, {precision}, {args.steps} steps x {args.rounds} rounds; "
        f"median seconds per step and ratio to {names[0]}"
    )
    print(f"{'network':45s} {'params':>10s} {'step s':>7s} {'ratio':>6s}")
    for name in names:
        median = statistics.median(seconds[name])
        print(f"{name:45s} {parameters[name]:10,d} {median:7.3f} {median / reference:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
