"""The model zoo: names, configs, JSON round trip, helpful errors."""

from __future__ import annotations

import pytest

import fastrecon
from fastrecon.errors import FastreconError, UnknownNameError
from fastrecon.registry import ModelConfig, get_config

REQUIRED = [f"{kind}-x{accel}" for kind in ("clip", "dinov2", "biomedclip", "varnet") for accel in (4, 8, 10)]


def test_required_names_registered() -> None:
    names = fastrecon.list_models()
    missing = sorted(set(REQUIRED) - set(names))
    assert not missing, f"missing from the registry: {missing}"


@pytest.mark.parametrize("name", REQUIRED)
def test_config_contents_and_json_round_trip(name: str) -> None:
    config = get_config(name)
    assert config.name == name
    assert config.num_cascades == 12
    assert config.contract.acceleration == int(name.split("-x")[1])
    assert config.weights.filename == f"{name}.safetensors"
    assert config.weights.licence
    if name.startswith("varnet"):
        assert config.family == "varnet" and config.encoder is None
    else:
        assert config.family == "vit_unrolled"
        assert config.encoder is not None and config.encoder.kind == name.split("-")[0]
        assert config.encoder.num_blocks == 6 and config.encoder.embed_dim == 768
    assert ModelConfig.from_json(config.to_json()) == config


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_config("clipx8")
    message = str(info.value)
    assert "Available:" in message and "'clip-x8'" in message
    assert isinstance(info.value, FastreconError) and isinstance(info.value, KeyError)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fastrecon; fastrecon.list_models();"
        "heavy = [m for m in ('triton', 'cupy', 'torch_tensorrt', 'tensorrt', 'open_clip', 'timm', 'onnxruntime', 'nibabel', 'pydicom') if m in sys.modules];"
        "import torch; cuda_init = torch.cuda.is_initialized();"
        "print(heavy, cuda_init); sys.exit(1 if heavy or cuda_init else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
