"""Average the weights of two models of the same plan into a new run folder (weight-space ensembling).

A model fine-tuned for new hospitals and the model it started from lie in one basin of the loss;
their weighted average (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022:
WiSE-FT) often keeps what the start knew in its own domain and most of what fine-tuning added. This
script writes ``OUT`` as a copy of training run ``RUN`` whose ``best.pt`` holds
``alpha * RUN + (1 - alpha) * OTHER`` (``OTHER``: a bundle, run folder or checkpoint of the same network),
so ``medlung evaluate``, ``medlung export`` and the Segmenter read it like any run. Choose ``alpha`` on
validation films, never on test films. ``OUT/averaged.json`` records the inputs. Usage::

    python scripts/average_weights.py runs/m3a/run runs/bundle_2.0.0 --alpha 0.7 -o runs/m3a_wise70
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def averaged_state(first: dict, second: dict, alpha: float) -> dict:
    """``alpha * first + (1 - alpha) * second`` for floating tensors; others (counters) from ``first``."""
    if set(first) != set(second):
        raise ValueError("the two models have different tensors; give models of the same network and widths.")
    out = {}
    for name, tensor in first.items():
        other = second[name]
        if tensor.shape != other.shape:
            raise ValueError(f"{name}: shapes {tuple(tensor.shape)} and {tuple(other.shape)} differ.")
        out[name] = alpha * tensor + (1 - alpha) * other if tensor.is_floating_point() else tensor.clone()
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from medlung.networks.loading import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (its best.pt, config, split are kept)")
    parser.add_argument("other", type=Path, help="bundle, run folder or checkpoint of the same network")
    parser.add_argument("--alpha", type=float, required=True, help="weight of RUN, 0-1")
    parser.add_argument("-o", "--output", type=Path, required=True, help="new run folder (must not exist)")
    args = parser.parse_args(argv)
    if not 0 <= args.alpha <= 1:
        parser.error("--alpha must be between 0 and 1")
    if args.output.exists():
        parser.error(f"{args.output} exists; give a new folder")
    state = torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)
    other, spec = load_model(args.other, "cpu")
    state["model"] = averaged_state(state["model"], other.state_dict(), args.alpha)
    args.output.mkdir(parents=True)
    for name in ("config.json", "split.json", "metrics.csv", "summary.json", "curves.png", "curves_groups.png"):
        if (args.run / name).is_file():
            shutil.copyfile(args.run / name, args.output / name)
    torch.save(state, args.output / "best.pt")
    record = {"run": str(args.run.resolve()), "other": str(args.other.resolve()), "other_version": spec.version}
    (args.output / "averaged.json").write_text(json.dumps({**record, "alpha": args.alpha}, indent=2) + "\n")
    print(f"{args.output}: {args.alpha:g} x {args.run} + {1 - args.alpha:g} x {args.other} ({spec.version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
