"""Starting a training run from an earlier model's weights (``medlung train --init MODEL``)."""

from __future__ import annotations

import torch

from medlung.plans import ModelPlan


def warm_start(model: torch.nn.Module, plan: ModelPlan, source) -> str:
    """Copy the weights of the model at ``source`` into ``model`` (built for ``plan``).

    Every tensor of matching name and shape is copied. When ``source`` is a
    background/lung softmax model and ``plan`` has a sigmoid head, each
    convention channel of the final 1x1 convolution starts as the softmax
    model's lung-minus-background logit, so the new model begins by drawing
    what the old one drew (``sigmoid(l1 - l0) == softmax(l)[1]``).

    Parameters
    ----------
    model : torch.nn.Module
        The new network.
    plan : ModelPlan
        Its plan.
    source : str or Path
        Bundle folder, run folder or checkpoint.

    Returns
    -------
    str
        One line saying what was copied.
    """
    from medlung.networks.loading import load_model

    old_model, spec = load_model(source, "cpu")
    old_plan = spec.plan
    if (old_plan.network, old_plan.features) != (plan.network, plan.features):
        raise ValueError(
            f"--init model is {old_plan.network} {list(old_plan.features)}, but this run trains "
            f"{plan.network} {list(plan.features)}; give matching --network/--features."
        )
    old_state, new_state = old_model.state_dict(), model.state_dict()
    head_change = old_plan.head == "softmax" and plan.head == "sigmoid"
    copied, converted = 0, []
    for name, tensor in new_state.items():
        old = old_state.get(name)
        if old is None:
            continue
        if (
            head_change
            and old.shape[0] == old_plan.out_channels
            and tensor.shape[0] == plan.out_channels
            and old.shape[1:] == tensor.shape[1:]
        ):
            # the output layer (the only one as narrow as the classes): lung minus background per convention
            margin = old[1] - old[0]
            new_state[name] = margin.expand(plan.out_channels, *margin.shape).clone()
            converted.append(name)
        elif old.shape == tensor.shape:
            new_state[name] = old.clone()
            copied += 1
    model.load_state_dict(new_state)
    extra = f"; {', '.join(converted)} from the lung-minus-background logit" if converted else ""
    return f"weights from {spec.version} ({copied} tensors copied{extra})"
