"""Frozen ViT encoders: blocks 0..5 only, pruning, preprocessing, local weights, no gradient.

One full-size random-init ViT-B per registered encoder kind (batch 1). Nothing is downloaded:
weights files are written by the tests themselves.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fastrecon.errors import InputError, WeightsError
from fastrecon.models.denoiser import ViTDenoiser
from fastrecon.models.encoders import FrozenEncoder, build_encoder, load_encoder_weights
from fastrecon.registry import (
    BIOMEDCLIP_B16,
    CLIP_B16,
    DINOV2_B14,
    TINY_DEMO_ENCODER,
    DecoderConfig,
    EncoderConfig,
)

VIT_B = {"clip": CLIP_B16, "dinov2": DINOV2_B14, "biomedclip": BIOMEDCLIP_B16}
GRID = {"clip": 14, "dinov2": 16, "biomedclip": 14}
# Keys that must not survive pruning: blocks 6..11, final norms, heads.
PRUNED_KEY = re.compile(r"(resblocks|blocks)\.([6-9]|1[01])\.|^ln_post\.|^proj$|^norm\.|^fc_norm\.|^head\.")
# The gradient test is about the encoder: a narrow decoder keeps it fast.
SMALL_DECODER = DecoderConfig(channels=(64, 32, 16, 8), input_channels=8)


def _magnitude(batch: int = 1, height: int = 40, width: int = 36) -> torch.Tensor:
    return torch.rand(batch, 1, height, width)


def _run_with_hooks(
    encoder: FrozenEncoder, x: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], list[int], list[torch.Tensor]]:
    """Features, number of calls per block and each block's last output."""
    calls = [0] * len(encoder.blocks)
    outputs: list[torch.Tensor] = [torch.empty(0)] * len(encoder.blocks)
    handles = []
    for i, block in enumerate(encoder.blocks):

        def hook(module: torch.nn.Module, args: object, output: torch.Tensor, i: int = i) -> None:
            calls[i] += 1
            outputs[i] = output.detach()

        handles.append(block.register_forward_hook(hook))
    try:
        with torch.no_grad():
            features = encoder(x)
    finally:
        for handle in handles:
            handle.remove()
    return features, calls, outputs


@pytest.fixture(scope="module", params=list(VIT_B))
def full_encoder(request: pytest.FixtureRequest) -> tuple[str, FrozenEncoder]:
    """An unpruned random-init ViT-B (all 12 blocks kept) per kind; tests must not modify it."""
    torch.manual_seed(123)
    return request.param, build_encoder(VIT_B[request.param], prune=False)


def test_unpruned_runs_blocks_0_to_5_once_and_never_6_to_11(full_encoder: tuple[str, FrozenEncoder]) -> None:
    kind, encoder = full_encoder
    assert len(encoder.blocks) == 12 and not encoder.is_pruned
    features, calls, outputs = _run_with_hooks(encoder, _magnitude())
    assert calls == [1] * 6 + [0] * 6
    g = GRID[kind]
    assert [tuple(f.shape) for f in features] == [(1, 768, g, g)] * 6
    # Feature i is block i's output with the class token dropped, laid out as (B, D, g, g).
    for i, feature in enumerate(features):
        tokens = outputs[i][:, 1:]  # both libraries run batch-first here
        assert tokens.shape == (1, g * g, 768)
        torch.testing.assert_close(feature, tokens.transpose(1, 2).reshape(1, 768, g, g), rtol=0, atol=0)
    # Consecutive blocks differ: not the same tensor returned six times.
    assert not torch.allclose(features[0], features[5])


