"""Device, precision and sliding-window logits shared by training and inference."""

from __future__ import annotations

import pytest
import torch

from medlung.networks import build_network
from medlung.networks.running import DeviceError, predict_logits, resolve_device, resolve_precision


def test_auto_device_is_cuda_only_when_available():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_one_line_error():
    with pytest.raises(DeviceError, match=r"^CUDA was asked for but no CUDA device is available\. Use --device cpu\.$"):
        resolve_device("cuda")


def test_precision_names():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (None, torch.bfloat16)


@pytest.mark.parametrize("shape", [(1, 1, 40, 56), (2, 1, 70, 33)])
def test_sliding_window_covers_films_of_any_size_with_two_float32_channels(shape):
    torch.manual_seed(0)
    model = build_network("basicunet", (4, 4, 8, 8, 16, 4)).eval()
    image = torch.rand(shape)
    logits = predict_logits(model, image, 32, 0.25, torch.device("cpu"), None)
    assert logits.shape == (shape[0], 2, *shape[2:]) and logits.dtype == torch.float32
    # a film smaller than the window in one axis is padded, not cropped; one window equals a direct call
    whole = predict_logits(model, image[..., :32, :32], 32, 0.25, torch.device("cpu"), None)
    with torch.no_grad():
        direct = model(image[..., :32, :32])
    torch.testing.assert_close(whole, direct, atol=1e-5, rtol=1e-4)
