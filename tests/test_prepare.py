"""The prepared input: one graph per model family, exact scale normalisation, padding, per-chunk copies."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import fastrecon
from fastrecon.errors import InputError, ReconstructionError
from fastrecon.models import build_model
from fastrecon.prepare import prepare
from tests.helpers import masked_kspace, seed_nonzero_heads, tiny_varnet_config, tiny_vit_config, zero_filled

CPU = torch.device("cpu")


@pytest.mark.parametrize("family", ["vit", "varnet", "demo-x8"])
def test_prepared_forward_is_one_graph_without_breaks(family: str) -> None:
    if family == "demo-x8":
        model = fastrecon.load("demo-x8", device="cpu").model
    else:
        config = tiny_vit_config() if family == "vit" else tiny_varnet_config()
        model = build_model(config, warn_random_encoder=False).eval()
    k, mask = masked_kspace(num=2, coils=4, height=32, width=24)
    p = prepare(k, mask, min_acs_lines=2, device=CPU)
    torch._dynamo.reset()
    with torch.inference_mode():
        explained = torch._dynamo.explain(model.forward)(p.kspace, p.mask, p.acs, "rss")
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_unprepared_forward_still_searches_the_acs_on_the_host() -> None:
    """Training and fastMRI-style callers pass no ACS: same numbers, found on the host."""
    model = build_model(tiny_vit_config(), warn_random_encoder=False).eval()
    assert seed_nonzero_heads(model) == 2
    k, mask = masked_kspace(num=2)
    p = prepare(k, mask, min_acs_lines=2, device=CPU)
    with torch.inference_mode():
        torch.testing.assert_close(model(p.kspace, p.mask), model(p.kspace, p.mask, p.acs), rtol=0, atol=0)


def test_scale_is_an_exact_power_of_two_per_slice() -> None:
    k, mask = masked_kspace(num=3)
    k = k * torch.tensor([1e-6, 1.0, 3e5]).view(3, 1, 1, 1)
    p = prepare(k, mask, min_acs_lines=2, device=CPU)
    mantissa, _ = torch.frexp(p.scale)
    assert torch.all(mantissa == 0.5)  # powers of two: scaling is exact
    peaks = p.kspace.abs().flatten(1).amax(1)
    assert torch.all((peaks >= 0.5) & (peaks < 1.0))
    torch.testing.assert_close(p.kspace, (k * p.scale.view(3, 1, 1, 1)).to(torch.complex64), rtol=0, atol=0)


@pytest.mark.parametrize("factor", [1e-30, 1e-12, 1e19, 1e30])
def test_any_finite_scale_gives_the_same_image(factor: float) -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    k, mask = masked_kspace(num=1, coils=8, height=48, width=40, accel=4, acs=8)
    base = recon.reconstruct(k)
    scaled = recon.reconstruct((k.to(torch.complex128) * factor).to(torch.complex64))
    assert torch.isfinite(scaled).all()
    report = fastrecon.parity.compare(scaled / factor, base)
    assert report.psnr_db >= 100, report


def test_complex128_at_1e300_works_and_keeps_double_precision() -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    k, _ = masked_kspace(num=1, coils=8, height=48, width=40, accel=4, acs=8)
    base = recon.reconstruct(k)
    huge = recon.reconstruct(k.to(torch.complex128) * 1e300)
    assert huge.dtype == torch.float64 and torch.isfinite(huge).all()
    assert fastrecon.parity.compare(huge / 1e300, base).psnr_db >= 100


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("factor", [1e-6, 1e6])
def test_reduced_precision_stays_in_range_at_any_scale(precision: str, factor: float) -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    half = recon.with_backend("eager", precision)
    k, _ = masked_kspace(num=2, coils=8, height=48, width=40, accel=4, acs=8)
    k = k * factor
    report = fastrecon.parity.compare(half.reconstruct(k), recon.reconstruct(k), precision=precision)
    assert report.passed, report


def test_padding_repeats_the_last_slice_and_is_dropped() -> None:
    k, mask = masked_kspace(num=3)
    per_slice = torch.stack([mask, mask, mask])[:, None, None, :]
    p = prepare(k, per_slice, min_acs_lines=2, device=CPU)
    padded = p.padded(5)
    assert (
        padded.batch == 5
        and torch.equal(padded.kspace[3], p.kspace[2])
        and torch.equal(padded.kspace[4], p.kspace[2])
    )
    assert padded.mask.shape[0] == 5 and padded.scale.shape == (5,)
    assert p.padded(2) is p


def test_static_batch_backend_pads_the_last_chunk() -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    seen: list[int] = []
    runner = recon.runner

    class Recording:
        static_batch = 1

        def __call__(self, prepared, output):  # type: ignore[no-untyped-def]
            seen.append(prepared.batch)
            return runner(prepared, output)

        def info(self):  # type: ignore[no-untyped-def]
            return runner.info()

    k, _ = masked_kspace(num=5, coils=8, height=48, width=40, accel=4, acs=8)
    padded = fastrecon.api.Reconstructor(recon.model, recon.config, recon.device, Recording())  # type: ignore[arg-type]
    torch.testing.assert_close(padded.reconstruct(k, batch_size=2), recon.reconstruct(k, batch_size=2))
    assert seen == [2, 2, 2]


def test_chunks_are_copied_to_the_device_one_at_a_time() -> None:
    """The whole stack never goes to the device: each prepared chunk holds only its own slices."""
    recon = fastrecon.load("demo-x8", device="cpu")
    sizes: list[int] = []
    runner = recon.runner

    class Recording:
        static_batch = None

        def __call__(self, prepared, output):  # type: ignore[no-untyped-def]
            sizes.append(prepared.kspace.shape[0])
            return runner(prepared, output)

        def info(self):  # type: ignore[no-untyped-def]
            return runner.info()

    k, _ = masked_kspace(num=3, coils=8, height=48, width=40, accel=4, acs=8)
    chunked = fastrecon.api.Reconstructor(recon.model, recon.config, recon.device, Recording())  # type: ignore[arg-type]
    chunked.reconstruct(k, batch_size=1)
    assert sizes == [1, 1, 1]


def test_all_zero_and_non_finite_output_are_errors() -> None:
    recon = fastrecon.load("demo-x8", device="cpu")
    k, mask = masked_kspace(num=1, coils=8, height=48, width=40, accel=4, acs=8)
    with pytest.raises(InputError, match="all zeros"):
        recon.reconstruct(torch.zeros_like(k), mask)

    class Broken:
        static_batch = None

        def __call__(self, prepared, output):  # type: ignore[no-untyped-def]
            return torch.full(prepared.kspace.shape[:1] + prepared.kspace.shape[2:], float("nan"))

        def info(self):  # type: ignore[no-untyped-def]
            return {"backend": "broken"}

    broken = fastrecon.api.Reconstructor(recon.model, recon.config, recon.device, Broken())  # type: ignore[arg-type]
    with pytest.raises(ReconstructionError, match="non-finite"):
        broken.reconstruct(k)
    assert not torch.equal(recon.reconstruct(k), zero_filled(k)[0])