def test_pruned_keeps_six_blocks_same_features_and_round_trips(
    full_encoder: tuple[str, FrozenEncoder], tmp_path: Path
) -> None:
    _, encoder = full_encoder
    x = _magnitude()
    with torch.no_grad():
        reference = encoder(x)
    pruned = copy.deepcopy(encoder).prune()
    assert pruned.is_pruned and len(pruned.blocks) == 6
    state = pruned.backbone.state_dict()
    assert [k for k in state if PRUNED_KEY.search(k)] == []
    assert sum(p.numel() for p in pruned.parameters()) < 0.55 * sum(p.numel() for p in encoder.parameters())
    features, calls, _ = _run_with_hooks(pruned, x)
    assert calls == [1] * 6
    for got, want in zip(features, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    # The pruned encoder's own state dict (what a self-contained checkpoint stores) loads back.
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with torch.no_grad():
        for p in pruned.parameters():
            p.add_(torch.randn_like(p))
        perturbed = pruned(x)
        load_encoder_weights(pruned, path)
        restored = pruned(x)
    assert not torch.allclose(perturbed[5], reference[5])
    for got, want in zip(restored, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _library_checkpoint(kind: str, encoder: FrozenEncoder, directory: Path) -> Path:
    """Write the encoder's full weights the way the library's own checkpoints lay them out."""
    state = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    if kind == "clip":  # a full open_clip CLIP state dict: visual.* plus the text tower
        full = {f"visual.{k}": v for k, v in state.items()}
        full.update({"logit_scale": torch.tensor(4.6), "token_embedding.weight": torch.randn(10, 512)})
        path = directory / "open_clip_pytorch_model.bin"
        torch.save(full, path)
    elif kind == "biomedclip":  # open_clip's BiomedCLIP: timm trunk under visual.trunk., projection apart
        full = {f"visual.trunk.{k}": v for k, v in state.items()}
        full.update(
            {"visual.head.proj.weight": torch.randn(512, 768), "text.proj.0.weight": torch.randn(4, 4)}
        )
        path = directory / "open_clip_pytorch_model.bin"
        torch.save(full, path)
    else:  # a plain timm state dict
        path = directory / "model.safetensors"
        save_file(state, str(path))
    return path


def test_weights_round_trip_from_a_library_checkpoint(
    full_encoder: tuple[str, FrozenEncoder], tmp_path: Path
) -> None:
    kind, encoder = full_encoder
    path = _library_checkpoint(kind, encoder, tmp_path)
    torch.manual_seed(7)  # a different random init, overwritten by the file
    loaded = build_encoder(VIT_B[kind], weights=path)
    assert loaded.is_pruned
    x = _magnitude()
    with torch.no_grad():
        want, got = encoder(x), loaded(x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_backward_through_denoiser_reaches_decoder_and_input_not_encoder(
    full_encoder: tuple[str, FrozenEncoder],
) -> None:
    kind, full = full_encoder
    encoder = copy.deepcopy(full).prune()
    denoiser = ViTDenoiser(VIT_B[kind], SMALL_DECODER)
    torch.nn.init.normal_(denoiser.head.weight, std=0.1)  # a zero head would stop gradients upstream
    image = torch.randn(1, 40, 36, dtype=torch.complex64, requires_grad=True)
    torch.view_as_real(denoiser(image, encoder)).pow(2).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    assert image.grad is not None and bool(image.grad.abs().sum() > 0)
    for name, p in denoiser.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0), name


# --- small encoder: preprocessing, mode, errors ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> FrozenEncoder:
    return build_encoder(TINY_DEMO_ENCODER)


def test_random_init_warns_unless_silenced() -> None:
    with pytest.warns(UserWarning, match="random-initialised"):
        build_encoder(TINY_DEMO_ENCODER)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_encoder(TINY_DEMO_ENCODER, warn_random=False)


def test_preprocess_repeats_resizes_and_normalises(tiny: FrozenEncoder) -> None:
    cfg = TINY_DEMO_ENCODER
    constant = torch.full((2, 1, 37, 50), 0.25)
    pixels = tiny.preprocess(constant)
    assert pixels.shape == (2, 3, cfg.img_size, cfg.img_size)
    for c in range(3):
        want = (0.25 - cfg.mean[c]) / cfg.std[c]
        torch.testing.assert_close(pixels[:, c], torch.full_like(pixels[:, c], want))
    # A ramp survives the bilinear resize as a ramp: corners keep their order, values stay within range.
    ramp = torch.linspace(0, 1, 50).expand(1, 1, 37, 50)
    red = tiny.preprocess(ramp)[0, 0] * cfg.std[0] + cfg.mean[0]
    assert (
        bool((red[:, 1:] >= red[:, :-1] - 1e-6).all())
        and float(red.min()) >= 0
        and float(red.max()) <= 1 + 1e-6
    )


def test_preprocess_rejects_bad_input(tiny: FrozenEncoder) -> None:
    with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
        tiny(torch.rand(1, 3, 32, 32))
    with pytest.raises(InputError, match="real floating-point"):
        tiny(torch.rand(1, 1, 32, 32, dtype=torch.float32).to(torch.complex64))


def test_encoder_stays_frozen_and_in_eval(tiny: FrozenEncoder) -> None:
    encoder = copy.deepcopy(tiny)
    encoder.train()
    assert not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    parent = torch.nn.Sequential(encoder)
    parent.train()
    assert parent.training and not encoder.training and not any(m.training for m in encoder.modules())


def test_unknown_source_and_too_many_blocks_are_rejected() -> None:
    from fastrecon.errors import UnknownNameError

    bad = EncoderConfig(kind="tiny", source="keras", arch="x", pretrained=None)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="open_clip, timm"):
        build_encoder(bad)
    too_deep = dataclasses.replace(TINY_DEMO_ENCODER, num_blocks=7)
    with pytest.raises(InputError, match="num_blocks=7"):
        build_encoder(too_deep)


def test_bad_weights_files_raise_weights_error(tiny: FrozenEncoder, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_encoder_weights(tiny, tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_encoder_weights(tiny, garbage)
    partial = {k: v for k, v in tiny.backbone.state_dict().items() if not k.startswith("blocks.5.")}
    partial["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in partial.items()}, str(path))
    with pytest.raises(
        WeightsError, match=r"missing \d+ keys \['blocks\.5\..*unexpected 1 keys \['extra\.weight'\]"
    ):
        load_encoder_weights(tiny, path)
    wrong = {k: v.contiguous() for k, v in tiny.backbone.state_dict().items()}
    wrong["cls_token"] = torch.zeros(1, 1, 7)
    save_file(wrong, str(path))
    with pytest.raises(WeightsError, match="cls_token"):
        load_encoder_weights(tiny, path)


def test_pretrained_needs_a_tag() -> None:
    with pytest.raises(WeightsError, match="no published weights tag"):
        build_encoder(TINY_DEMO_ENCODER, weights="pretrained")
