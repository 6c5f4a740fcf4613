"""One comparison helper for kernel outputs (STYLE.md point 5).

A kernel output is compared with a float64 oracle (the ``*_ref`` twin run in complex128) and judged
against the fp32 eager reference's own error on the same inputs: the kernel may be off by at most
``factor`` times the eager error (flash-attention's rule), plus a floor of ``ulps`` fp32 ulps of the
output's scale: the kernels round a few more times than eager (phase ramp, folded 1/sqrt(HW), coil
sum order), each by at most an ulp of the largest value, and eager is sometimes exact. The report says how many elements fail, where, whether
any are NaN/Inf, and both errors side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

FP32_EPS = float(torch.finfo(torch.float32).eps)


@dataclass
class Comparison:
    """What :func:`compare` found. ``ok`` is the verdict; ``str()`` is the report."""

    name: str
    shape: tuple[int, ...]
    max_abs: float  # kernel vs oracle
    max_rel: float  # max_abs / max |oracle|
    eager_max_abs: float  # fp32 eager reference vs oracle
    tolerance: float  # per-element bound on |kernel - oracle|
    mismatches: int
    total: int
    nan: int
    inf: int
    worst: list[tuple[tuple[int, ...], complex, complex]] = field(
        default_factory=list
    )  # (index, kernel, oracle)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.nan == 0 and self.inf == 0

    def __str__(self) -> str:
        ratio = (
            self.max_abs / self.eager_max_abs
            if self.eager_max_abs > 0
            else float("inf")
            if self.max_abs
            else 0.0
        )
        lines = [
            f"{self.name} {self.shape}: {'OK' if self.ok else 'MISMATCH'}",
            f"  mismatches {self.mismatches}/{self.total}, NaN {self.nan}, Inf {self.inf}",
            f"  kernel max abs err {self.max_abs:.3e} (rel {self.max_rel:.3e}); eager fp32 max abs err "
            f"{self.eager_max_abs:.3e}; ratio {ratio:.2f}; tolerance {self.tolerance:.3e}",
        ]
        lines += [f"  at {idx}: kernel {got:.6g}, oracle {want:.6g}" for idx, got, want in self.worst]
        return "\n".join(lines)


def compare(
    actual: torch.Tensor,
    oracle: torch.Tensor,
    eager: torch.Tensor,
    *,
    name: str = "output",
    factor: float = 2.0,
    ulps: float = 4.0,
    show: int = 5,
) -> Comparison:
    """Compare ``actual`` (kernel) and ``eager`` (fp32 reference) with ``oracle`` (float64 reference)."""
    if actual.shape != oracle.shape or eager.shape != oracle.shape:
        raise AssertionError(
            f"{name}: shapes differ: kernel {tuple(actual.shape)}, eager {tuple(eager.shape)}, oracle {tuple(oracle.shape)}"
        )
    want = oracle.detach().to("cpu", torch.complex128 if oracle.is_complex() else torch.float64)
    got = actual.detach().to("cpu", want.dtype)
    err = (got - want).abs()
    eager_err = (eager.detach().to("cpu", want.dtype) - want).abs()
    scale = float(want.abs().max()) if want.numel() else 0.0
    eager_max = float(eager_err.max()) if eager_err.numel() else 0.0
    tolerance = factor * eager_max + ulps * FP32_EPS * scale
    finite = torch.isfinite(got)
    nan = int(torch.isnan(got).sum())
    inf = int((~finite).sum()) - nan
    bad = ~(err <= tolerance)  # NaN errors count as bad
    max_abs = float(torch.nan_to_num(err, nan=float("inf")).max()) if err.numel() else 0.0
    worst: list[tuple[tuple[int, ...], complex, complex]] = []
    if bad.any():
        order = torch.nan_to_num(err, nan=float("inf")).flatten().argsort(descending=True)[:show]
        for flat in order.tolist():
            idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape))
            worst.append((idx, complex(got[idx].item()), complex(want[idx].item())))
    return Comparison(
        name=name,
        shape=tuple(actual.shape),
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else max_abs,
        eager_max_abs=eager_max,
        tolerance=tolerance,
        mismatches=int(bad.sum()),
        total=err.numel(),
        nan=nan,
        inf=inf,
        worst=worst,
    )


def assert_matches(
    actual: torch.Tensor, oracle: torch.Tensor, eager: torch.Tensor, *, name: str = "output", **kwargs: float
) -> Comparison:
    """:func:`compare` and raise ``AssertionError`` with the report when it fails."""
    result = compare(actual, oracle, eager, name=name, **kwargs)  # type: ignore[arg-type]
    if not result.ok:
        raise AssertionError(str(result))
    return result
