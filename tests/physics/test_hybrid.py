"""The hybrid-space and residual DC forms equal the 2-D form (float64 oracle) and refuse what they cannot run."""

from __future__ import annotations

import pytest
import torch

import fastrecon
from fastrecon import parity
from fastrecon.errors import BackendUnavailableError, InputError
from fastrecon.physics import fft2c
from fastrecon.physics.hybrid import AUTO_HYBRID, HYBRID, RESIDUAL, HybridPlan
from fastrecon.physics.plan import KSPACE_2D, KSpacePlan
from tests.helpers import load_unregistered, masked_kspace, tiny_varnet_config


def _column_masks(num: int, width: int, accel: int | None, acs: int, gen: torch.Generator) -> torch.Tensor:
    """``(num, 1, 1, W)``: every accel-th column from a random offset (ACS only when accel is None) + ACS."""
    masks = torch.zeros(num, 1, 1, width, dtype=torch.bool)
    for i in range(num):
        if accel is not None:
            offset = int(torch.randint(accel, (1,), generator=gen))
            masks[i, 0, 0, offset::accel] = True
        start = (width - acs + 1) // 2
        masks[i, 0, 0, start : start + acs] = True
    return masks


def _run(
    form: object, k0: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor, conv: torch.nn.Module
) -> tuple:
    """Four cascades with a nonlinear stand-in for the denoiser; (rss, combined)."""
    plan = form.bind(k0, mask, sens)  # type: ignore[attr-defined]
    for t in range(4):
        x = torch.view_as_real(plan.image()).permute(0, 3, 1, 2)
        y = torch.tanh(conv(x))
        plan.step(torch.complex(y[:, 0], y[:, 1]), torch.tensor([0.6 + 0.1 * t], dtype=torch.float64))
    return plan.rss_image(), plan.combined_image()


@pytest.mark.parametrize("coils", [1, 15, 32])
@pytest.mark.parametrize(("height", "width"), [(16, 12), (15, 11)])
@pytest.mark.parametrize("accel", [None, 4, 8, 10])
def test_forms_equal_the_2d_form_in_float64(coils: int, height: int, width: int, accel: int | None) -> None:
    gen = torch.Generator().manual_seed(coils * 100 + width + (accel or 0))
    num = 2
    image = torch.randn(num, height, width, dtype=torch.complex128, generator=gen)
    sens = torch.randn(num, coils, height, width, dtype=torch.complex128, generator=gen)
    sens = sens / (sens.abs() ** 2).sum(1, keepdim=True).sqrt()
    masks = _column_masks(num, width, accel, acs=4, gen=gen)  # per-slice masks, different offsets
    k0 = fft2c(sens * image[:, None]) * masks
    conv = torch.nn.Conv2d(2, 2, 3, padding=1).double()
    with torch.no_grad():
        reference = _run(KSPACE_2D, k0, masks, sens, conv)
        for form in (HYBRID, RESIDUAL):
            got = _run(form, k0, masks, sens, conv)
            for g, r in zip(got, reference, strict=True):
                scale = float(r.abs().max())
                assert float((g - r).abs().max()) <= 1e-13 * scale, form.name
                assert not torch.equal(g, r)  # a form that silently ran the 2-D path would be bit-identical


def test_column_forms_refuse_2d_masks_and_auto_falls_back() -> None:
    k, _ = masked_kspace(num=1, coils=2, height=8, width=6)
    sens = torch.ones_like(k) / 2**0.5
    mask2d = torch.rand(8, 6) < 0.5
    mask2d[:, 2:4] = True
    for form in (HYBRID, RESIDUAL):
        with pytest.raises(InputError, match="whole phase-encode columns"):
            form.bind(k * mask2d, mask2d, sens)
    assert isinstance(AUTO_HYBRID.bind(k * mask2d, mask2d, sens), KSpacePlan)
    assert isinstance(AUTO_HYBRID.bind(k, torch.ones(6, dtype=torch.bool), sens), HybridPlan)


@pytest.fixture(scope="module")
def tiny_varnet() -> fastrecon.Reconstructor:
    with pytest.warns(UserWarning, match="random"):
        return load_unregistered(tiny_varnet_config("test-hybrid-varnet"), device="cpu")


@pytest.mark.parametrize("dc", ["hybrid", "residual"])
@pytest.mark.parametrize("which", ["demo", "varnet"])
def test_models_pass_the_fp32_gate_in_every_form(
    tiny_varnet: fastrecon.Reconstructor, which: str, dc: str
) -> None:
    if which == "demo":
        recon = fastrecon.load("demo-x8", device="cpu")
        k, _ = masked_kspace(num=2, coils=8, height=64, width=56, accel=8, acs=10, seed=4)
    else:
        recon = tiny_varnet
        k, _ = masked_kspace(num=2, coils=4, height=32, width=24, seed=4)
    form = recon.with_backend("eager", "fp32", dc=dc)
    assert form.info()["dc"] == dc
    for complex_out in (False, True):
        report = parity.compare(
            form.reconstruct(k, return_complex=complex_out), recon.reconstruct(k, return_complex=complex_out)
        )
        assert report.passed and not report.bit_identical, report


def test_forced_forms_on_a_2d_mask_and_on_triton_are_refused() -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    k, _ = masked_kspace(num=1, coils=8, height=64, width=56, accel=4, acs=10)
    mask2d = torch.ones(64, 56, dtype=torch.bool)
    mask2d[::2, :20] = False
    with pytest.raises(InputError, match="whole phase-encode columns"):
        recon.with_backend("eager", dc="residual").reconstruct(k * mask2d, mask2d)
    assert recon.with_backend("compile", dc="auto").info()["dc"] == "auto:hybrid"
    assert recon.with_backend("onnxruntime", dc="auto").info()["dc"] == "auto:residual"
    with pytest.raises(BackendUnavailableError, match="data-dependent shape"):
        recon.with_backend("compile", dc="residual")
    with pytest.raises(BackendUnavailableError, match="dc=.hybrid. runs in plain torch"):
        fastrecon.load("demo-x8", device="cpu", backend="triton", dc="hybrid")
    with pytest.raises(fastrecon.errors.UnknownNameError, match="Did you mean 'hybrid'"):
        fastrecon.load("demo-x8", device="cpu", dc="hybird")


@pytest.mark.parametrize("dc", ["hybrid", "residual"])
def test_column_forms_refuse_every_non_column_mask_through_the_api(dc: str) -> None:
    """Given 2-D, per-slice 2-D and inferred (from a non-Cartesian zero pattern) masks, in reconstruct and
    stream: a clear InputError, never a reconstruction with the wrong mask."""
    recon = fastrecon.load("demo-x8", device="cpu", dc=dc)
    k, _ = masked_kspace(num=2, coils=4, height=32, width=32, accel=4, acs=8)
    mask2d = torch.ones(32, 32, dtype=torch.bool)
    mask2d[::2, :10] = False
    cases = [(k * mask2d, mask2d), (k * mask2d, mask2d.expand(2, 1, 32, 32)), (k * mask2d, None)]
    for kspace, mask in cases:
        with pytest.raises(InputError, match="whole phase-encode columns"):
            recon.reconstruct(kspace, mask)
    with pytest.raises(InputError, match="whole phase-encode columns"):
        list(recon.stream([(k[0] * mask2d, mask2d)]))
