"""One parity gate: a backend's output against the eager fp32 reference on the same input.

Scale-sensitive metrics on the magnitude image (PSNR with the reference's peak as data range, NRMSE,
|delta SSIM|) plus the largest absolute and relative error, finiteness, and a pass/fail against the
thresholds of the output's precision tier. Used by the tests, by ``fastrecon bench`` and by users::

    report = fastrecon.parity.check("demo-x8", kspace, backend="compile", precision="bf16")
    report.passed, report.psnr_db

Thresholds (derived, not tuned until green): fp32 vs float64 on demo-x8 is ~149 dB, so an fp32 backend
must reach 100 dB (``~1e-5`` relative); whole-model bf16 autocast gives ~72 dB and fp16 ~91 dB, so a
reduced-precision backend must reach 45 dB with ``|delta SSIM| <= 1e-3``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from fastrecon.errors import InputError
from fastrecon.metrics import ssim_map


@dataclass(frozen=True)
class Thresholds:
    """Pass if PSNR >= ``min_psnr_db`` and (when set) |delta SSIM| <= ``max_ssim_delta``, all finite."""

    min_psnr_db: float
    max_ssim_delta: float | None = None


THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(min_psnr_db=100.0),
    "bf16": Thresholds(min_psnr_db=45.0, max_ssim_delta=1e-3),
    "fp16": Thresholds(min_psnr_db=45.0, max_ssim_delta=1e-3),
}


@dataclass(frozen=True)
class ParityReport:
    """The gate's verdict and every number behind it (``asdict`` gives a benchmark row)."""

    precision: str
    psnr_db: float
    nrmse: float
    ssim_delta: float
    max_abs: float
    max_rel: float
    finite: bool
    bit_identical: bool
    passed: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["reasons"] = "; ".join(self.reasons)
        return row

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL (" + "; ".join(self.reasons) + ")"
        return (
            f"{verdict}: PSNR {self.psnr_db:.1f} dB, NRMSE {self.nrmse:.2e}, |dSSIM| {self.ssim_delta:.2e}, "
            f"max abs {self.max_abs:.2e}, max rel {self.max_rel:.2e} ({self.precision} gate)"
        )


def _as_float64(x: Any, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.detach().cpu()
    return t.to(torch.complex128) if t.is_complex() else t.to(torch.float64)


def _ssim(reference: torch.Tensor, test: torch.Tensor, data_range: float) -> float:
    images = reference.reshape(-1, 1, *reference.shape[-2:]), test.reshape(-1, 1, *test.shape[-2:])
    return float(ssim_map(images[0], images[1], data_range).mean())


def compare(test: Any, reference: Any, *, precision: str = "fp32", target: Any | None = None) -> ParityReport:
    """Compare ``test`` with ``reference`` (same shape; real magnitudes or complex images, ``(..., H, W)``).

    ``precision`` picks the thresholds (:data:`THRESHOLDS`). ``target`` (a ground-truth magnitude) makes
    |delta SSIM| = |SSIM(target, test) - SSIM(target, reference)|; without it, 1 - SSIM(reference, test).
    """
    if precision not in THRESHOLDS:
        raise InputError(
            f"no parity thresholds for precision {precision!r}; expected one of {sorted(THRESHOLDS)}."
        )
    t, r = _as_float64(test, "test"), _as_float64(reference, "reference")
    if t.shape != r.shape:
        raise InputError(f"test {tuple(t.shape)} and reference {tuple(r.shape)} differ in shape.")
    if t.ndim < 2 or min(t.shape[-2:]) < 7:
        raise InputError(f"parity needs images (..., H, W) with H, W >= 7; got shape {tuple(t.shape)}.")
    bit_identical = bool(torch.equal(_as_raw(test), _as_raw(reference)))
    finite = bool(torch.isfinite(torch.view_as_real(t) if t.is_complex() else t).all())
    t_mag, r_mag = t.abs(), r.abs()
    peak = float(r_mag.max())
    if not peak > 0:
        raise InputError("the reference image is all zeros; parity needs a non-trivial reference.")
    error = (t - r).abs()
    max_abs = float(error.max()) if finite else math.inf
    mse = float((t_mag - r_mag).pow(2).mean()) if finite else math.inf
    psnr = -math.inf if not finite else math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
    nrmse = float((t_mag - r_mag).norm() / r_mag.norm()) if finite else math.inf
    if not finite:
        ssim_delta = math.inf
    elif target is not None:
        g = _as_float64(target, "target").abs()
        data_range = float(g.max())
        ssim_delta = abs(_ssim(g, t_mag, data_range) - _ssim(g, r_mag, data_range))
    else:
        ssim_delta = 1.0 - _ssim(r_mag, t_mag, peak)
    gate = THRESHOLDS[precision]
    reasons = []
    if not finite:
        reasons.append("non-finite values")
    if psnr < gate.min_psnr_db:
        reasons.append(f"PSNR {psnr:.1f} dB < {gate.min_psnr_db:g} dB")
    if gate.max_ssim_delta is not None and ssim_delta > gate.max_ssim_delta:
        reasons.append(f"|dSSIM| {ssim_delta:.2e} > {gate.max_ssim_delta:g}")
    return ParityReport(
        precision=precision,
        psnr_db=psnr,
        nrmse=nrmse,
        ssim_delta=ssim_delta,
        max_abs=max_abs,
        max_rel=max_abs / peak,
        finite=finite,
        bit_identical=bit_identical,
        passed=not reasons,
        reasons=tuple(reasons),
    )


def _as_raw(x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.detach().cpu()


def check(
    model: Any,
    kspace: Any,
    mask: Any = None,
    *,
    backend: str,
    precision: str = "fp32",
    reference: Any | None = None,
    target: Any | None = None,
    **load_kwargs: Any,
) -> ParityReport:
    """Run ``backend`` / ``precision`` and the eager fp32 reference on the same input and compare.

    ``model``: a registered name or checkpoint path (loaded with ``load_kwargs``, e.g. ``weights``,
    ``device``), or a loaded :class:`~fastrecon.api.Reconstructor` (its weights are reused for both
    runs). ``reference``: a precomputed eager fp32 output, to skip that run.
    """
    from fastrecon.api import Reconstructor, load

    if isinstance(model, Reconstructor):
        fast = model.with_backend(backend, precision)
        eager = model.with_backend("eager", "fp32") if reference is None else None
    else:
        fast = load(model, backend=backend, precision=precision, **load_kwargs)
        eager = load(model, backend="eager", precision="fp32", **load_kwargs) if reference is None else None
    if reference is None and eager is not None:
        reference = eager.reconstruct(kspace, mask)
    return compare(fast.reconstruct(kspace, mask), reference, precision=precision, target=target)
