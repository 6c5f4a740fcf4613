"""ViT-prior denoiser: identity at init, positive homogeneity, percentile scale, fusion, size."""

from __future__ import annotations

import dataclasses
from typing import cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastrecon.errors import InputError, InputTypeError
from fastrecon.models.denoiser import LayerFusion, ViTDenoiser
from fastrecon.models.encoders import FrozenEncoder, build_encoder
from fastrecon.registry import CLIP_B16, DINOV2_B14, TINY_DEMO_ENCODER, DecoderConfig

SMALL = DecoderConfig(channels=(32, 16, 16, 8), input_channels=8)
VIT_B_CHANNELS = (1280, 320, 160, 64)  # proposed DecoderConfig.channels default


@pytest.fixture(scope="module")
def encoder() -> FrozenEncoder:
    torch.manual_seed(11)
    return build_encoder(TINY_DEMO_ENCODER)


def _denoiser(randomise_head: bool = True, decoder: DecoderConfig = SMALL) -> ViTDenoiser:
    denoiser = ViTDenoiser(TINY_DEMO_ENCODER, decoder)
    if randomise_head:
        torch.nn.init.normal_(denoiser.head.weight, std=0.5)
        torch.nn.init.normal_(cast(torch.Tensor, denoiser.head.bias), std=0.5)
    return denoiser.eval()


def _image(n: int = 2, h: int = 37, w: int = 50) -> torch.Tensor:
    return torch.randn(n, h, w, dtype=torch.complex64)


def test_zero_head_is_exact_identity(encoder: FrozenEncoder) -> None:
    denoiser = _denoiser(randomise_head=False)
    x = _image()
    with torch.no_grad():
        assert torch.equal(denoiser.correction(x, encoder), torch.zeros_like(x))
        assert torch.equal(denoiser(x, encoder), x)


@pytest.mark.parametrize("a", [0.37, 4.0, 1234.5])
def test_positive_homogeneity(encoder: FrozenEncoder, a: float) -> None:
    denoiser = _denoiser()
    x = _image()
    with torch.no_grad():
        c = denoiser.correction(x, encoder)
        c_scaled = denoiser.correction(a * x, encoder)
        d, d_scaled = denoiser(x, encoder), denoiser(a * x, encoder)
    # Not trivially zero: the correction is of the order of the image.
    assert float(c.abs().mean()) > 0.05 * float(x.abs().mean())
    # Exact in real arithmetic; in fp32 the encoder input |a x| / (a p) differs from |x| / p by
    # rounding (~1e-7 relative), which the network amplifies to ~2e-6 of the output's maximum
    # (measured for a in 3e-7 .. 1e6). Allow 10x that.
    tol = 2e-5 * a * float(c.abs().max())
    torch.testing.assert_close(c_scaled, a * c, rtol=0, atol=tol)
    torch.testing.assert_close(d_scaled, a * d, rtol=0, atol=tol)


def test_power_of_two_scaling_is_bitwise(encoder: FrozenEncoder) -> None:
    denoiser = _denoiser()
    x = _image()
    with torch.no_grad():
        assert torch.equal(denoiser.correction(8.0 * x, encoder), 8.0 * denoiser.correction(x, encoder))


