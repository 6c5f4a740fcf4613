"""Building a model from a checkpoint on the meta device first: same model, no random init, shapes checked first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fastrecon
from fastrecon import weights as W
from fastrecon.errors import ConfigError, InputError, InputTypeError, WeightsError
from fastrecon.models import build_empty_model, build_model
from fastrecon.models.encoders import FrozenEncoder
from fastrecon.registry import ModelConfig
from tests.helpers import masked_kspace, seed_nonzero_heads, tiny_varnet_config, tiny_vit_config


def trained_like(config: ModelConfig) -> torch.nn.Module:
    """A model whose every parameter is non-trivial (non-zero heads), in eval mode."""
    torch.manual_seed(5)
    model = build_model(config, warn_random_encoder=False)
    seed_nonzero_heads(model, seed=1)
    return model.eval()


@pytest.mark.parametrize("make_config", [tiny_vit_config, tiny_varnet_config], ids=["vit", "varnet"])
def test_meta_build_gives_the_normal_model(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config()
    model = trained_like(config)
    path = tmp_path / "model.safetensors"
    W.save_checkpoint(model, config, path)
    file_config, state = W.read_checkpoint(path)
    assert file_config == config

    built = W.build_from_checkpoint(file_config, state, source=str(path))
    assert not built.training
    tensors = dict(built.named_parameters()) | dict(built.named_buffers())
    assert tensors and not [name for name, t in tensors.items() if t.is_meta or t.device.type != "cpu"]
    # Same flags and values as the normal path, including the non-persistent encoder buffers.
    normal = dict(model.named_parameters())
    assert {n: p.requires_grad for n, p in built.named_parameters()} == {
        n: p.requires_grad for n, p in normal.items()
    }
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(dict(built.named_buffers())[name], buffer, rtol=0, atol=0)
    if isinstance(getattr(built, "encoder", None), FrozenEncoder):
        torch.testing.assert_close(built.encoder.mean.flatten(), torch.tensor(config.encoder.mean))
        assert not any(p.requires_grad for p in built.encoder.parameters())
    k, mask = masked_kspace(num=2)
    with torch.inference_mode():
        torch.testing.assert_close(built(k, mask), model(k, mask), rtol=0, atol=0)


def test_meta_build_allocates_nothing_and_checks_shapes() -> None:
    config = tiny_vit_config()
    empty = build_empty_model(config)
    assert all(t.is_meta for t in empty.state_dict().values())
    shapes = W.expected_state_shapes(config)
    real = build_model(config, warn_random_encoder=False).state_dict()
    assert shapes == {k: tuple(v.shape) for k, v in real.items()}

    state = trained_like(config).state_dict()
    key = next(k for k in state if k.endswith("head.weight"))
    wrong = dict(state) | {key: torch.zeros(3, 3)}
    with pytest.raises(WeightsError, match=r"1 shape mismatches.*head\.weight"):
        W.build_from_checkpoint(config, wrong, source="crafted")
    missing = {k: v for k, v in state.items() if k != key}
    with pytest.raises(WeightsError, match="1 missing keys"):
        W.build_from_checkpoint(config, missing)
    with pytest.raises(WeightsError, match="not tensors with data"):
        W.build_from_checkpoint(config, dict(state) | {key: torch.empty(state[key].shape, device="meta")})
    with pytest.raises(InputError, match="holds data"):
        W.build_from_checkpoint(config, state, device="meta")


def test_fp16_state_is_cast_to_the_model_dtype() -> None:
    config = tiny_varnet_config()
    state = {
        k: v.half() if v.is_floating_point() else v for k, v in trained_like(config).state_dict().items()
    }
    built = W.build_from_checkpoint(config, state)
    assert {v.dtype for v in built.state_dict().values() if v.is_floating_point()} == {torch.float32}


def test_file_whose_tensors_do_not_match_its_config_is_refused_before_reading(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    big = tiny_varnet_config()
    state = trained_like(big).state_dict()
    path = tmp_path / "liar.safetensors"
    # The config claims 40 cascades; the file holds the tensors of 2.
    lying = big.to_dict() | {"num_cascades": 40}

    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(path),
        metadata={W.CONFIG_KEY: json.dumps(lying), "format": "pt"},
    )
    with pytest.raises(WeightsError, match=r"does not hold the tensors.*missing keys.*cascades\.2\."):
        W.read_checkpoint(path)
    with pytest.raises(WeightsError, match="does not hold the tensors"):
        fastrecon.load(path, device="cpu")


@pytest.mark.parametrize("weights", [False, True, 0, 1.5, ["a.safetensors"], b"auto"])
def test_weights_argument_of_the_wrong_type(weights: object) -> None:
    with pytest.raises(InputTypeError, match="expected 'auto', the path of a weights file, or None"):
        W.locate_weights(fastrecon.get_config("demo-x8"), weights)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=repr(weights).replace("[", r"\[")):
        fastrecon.load("demo-x8", weights=weights, device="cpu")  # type: ignore[arg-type]


def test_empty_weights_string_and_bad_home(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="weights is ''"):
        W.locate_weights(fastrecon.get_config("demo-x8"), "")
    monkeypatch.setenv("FASTRECON_HOME", "~no-such-user-fastrecon/zoo")
    with pytest.raises(ConfigError, match="FASTRECON_HOME"):
        W.fastrecon_home()
    monkeypatch.setenv("FASTRECON_HOME", "")
    assert W.fastrecon_home() == Path.home() / ".cache" / "fastrecon"
