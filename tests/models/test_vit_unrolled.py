"""The ViT-prior unrolled network with the tiny demo encoder: identity at init, training keeps the encoder frozen."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models import build_model
from fastrecon.models.encoders import FrozenEncoder
from fastrecon.models.vit_unrolled import ViTCascade, ViTUnrolledNet
from fastrecon.physics import fft2c, ifft2c, rss
from fastrecon.registry import TINY_DEMO_ENCODER, DecoderConfig, InputContract, ModelConfig, WeightsInfo

CONFIG = ModelConfig(
    name="tiny-test",
    family="vit_unrolled",
    contract=InputContract(acceleration=4),
    weights=WeightsInfo(filename="tiny-test.safetensors"),
    num_cascades=3,
    encoder=TINY_DEMO_ENCODER,
    decoder=DecoderConfig(channels=(32, 16, 16, 8), input_channels=8),
)


def _kspace(n: int = 2, coils: int = 4, h: int = 40, w: int = 34) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked multicoil k-space of a smooth complex phantom and its 1-D column mask."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = torch.stack(
        [torch.exp(-((x - 0.2 * i) ** 2 + y**2) / 0.2) * torch.exp(1j * (x + i * y)) for i in range(n)]
    )
    centres = torch.linspace(-1, 1, coils)
    sens = torch.stack(
        [torch.exp(-((x - c) ** 2 + (y + c) ** 2) / 1.5) * torch.exp(1j * c * y) for c in centres]
    )
    kspace = fft2c(sens.unsqueeze(0) * image.unsqueeze(1)).to(torch.complex64)
    mask = torch.zeros(w, dtype=torch.bool)
    mask[::3] = True
    mask[w // 2 - 4 : w // 2 + 4] = True
    return kspace * mask, mask


def _cascades(model: ViTUnrolledNet) -> list[ViTCascade]:
    cascades = [c for c in model.cascades if isinstance(c, ViTCascade)]
    assert len(cascades) == len(model.cascades)
    return cascades


def _randomise_heads(model: ViTUnrolledNet, std: float = 0.05) -> None:
    with torch.no_grad():
        for cascade in _cascades(model):
            torch.nn.init.normal_(cascade.denoiser.head.weight, std=std)


@pytest.fixture
def model() -> ViTUnrolledNet:
    net = build_model(CONFIG)
    assert isinstance(net, ViTUnrolledNet)
    return net


def test_structure_one_shared_encoder(model: ViTUnrolledNet) -> None:
    assert len(model.cascades) == 3 and all(isinstance(c, ViTCascade) for c in model.cascades)
    assert (
        isinstance(model.encoder, FrozenEncoder)
        and model.encoder_call() is not None
        and not model.features_replaced
    )
    assert model.encoder.is_pruned
    encoders = [m for m in model.modules() if isinstance(m, FrozenEncoder)]
    assert encoders == [model.encoder]
    keys = model.state_dict().keys()
    assert not any(".encoder." in k for k in keys if k.startswith("cascades."))
    assert [k for k in keys if "dc_weight" in k] == [f"cascades.{i}.dc_weight" for i in range(3)]
    for cascade in _cascades(model):
        torch.testing.assert_close(cascade.dc_weight.detach(), torch.ones(1))


def test_trainable_parameters_exclude_the_encoder(model: ViTUnrolledNet) -> None:
    per_cascade = sum(p.numel() for p in _cascades(model)[0].parameters())
    sens = sum(p.numel() for p in model.sens_net.parameters())
    assert model.trainable_parameters() == 3 * per_cascade + sens
    total = sum(p.numel() for p in model.parameters())
    assert total - model.trainable_parameters() == sum(p.numel() for p in model.encoder.parameters()) > 0


def test_untrained_model_returns_the_zero_filled_rss(model: ViTUnrolledNet) -> None:
    kspace0, mask = _kspace()
    with torch.no_grad():
        out = model(kspace0, mask)
    # Zero heads: no correction; k0 is consistent with itself, so every cascade returns k0.
    torch.testing.assert_close(out, rss(ifft2c(kspace0), dim=1), rtol=0, atol=0)


def test_random_heads_change_the_output(model: ViTUnrolledNet) -> None:
    kspace0, mask = _kspace()
    _randomise_heads(model)
    with torch.no_grad():
        out = model(kspace0, mask)
    zero_filled = rss(ifft2c(kspace0), dim=1)
    assert out.shape == zero_filled.shape and bool(torch.isfinite(out).all())
    assert float((out - zero_filled).norm() / zero_filled.norm()) > 1e-2


def test_train_mode_keeps_the_encoder_in_eval(model: ViTUnrolledNet) -> None:
    model.train()
    assert model.training and _cascades(model)[0].denoiser.training and model.sens_net.training
    assert not any(m.training for m in model.encoder.modules())
    model.eval()
    model.train(True)
    assert not model.encoder.training


def test_optimizer_step_updates_decoders_not_encoder(model: ViTUnrolledNet) -> None:
    kspace0, mask = _kspace()
    _randomise_heads(model)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    cascades = _cascades(model)
    stage_weight = dict(cascades[0].denoiser.named_parameters())["stages.0.1.weight"]  # first pointwise conv
    stage_before = stage_weight.detach().clone()
    dc_before = cascades[1].dc_weight.detach().clone()
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    target = rss(ifft2c(kspace0), dim=1) * 1.1
    loss = (model(kspace0, mask) - target).pow(2).mean()
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    optimizer.step()
    assert not torch.equal(stage_weight.detach(), stage_before)
    assert not torch.equal(cascades[1].dc_weight.detach(), dc_before)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key


def test_from_config_rejects_other_families() -> None:
    with pytest.raises(InputError, match="not a ViT-prior model"):
        ViTUnrolledNet.from_config(dataclasses.replace(CONFIG, family="varnet"))
    with pytest.raises(InputError, match="not a ViT-prior model"):
        ViTUnrolledNet.from_config(dataclasses.replace(CONFIG, decoder=None))


def test_cascade_needs_the_shared_encoder(model: ViTUnrolledNet) -> None:
    with pytest.raises(InputTypeError, match="encoder call"):
        _cascades(model)[0].correction(torch.zeros(1, 8, 8, dtype=torch.complex64), None)
