"""MONAI's own bundle checks, offline: verify_metadata, verify_net_in_out, ckpt_export; TorchScript = eager."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out
from monai.data import load_net_with_metadata

from medlung.bundle.schema import schema_md5
from medlung.networks import build_network
from tests.bundle.conftest import bundle_cli


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(params=["shipped", pytest.param("tiny", marks=pytest.mark.slow)])  # tiny: a training run
def bundle(request, shipped_bundle):
    # the tiny bundle only when asked for: asking for it trains (it is session-scoped, so once per run)
    return shipped_bundle if request.param == "shipped" else request.getfixturevalue("tiny_bundle")


def test_verify_metadata_passes_offline_against_the_shipped_schema(bundle, no_network):
    configs = bundle / "configs"
    assert json.loads((configs / "metadata.json").read_text())["schema"].startswith("https://")  # never fetched
    verify_metadata(
        meta_file=str(configs / "metadata.json"), filepath=str(configs / "schema.json"), hash_val=schema_md5()
    )


@pytest.mark.slow  # a python -m monai.bundle subprocess
def test_verify_metadata_command_line_offline(shipped_bundle, tmp_path):
    # a proxy that does not exist: any download attempt would fail the command
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    configs = shipped_bundle / "configs"
    result = bundle_cli(
        "verify_metadata", "--meta_file", configs / "metadata.json", "--filepath", configs / "schema.json", env=offline
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped downloading" in result.stderr + result.stdout
    assert "metadata is verified with no error" in result.stderr + result.stdout


def test_verify_metadata_rejects_incomplete_metadata(shipped_bundle, tmp_path, no_network):
    meta = json.loads((shipped_bundle / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=str(broken), filepath=str(shipped_bundle / "configs" / "schema.json"))


def test_verify_net_in_out(bundle):
    configs = bundle / "configs"
    for n in (1, 4):  # 32x32 and 128x128 inputs
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(configs / "metadata.json"),
            config_file=str(configs / "inference.json"),
            device="cpu",
            n=n,
        )


def test_shipped_torchscript_matches_the_state_dict(bundle):
    ts, meta, extra = load_net_with_metadata(
        str(bundle / "models" / "model.ts"), map_location="cpu", more_extra_files=("inference.json",)
    )
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert meta["version"] == json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert json.loads(extra["inference.json"]) == inference
    net = build_network(**{k: v for k, v in inference["network_def"].items() if k != "_target_"})
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    image = torch.rand(
        2, 1, inference["roi_size"], inference["roi_size"] + 16, generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        eager, scripted = net(image), ts.eval()(image)
    assert torch.allclose(eager, scripted, atol=1e-4, rtol=1e-4)


def test_ckpt_export_reproduces_model_ts(bundle, tmp_path):
    configs = bundle / "configs"
    target = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(target),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(bundle),
    )
    rebuilt, rebuilt_meta, rebuilt_extra = load_net_with_metadata(
        str(target), map_location="cpu", more_extra_files=("inference.json",)
    )
    shipped, shipped_meta, shipped_extra = load_net_with_metadata(
        str(bundle / "models" / "model.ts"), map_location="cpu", more_extra_files=("inference.json",)
    )
    assert rebuilt_meta == shipped_meta
    assert json.loads(rebuilt_extra["inference.json"]) == json.loads(shipped_extra["inference.json"])
    image = torch.rand(1, 1, 96, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(image), shipped.eval()(image), atol=1e-5, rtol=1e-5)


def test_model_zoo_verify_bundle_checks(bundle, tmp_path, no_network):
    """The steps of the MONAI model zoo's ``ci/verify_bundle.py`` (full mode), in its order, offline.

    Directory (configs/metadata.json), version listed in the changelog, metadata against the schema,
    ``verify_net_in_out`` on ``network_def`` of configs/inference.json, TorchScript export of models/model.pt
    with ``ckpt_export``, and the shipped models/model.ts loads.
    """
    configs = bundle / "configs"
    meta = json.loads((configs / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    verify_metadata(
        meta_file=str(configs / "metadata.json"), filepath=str(configs / "schema.json"), hash_val=schema_md5()
    )
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(bundle),
        device="cpu",
    )
    exported = tmp_path / "verify_model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(bundle),
    )
    scripted = torch.jit.load(str(exported), map_location="cpu").eval()
    shipped = torch.jit.load(str(bundle / "models" / "model.ts"), map_location="cpu").eval()
    network = json.loads((configs / "inference.json").read_text())["network_def"]
    channels = meta["network_data_format"]["outputs"]["pred"]["num_channels"]
    assert channels == network["out_channels"] == len(meta["network_data_format"]["outputs"]["pred"]["channel_def"])
    image = torch.rand(1, network["in_channels"], 64, 96, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        assert scripted(image).shape == shipped(image).shape == (1, channels, 64, 96)