def test_samples_are_independent(encoder: FrozenEncoder) -> None:
    """Per-sample scale and InstanceNorm: a sample's output does not depend on its batch mates."""
    denoiser = _denoiser()
    x = _image(n=2)
    batch = torch.stack([x[0], 100.0 * x[1]])
    with torch.no_grad():
        together = denoiser.correction(batch, encoder)
        alone = torch.cat([denoiser.correction(batch[i : i + 1], encoder) for i in range(2)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5 * float(alone.abs().max()))


@pytest.mark.parametrize("percentile", [99.5, 50.0, 100.0, 0.1])
def test_scale_is_the_numpy_percentile(percentile: float) -> None:
    denoiser = ViTDenoiser(TINY_DEMO_ENCODER, dataclasses.replace(SMALL, percentile=percentile))
    magnitude = torch.rand(3, 33, 20) ** 3
    want = np.percentile(magnitude.flatten(1).double().numpy(), percentile, axis=1)
    torch.testing.assert_close(denoiser.scale(magnitude).double(), torch.from_numpy(want), rtol=1e-6, atol=0)


def test_scale_guards_zero(encoder: FrozenEncoder) -> None:
    denoiser = _denoiser()
    sparse = torch.zeros(1, 40, 40)
    sparse[0, 3, 4] = 2.5  # 1 pixel in 1600: the 99.5th percentile is 0, the maximum is used
    zeros = torch.zeros(1, 40, 40)
    assert denoiser.scale(sparse).tolist() == [2.5]
    assert denoiser.scale(zeros).tolist() == [1.0]
    with torch.no_grad():
        out = denoiser(torch.zeros(1, 40, 40, dtype=torch.complex64), encoder)
    assert bool(torch.isfinite(torch.view_as_real(out)).all())


def test_layer_fusion_matches_manual_softmax_of_layernorms() -> None:
    fusion = LayerFusion(num_layers=3, dim=8)
    features = [torch.randn(2, 8, 4, 4) * (i + 1) + i for i in range(3)]

    def manual() -> torch.Tensor:
        normed = [F.layer_norm(f.permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2) for f in features]
        weights = torch.softmax(fusion.logits.detach(), 0)
        return sum((w * n for w, n in zip(weights, normed, strict=True)), torch.zeros(2, 8, 4, 4))

    fused, normed = fusion(features)
    torch.testing.assert_close(fused, manual())  # zero logits: the plain mean
    torch.testing.assert_close(fused, torch.stack(normed).mean(0))
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([2.0, -1.0, 0.5]))
    fused, _ = fusion(features)
    torch.testing.assert_close(fused, manual())
    with pytest.raises(InputError, match="built for 3 x 8"):
        fusion(features[:2])


def test_output_keeps_native_size_and_dtype(encoder: FrozenEncoder) -> None:
    denoiser = _denoiser()
    for h, w in [(37, 50), (128, 128), (200, 96)]:
        with torch.no_grad():
            out = denoiser(_image(1, h, w), encoder)
        assert out.shape == (1, h, w) and out.dtype == torch.complex64


def test_bad_inputs_raise(encoder: FrozenEncoder) -> None:
    denoiser = _denoiser()
    with pytest.raises(InputTypeError, match="complex"):
        denoiser(torch.randn(1, 32, 32), encoder)
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        denoiser(_image(1)[None], encoder)
    other = ViTDenoiser(CLIP_B16, SMALL)
    with pytest.raises(InputError, match="built for 6 x 768"):
        other(_image(1), encoder)
    with pytest.raises(InputError, match="skip layer 6"):
        ViTDenoiser(TINY_DEMO_ENCODER, dataclasses.replace(SMALL, skip_layers=(6, 4, 3)))
    with pytest.raises(InputError, match="percentile"):
        ViTDenoiser(TINY_DEMO_ENCODER, dataclasses.replace(SMALL, percentile=0.0))


def _expected_params(
    dim: int, channels: tuple[int, int, int, int], input_channels: int, layers: int = 6
) -> int:
    """Trainable parameters of one denoiser, counted by hand from the architecture."""
    c1, c2, c3, c4 = channels

    def ds(cin: int, cout: int) -> int:  # depthwise 3x3 + pointwise 1x1, no biases
        return 9 * cin + cin * cout

    fusion = layers * 2 * dim + layers
    skips = sum(dim * c + c for c in (c1, c2, c3))
    stages = ds(dim + c1, c1) + ds(c1 + c2, c2) + ds(c2 + c3, c3) + ds(c3, c4)
    input_conv = 2 * 9 * input_channels + input_channels
    return fusion + skips + stages + input_conv + ds(c4 + input_channels, c4) + (2 * c4 + 2)


@pytest.mark.parametrize("config", [CLIP_B16, DINOV2_B14], ids=["clip", "dinov2"])
def test_vit_b_trainable_parameters_per_cascade(config: object) -> None:
    decoder = DecoderConfig(channels=VIT_B_CHANNELS)
    denoiser = ViTDenoiser(config, decoder)  # type: ignore[arg-type]
    count = sum(p.numel() for p in denoiser.parameters() if p.requires_grad)
    assert count == _expected_params(768, VIT_B_CHANNELS, decoder.input_channels)
    # Paper: ~56 M trainable for 12 cascades (+ the ~0.48 M sensitivity U-Net) -> ~4.63 M each.
    # Tolerance 3 %: the paper rounds, and its decoder widths are not published.
    assert abs(count - 4.67e6) <= 0.03 * 4.67e6, count
