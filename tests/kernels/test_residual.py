"""Fused residual-form kernels (``fastrecon.kernels.residual``) vs their references and a float64 oracle."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fastrecon.errors import InputError, InputTypeError
from fastrecon.kernels import dc, ops
from fastrecon.physics.hybrid import ResidualPlan
from tests.kernels._compare import assert_matches

DEVICE = torch.device("cuda" if torch.cuda.is_available() and not dc._INTERPRETED else "cpu")
# Only the tests that launch kernels need Triton; opcheck and validation run on the reference path too.
needs_kernels = pytest.mark.skipif(
    not (dc._INTERPRETED or (dc.triton is not None and torch.cuda.is_available())),
    reason="Triton kernels cannot run here (Triton missing, or no CUDA GPU and no TRITON_INTERPRET=1)",
)

# (N, C, H, W, per-slice masks, strided rho): odd and even sizes, 1/15/32 coils, Mp above one dot step.
CASES = [
    (1, 1, 16, 16, False, False),
    (2, 4, 17, 37, True, False),
    (1, 15, 9, 24, False, True),
    (2, 32, 5, 11, True, False),
]


def _plan(n: int, c: int, h: int, w: int, per_slice: bool) -> ResidualPlan:
    gen = torch.Generator().manual_seed(n * 1000 + c * 10 + w)
    sens = torch.randn(n, c, h, w, dtype=torch.complex64, generator=gen)
    sens = sens / (sens.abs() ** 2).sum(1, keepdim=True).sqrt()
    masks = torch.zeros(n if per_slice else 1, 1, 1, w, dtype=torch.bool)
    for s in range(masks.shape[0]):
        masks[s, ..., s % 3 :: 3] = True  # per-slice offsets: different sampled columns (and counts)
    masks[..., w // 2 - 2 : w // 2 + 2] = True
    k0 = torch.randn(n, c, h, w, dtype=torch.complex64, generator=gen) * masks
    plan = ResidualPlan(k0.to(DEVICE), masks.to(DEVICE), sens.to(DEVICE))
    plan.rho = torch.randn(plan.rho.shape, dtype=torch.complex64, generator=gen).to(DEVICE)
    return plan


def _c128(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.complex128) if t.is_complex() else t.double()


def _args(case: tuple[Any, ...]) -> tuple[ResidualPlan, torch.Tensor, torch.Tensor, torch.Tensor]:
    n, c, h, w, per_slice, strided = case
    plan = _plan(n, c, h, w, per_slice)
    gen = torch.Generator().manual_seed(7)
    correction = torch.randn(n, h, w, dtype=torch.complex64, generator=gen).to(DEVICE)
    rho = plan.rho
    if strided:  # a non-contiguous rho: (N, C, Mp, H) transposed
        rho = rho.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not rho.is_contiguous()
    return plan, rho, correction, torch.tensor([0.7], device=DEVICE)


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}" for c in CASES])
def test_x_update_matches_the_oracle(case: tuple[Any, ...]) -> None:
    plan, rho, correction, weight = _args(case)
    args = (plan.x, rho, weight, plan.inverse_p, plan.sens, plan.phi, correction)
    before = dc.LAUNCHES["residual_x"]
    out = ops.residual_x_update(*args)
    assert dc.LAUNCHES["residual_x"] > before, "the residual x kernel did not run"
    oracle = ops.residual_x_update_ref(*(_c128(a) for a in args))
    assert_matches(out, oracle, ops.residual_x_update_ref(*args), name="residual_x_update")


@needs_kernels
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}" for c in CASES])
def test_rho_update_matches_the_oracle(case: tuple[Any, ...]) -> None:
    plan, rho, correction, weight = _args(case)
    args = (rho, weight, plan.forward_p, plan.sens, correction)
    before = dc.LAUNCHES["residual_rho"]
    out = ops.residual_rho_update(*args)
    assert dc.LAUNCHES["residual_rho"] > before, "the residual rho kernel did not run"
    oracle = ops.residual_rho_update_ref(*(_c128(a) for a in args))
    assert_matches(out, oracle, ops.residual_rho_update_ref(*args), name="residual_rho_update")


@needs_kernels
def test_slices_over_the_grid_cap_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastrecon.kernels.residual as residual

    monkeypatch.setattr(residual, "MAX_GRID_SLICES", 2)
    plan, rho, correction, weight = _args((5, 2, 6, 9, True, False))
    before = dc.LAUNCHES["residual_x"], dc.LAUNCHES["residual_rho"]
    x = ops.residual_x_update(plan.x, rho, weight, plan.inverse_p, plan.sens, plan.phi, correction)
    r = ops.residual_rho_update(rho, weight, plan.forward_p, plan.sens, correction)
    assert (dc.LAUNCHES["residual_x"] - before[0], dc.LAUNCHES["residual_rho"] - before[1]) == (3, 5)
    x_args = (plan.x, rho, weight, plan.inverse_p, plan.sens, plan.phi, correction)
    assert_matches(
        x, ops.residual_x_update_ref(*(_c128(a) for a in x_args)), ops.residual_x_update_ref(*x_args)
    )
    r_args = (rho, weight, plan.forward_p, plan.sens, correction)
    assert_matches(
        r, ops.residual_rho_update_ref(*(_c128(a) for a in r_args)), ops.residual_rho_update_ref(*r_args)
    )


def test_opcheck_and_inference_only() -> None:
    plan, rho, correction, weight = _args(CASES[1])
    x_args = (plan.x, rho, weight, plan.inverse_p, plan.sens, plan.phi, correction)
    r_args = (rho, weight, plan.forward_p, plan.sens, correction)
    torch.library.opcheck(
        torch.ops.fastrecon.residual_x_update.default, x_args, test_utils=("test_schema", "test_faketensor")
    )
    torch.library.opcheck(
        torch.ops.fastrecon.residual_rho_update.default, r_args, test_utils=("test_schema", "test_faketensor")
    )
    needs_grad = correction.clone().requires_grad_(True)
    out = ops.residual_rho_update(rho, weight, plan.forward_p, plan.sens, needs_grad)
    with pytest.raises(NotImplementedError, match="inference only"):
        out.abs().sum().backward()


def test_bad_inputs_are_named() -> None:
    plan, rho, correction, weight = _args(CASES[0])
    with pytest.raises(InputTypeError, match="correction has dtype torch.complex128"):
        ops.residual_rho_update(rho, weight, plan.forward_p, plan.sens, correction.to(torch.complex128))
    with pytest.raises(InputError, match="forward_p"):
        ops.residual_rho_update(rho, weight, plan.forward_p[..., :-1], plan.sens, correction)
