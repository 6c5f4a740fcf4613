"""Benchmark: fused data-consistency kernels vs eager torch, at real MRI matrix sizes.

    python -m fastrecon.bench.dc --json out.json           # on a CUDA GPU
    python -m fastrecon.bench.dc --interpret                # no GPU: tiny shapes in Triton's interpreter
                                                            # (checks the harness; timings meaningless)

For each scenario (cine 10x246x512, knee 15x640x368, brain 16x320x320; batch 1 by default) and each
op (soft_dc, sens_expand, sens_reduce, one cascade step of DC) it times:

- ``a-fastmri``: fastMRI's own formulation (real ``(..., 2)`` tensors, ``complex_mul``, rolls by
  ``narrow`` + ``cat``, ortho FFTs), i.e. what an E2E-VarNet cascade does today;
- ``a-eager``: this package's eager reference (native complex64, ``torch.fft.fftshift``);
- ``b-torch``: the best plain torch we could write (checkerboard instead of rolls for even sizes,
  unnormalised FFTs with the scale folded into a small tensor, ``lerp``/``addcmul``/``vecdot``);
- ``c-triton``: the fused kernels through the custom op (and ``c-triton-direct`` without it);
- ``... (graph)``: the same inside a CUDA graph, i.e. GPU time without Python launch overhead;
- FFT strategy rows: cuFFT alone (unnormalised, ortho), the centred DFT as complex GEMMs (cuBLAS
  cgemm in fp32 and TF32, shifts folded into the matrices), cuFFT callbacks (not implemented: an
  ``error`` row, so the comparison stays visible);
- a sweep of the kernels' tile configurations on the knee scenario.

Each row: p50/p90/p99 time (CUDA events, L2 flushed before every run unless ``--no-flush``),
``io_bytes`` (each input read once, each output written once), ``model_bytes`` (the traffic the
implementation's passes imply, FFTs counted as one read + one write), GB/s on both, the fraction of
the HBM copy bandwidth measured in the same run, and the max relative error vs a complex128 oracle
computed in the same run. Failed rows carry an ``error`` instead of disappearing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from fastrecon.errors import BackendUnavailableError

SCENARIOS: dict[str, tuple[int, int, int]] = {
    "cine": (10, 246, 512),
    "knee": (15, 640, 368),
    "brain": (16, 320, 320),
}
INTERPRET_SCENARIOS: dict[str, tuple[int, int, int]] = {"tiny-even": (4, 16, 12), "tiny-odd": (3, 9, 11)}
GOAL_SCENARIO = "knee"
GOALS = {"vs_fastmri": 4.0, "vs_best_torch": 2.0, "frac_copy_bw": 0.5}

Tensor = torch.Tensor
Fn = Callable[[], Any]


# ----------------------------------------------------------------------------------------------------
# (a) fastMRI's formulation, on real (..., 2) tensors (fastmri.fftc / fastmri.math / VarNetBlock)
# ----------------------------------------------------------------------------------------------------


def _fm_roll_one_dim(x: Tensor, shift: int, dim: int) -> Tensor:
    shift = shift % x.size(dim)
    if shift == 0:
        return x
    left = x.narrow(dim, 0, x.size(dim) - shift)
    right = x.narrow(dim, x.size(dim) - shift, shift)
    return torch.cat((right, left), dim=dim)


def _fm_shift(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    for dim in dims:
        size = x.shape[dim]
        x = _fm_roll_one_dim(x, (size + 1) // 2 if inverse else size // 2, dim)
    return x


def _fm_fft2c(data: Tensor, inverse: bool = False) -> Tensor:
    data = _fm_shift(data, [-3, -2], inverse=True)
    fft = torch.fft.ifftn if inverse else torch.fft.fftn
    data = torch.view_as_real(fft(torch.view_as_complex(data), dim=(-2, -1), norm="ortho"))
    return _fm_shift(data, [-3, -2], inverse=False)


def _fm_complex_mul(x: Tensor, y: Tensor) -> Tensor:
    re = x[..., 0] * y[..., 0] - x[..., 1] * y[..., 1]
    im = x[..., 0] * y[..., 1] + x[..., 1] * y[..., 0]
    return torch.stack((re, im), dim=-1)


def _fm_complex_conj(x: Tensor) -> Tensor:
    return torch.stack((x[..., 0], -x[..., 1]), dim=-1)


class FastMRIStyle:
    """fastMRI's VarNet block arithmetic; inputs/outputs are real views ``(..., 2)`` of the complex data."""

    def sens_expand(self, image: Tensor, sens: Tensor) -> Tensor:
        return _fm_fft2c(_fm_complex_mul(image.unsqueeze(1), sens))

    def sens_reduce(self, kspace: Tensor, sens: Tensor) -> Tensor:
        return _fm_complex_mul(_fm_fft2c(kspace, inverse=True), _fm_complex_conj(sens)).sum(dim=1)

    def soft_dc(self, kspace: Tensor, kspace0: Tensor, mask: Tensor, dc_weight: Tensor) -> Tensor:
        zero = torch.zeros(1, 1, 1, 1, 1, dtype=kspace.dtype, device=kspace.device)
        return kspace - torch.where(mask, kspace - kspace0, zero) * dc_weight

    def cascade_step(
        self,
        kspace: Tensor,
        kspace0: Tensor,
        mask: Tensor,
        dc_weight: Tensor,
        sens: Tensor,
        correction: Tensor,
    ) -> tuple[Tensor, Tensor]:
        zero = torch.zeros(1, 1, 1, 1, 1, dtype=kspace.dtype, device=kspace.device)
        soft_dc = torch.where(mask, kspace - kspace0, zero) * dc_weight
        kspace_next = kspace - soft_dc - self.sens_expand(correction, sens)
        return kspace_next, self.sens_reduce(kspace_next, sens)


# ----------------------------------------------------------------------------------------------------
# (b) the best plain torch we could write
# ----------------------------------------------------------------------------------------------------


class BestTorch:
    """Native complex64; for even H, W the centring shifts are a checkerboard (DESIGN.md section 3)
    folded into small (H, W) tensors, and FFTs are unnormalised (torch scales in an extra pass) with
    the 1/sqrt(HW) folded in too. Odd sizes fall back to torch's shifts."""

    def __init__(self, h: int, w: int, device: torch.device) -> None:
        self.even = h % 2 == 0 and w % 2 == 0
        self.scale = 1.0 / math.sqrt(h * w)
        i = torch.arange(h, device=device).unsqueeze(1)
        j = torch.arange(w, device=device).unsqueeze(0)
        checker = (1 - 2 * ((i + j) % 2)).to(torch.complex64)  # C[i, j] = (-1)^(i+j)
        sign = -1.0 if (h // 2 + w // 2) % 2 else 1.0  # s = (-1)^(H/2 + W/2)
        self.c = checker  # C
        self.c_scaled = checker * self.scale  # C / sqrt(HW)
        self.sc = checker * sign  # s C
        self.minus_sc = -self.sc
        self.sc_scaled = self.sc * self.scale

    def sens_expand(self, image: Tensor, sens: Tensor) -> Tensor:
        if not self.even:
            return torch.fft.fftshift(
                torch.fft.fft2(torch.fft.ifftshift(sens * image.unsqueeze(1), dim=(-2, -1)), norm="ortho"),
                dim=(-2, -1),
            )
        # fft2c(v) = s C fft2(C v) / sqrt(HW): modulate the small image, not the coil stack.
        return torch.fft.fft2(sens * (image * self.c_scaled).unsqueeze(1)) * self.sc

    def sens_reduce(self, kspace: Tensor, sens: Tensor) -> Tensor:
        if not self.even:
            coils = torch.fft.fftshift(
                torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
            )
            return torch.linalg.vecdot(sens, coils, dim=1)
        coils = torch.fft.ifft2(kspace * self.c, norm="forward")  # unnormalised inverse
        return torch.linalg.vecdot(sens, coils, dim=1) * self.sc_scaled  # sum_c conj(S_c) Z_c

    def soft_dc(self, kspace: Tensor, kspace0: Tensor, mask: Tensor, dc_weight: Tensor) -> Tensor:
        weight = (mask * dc_weight).to(torch.complex64)  # small: (W,) or (H, W)
        return torch.lerp(kspace, kspace0, weight)  # k + w M (k0 - k), one pass

    def cascade_step(
        self,
        kspace: Tensor,
        kspace0: Tensor,
        mask: Tensor,
        dc_weight: Tensor,
        sens: Tensor,
        correction: Tensor,
    ) -> tuple[Tensor, Tensor]:
        if not self.even:
            kspace_next = self.soft_dc(kspace, kspace0, mask, dc_weight) - self.sens_expand(correction, sens)
            return kspace_next, self.sens_reduce(kspace_next, sens)
        y = torch.fft.fft2(sens * (correction * self.c_scaled).unsqueeze(1))  # fft2c(S x) = s C y
        kspace_next = torch.addcmul(self.soft_dc(kspace, kspace0, mask, dc_weight), y, self.minus_sc)
        return kspace_next, self.sens_reduce(kspace_next, sens)


# ----------------------------------------------------------------------------------------------------
# FFT strategy alternative: the centred DFT as complex GEMMs (shifts folded into the matrices)
# ----------------------------------------------------------------------------------------------------


def centred_dft_matrix(n: int, device: torch.device, inverse: bool = False) -> Tensor:
    """``F_c`` with ``fft2c(x) = F_c(H) @ x @ F_c(W)^T``: fftshift . DFT . ifftshift, orthonormal, float64-built."""
    eye = torch.eye(n, dtype=torch.complex128)
    fn = torch.fft.ifft if inverse else torch.fft.fft
    mat = torch.fft.fftshift(fn(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho"), dim=0)
    return mat.to(device=device, dtype=torch.complex64)


def dft_gemm_fft2c(x: Tensor, f_h: Tensor, f_w_t: Tensor) -> Tensor:
    return f_h @ (x @ f_w_t)


# ----------------------------------------------------------------------------------------------------
# Bytes, timing
# ----------------------------------------------------------------------------------------------------


def io_bytes(op: str, n: int, c: int, h: int, w: int) -> int:
    """Each input read once and each output written once (complex64 = 8 bytes; masks ignored)."""
    e, img = n * c * h * w * 8, n * h * w * 8
    return {
        "soft_dc": 3 * e,  # k, k0 in; k' out
        "sens_expand": 2 * e + img,  # S, x in; k out
        "sens_reduce": 2 * e + img,  # k, S in; x out
        "cascade_step": 4 * e + 2 * img,  # k, k0, S, x in; k', x' out
        "fft2": 2 * e,
        "copy": 2 * e,
    }[op]


def triton_model_bytes(op: str, n: int, c: int, h: int, w: int, sampled: float) -> int:
    """Traffic of the fused pipeline's passes (FFT = one read + one write; k0 read where sampled)."""
    e, img = n * c * h * w * 8, n * h * w * 8
    expand = 2 * e + img  # S, x -> X
    dc = 2 * e + int(sampled * e)  # k (+ k0 where sampled) -> k'
    reduce = 2 * e + img  # Z, S -> x
    fft = 2 * e
    return {
        "soft_dc": dc,
        "sens_expand": expand + fft,
        "sens_reduce": fft + reduce,
        "cascade_step": expand + fft + (dc + e) + fft + reduce,  # dc also reads Y
    }[op]


@dataclass
class Timing:
    p50_us: float
    p90_us: float
    p99_us: float
    runs: int


def _quantiles(samples: list[float]) -> Timing:
    ordered = sorted(samples)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return Timing(p50_us=statistics.median(ordered), p90_us=q(0.9), p99_us=q(0.99), runs=len(ordered))


class Timer:
    """CUDA events around every run (L2 flushed before each unless ``flush=False``); CPU: perf_counter."""

    def __init__(self, device: torch.device, warmup: int, iters: int, flush: bool) -> None:
        self.device, self.warmup, self.iters, self.flush = device, warmup, iters, flush
        self.cache = (
            torch.empty(256 << 20, dtype=torch.int8, device=device)
            if device.type == "cuda" and flush
            else None
        )

    def __call__(self, fn: Fn) -> Timing:
        for _ in range(self.warmup):
            fn()
        if self.device.type != "cuda":
            samples = []
            for _ in range(self.iters):
                began = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - began) * 1e6)
            return _quantiles(samples)
        torch.cuda.synchronize()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(self.iters)
        ]
        for start, end in events:
            if self.cache is not None:
                self.cache.zero_()  # evict L2 (50-60 MB on H100/H200): every run starts from HBM
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return _quantiles([start.elapsed_time(end) * 1e3 for start, end in events])


def _graphed(fn: Fn, device: torch.device) -> Fn:
    """Capture ``fn`` (static inputs) in a CUDA graph; replaying it times the GPU work alone."""
    if device.type != "cuda":
        raise BackendUnavailableError("CUDA graphs need a CUDA device")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm plans, caches and the allocator outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


# ----------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    shape: str
    op: str
    impl: str
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    io_bytes: int | None = None
    model_bytes: int | None = None
    io_gbps: float | None = None
    model_gbps: float | None = None
    io_frac_copy_bw: float | None = None
    model_frac_copy_bw: float | None = None
    max_rel_err: float | None = None
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _rel_err(got: Any, want: Any) -> float:
    got_t = got if isinstance(got, tuple) else (got,)
    want_t = want if isinstance(want, tuple) else (want,)
    worst = 0.0
    for g, o in zip(got_t, want_t, strict=True):
        if not g.is_complex():
            g = torch.view_as_complex(g.contiguous())
        o = o.to(torch.complex128)
        worst = max(worst, float((g.to(torch.complex128) - o).abs().max() / o.abs().max().clamp_min(1e-30)))
    return worst


class Bench:
    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        self.timer = Timer(device, args.warmup, args.iters, flush=not args.no_flush)
        self.rows: list[Row] = []
        self.copy_bw = float("nan")

    def measure_copy_bandwidth(self) -> float:
        """HBM copy bandwidth (bytes/s) from a copy far larger than L2 (1 GiB; 4 MiB in the interpreter)."""
        size = (1 << 30) if self.device.type == "cuda" else (4 << 20)
        src = torch.empty(size, dtype=torch.int8, device=self.device).fill_(1)
        dst = torch.empty_like(src)
        timing = Timer(self.device, self.args.warmup, max(20, self.args.iters // 5), flush=False)(
            lambda: dst.copy_(src)
        )
        self.copy_bw = 2 * size / (timing.p50_us * 1e-6)
        self.rows.append(
            Row("-", f"{size} B", "copy", "torch copy_ (HBM)", timing.p50_us, timing.p90_us, timing.p99_us,
                io_bytes=2 * size, io_gbps=self.copy_bw / 1e9, io_frac_copy_bw=1.0)
        )  # fmt: skip
        return self.copy_bw

    def add(
        self,
        scenario: str,
        shape: tuple[int, ...],
        op: str,
        impl: str,
        fn: Fn,
        oracle: Any = None,
        model_bytes: int | None = None,
        note: str = "",
    ) -> Row:
        n, c, h, w = shape
        row = Row(scenario, "x".join(map(str, shape)), op, impl, note=note)
        row.io_bytes = io_bytes(op, n, c, h, w)
        row.model_bytes = model_bytes
        try:
            out = fn()
            if oracle is not None:
                row.max_rel_err = _rel_err(out, oracle)
            timing = self.timer(fn)
        except Exception as exc:  # noqa: BLE001 - a failed backend becomes a row with its error
            row.error = f"{type(exc).__name__}: {exc}"[:300]
            self.rows.append(row)
            return row
        row.p50_us, row.p90_us, row.p99_us = timing.p50_us, timing.p90_us, timing.p99_us
        seconds = timing.p50_us * 1e-6
        row.io_gbps = row.io_bytes / seconds / 1e9
        row.io_frac_copy_bw = row.io_bytes / seconds / self.copy_bw
        if model_bytes is not None:
            row.model_gbps = model_bytes / seconds / 1e9
            row.model_frac_copy_bw = model_bytes / seconds / self.copy_bw
        self.rows.append(row)
        return row

    def error_row(self, scenario: str, shape: tuple[int, ...], op: str, impl: str, error: str) -> None:
        self.rows.append(Row(scenario, "x".join(map(str, shape)), op, impl, error=error))


def _inputs(n: int, c: int, h: int, w: int, device: torch.device, sampled: float) -> dict[str, Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randc(*shape: int) -> Tensor:
        return torch.randn(*shape, dtype=torch.complex64, generator=gen).to(device)

    mask = torch.rand(w, generator=gen) < sampled
    mask[w // 2 - 8 : w // 2 + 8] = True
    return {
        "kspace": randc(n, c, h, w),
        "kspace0": randc(n, c, h, w),
        "sens": randc(n, c, h, w),
        "image": randc(n, h, w),
        "mask": mask.to(device),
        "dc_weight": torch.tensor([0.7], device=device),
    }


def run_scenario(bench: Bench, name: str, shape: tuple[int, int, int, int]) -> None:
    from fastrecon.kernels import dc as kdc
    from fastrecon.kernels import ops as kops

    n, c, h, w = shape
    dev = bench.device
    x = _inputs(n, c, h, w, dev, bench.args.sampled)
    k, k0, s, img, mask, wt = x["kspace"], x["kspace0"], x["sens"], x["image"], x["mask"], x["dc_weight"]
    sampled = float(mask.float().mean())
    r = torch.view_as_real
    fm, best = FastMRIStyle(), BestTorch(h, w, dev)
    fm_mask = mask.reshape(1, 1, 1, w, 1)

    c128 = {key: (v.to(torch.complex128) if v.is_complex() else v) for key, v in x.items()}
    w64 = wt.double()
    oracles = {
        "soft_dc": kops.soft_dc_ref(c128["kspace"], c128["kspace0"], mask, w64),
        "sens_expand": kops.sens_expand_ref(c128["image"], c128["sens"]),
        "sens_reduce": kops.sens_reduce_ref(c128["kspace"], c128["sens"]),
        "cascade_step": kops.cascade_step_ref(
            c128["kspace"], c128["kspace0"], mask, w64, c128["sens"], c128["image"]
        ),
    }
    del c128

    impls: dict[str, dict[str, Fn]] = {
        "soft_dc": {
            "a-fastmri": lambda: fm.soft_dc(r(k), r(k0), fm_mask, wt),
            "a-eager": lambda: kops.soft_dc_ref(k, k0, mask, wt),
            "b-torch": lambda: best.soft_dc(k, k0, mask, wt),
            "c-triton": lambda: kops.soft_dc(k, k0, mask, wt),
        },
        "sens_expand": {
            "a-fastmri": lambda: fm.sens_expand(r(img), r(s)),
            "a-eager": lambda: kops.sens_expand_ref(img, s),
            "b-torch": lambda: best.sens_expand(img, s),
            "c-triton": lambda: kops.sens_expand(img, s),
        },
        "sens_reduce": {
            "a-fastmri": lambda: fm.sens_reduce(r(k), r(s)),
            "a-eager": lambda: kops.sens_reduce_ref(k, s),
            "b-torch": lambda: best.sens_reduce(k, s),
            "c-triton": lambda: kops.sens_reduce(k, s),
        },
        "cascade_step": {
            "a-fastmri": lambda: fm.cascade_step(r(k), r(k0), fm_mask, wt, r(s), r(img)),
            "a-eager": lambda: kops.cascade_step_ref(k, k0, mask, wt, s, img),
            "b-torch": lambda: best.cascade_step(k, k0, mask, wt, s, img),
            "c-triton": lambda: kops.cascade_step(k, k0, mask, wt, s, img),
            "c-triton-direct": lambda: kdc.cascade_step_triton(k, k0, mask, wt, s, img),
        },
    }
    for op, table in impls.items():
        for impl, fn in table.items():
            model = triton_model_bytes(op, n, c, h, w, sampled) if impl.startswith("c-") else None
            bench.add(name, shape, op, impl, fn, oracles[op], model_bytes=model)
        if op == "cascade_step":
            for impl in ("a-fastmri", "b-torch", "c-triton"):
                model = triton_model_bytes(op, n, c, h, w, sampled) if impl.startswith("c-") else None
                try:
                    graphed = _graphed(table[impl], dev)
                except Exception as exc:  # noqa: BLE001 - reported as a row
                    bench.error_row(name, shape, op, f"{impl} (graph)", f"{type(exc).__name__}: {exc}"[:300])
                    continue
                bench.add(name, shape, op, f"{impl} (graph)", graphed, None, model_bytes=model)

    # FFT strategies: what the transforms alone cost, and the DFT-as-GEMM alternative.
    fft_oracle = kops.sens_expand_ref(
        torch.ones(n, h, w, dtype=torch.complex128, device=dev), s.to(torch.complex128)
    )
    bench.add(
        name, shape, "fft2", "cuFFT unnormalised", lambda: torch.fft.fft2(s), note="no centring, no scale"
    )
    bench.add(
        name,
        shape,
        "fft2",
        "cuFFT ortho",
        lambda: torch.fft.fft2(s, norm="ortho"),
        note="torch scales in a 2nd pass",
    )
    bench.add(
        name, shape, "fft2", "fft2c eager", lambda: kops.sens_expand_ref(torch.ones_like(img), s), fft_oracle
    )
    f_h, f_w_t = centred_dft_matrix(h, dev), centred_dft_matrix(w, dev).T.contiguous()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        bench.add(name, shape, "fft2", "centred DFT as cgemm fp32", lambda: dft_gemm_fft2c(s, f_h, f_w_t), fft_oracle,
                  note=f"{8 * n * c * h * w * (h + w) / 1e9:.1f} GFLOP")  # fmt: skip
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            bench.add(
                name,
                shape,
                "fft2",
                "centred DFT as cgemm tf32",
                lambda: dft_gemm_fft2c(s, f_h, f_w_t),
                fft_oracle,
            )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    bench.error_row(
        name, shape, "cascade_step", "cuFFT callbacks (CuPy)", "not implemented: needs CuPy + LTO callbacks"
    )

    if name == GOAL_SCENARIO or bench.args.interpret:
        sweep_configs(bench, name, shape, x)


def sweep_configs(bench: Bench, name: str, shape: tuple[int, int, int, int], x: dict[str, Tensor]) -> None:
    """The fused cascade step under a few tile configurations (CUDA graph: GPU time only)."""
    from fastrecon.kernels import dc as kdc

    n, c, h, w = shape
    configs = [kdc.default_config(bench.device, n, c, h, w)]
    if bench.device.type == "cuda":
        for bw, bh, rbh, warps in [
            (64, 8, 4, 4),
            (64, 16, 8, 4),
            (128, 4, 2, 4),
            (128, 16, 8, 8),
            (256, 4, 2, 8),
        ]:
            for cpp in (0, 1, c):
                configs.append(kdc.LaunchConfig(bh, bw, rbh, warps, cpp))
    args = (x["kspace"], x["kspace0"], x["mask"], x["dc_weight"], x["sens"], x["image"])
    sampled = float(x["mask"].float().mean())
    for cfg in configs:
        impl = f"c-triton sweep {cfg.block_h}x{cfg.block_w}/{cfg.reduce_block_h} w{cfg.num_warps} cpp{cfg.coils_per_program}"

        def fn(cfg: Any = cfg) -> Any:
            return kdc.cascade_step_triton(*args, config=cfg)

        try:
            timed = _graphed(fn, bench.device) if bench.device.type == "cuda" else fn
        except Exception as exc:  # noqa: BLE001 - reported as a row
            bench.error_row(name, shape, "cascade_step", impl, f"{type(exc).__name__}: {exc}"[:300])
            continue
        bench.add(
            name,
            shape,
            "cascade_step",
            impl,
            timed,
            None,
            triton_model_bytes("cascade_step", n, c, h, w, sampled),
        )


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def provenance(device: torch.device, copy_bw: float, args: argparse.Namespace) -> dict[str, Any]:
    import triton

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, Triton interpreter)",
        "interpret": args.interpret,
        "copy_bandwidth_GBps": copy_bw / 1e9,
        "l2_flushed": not args.no_flush,
        "batch": args.batch,
        "iters": args.iters,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["sm_count"] = props.multi_processor_count
        info["capability"] = f"{props.major}.{props.minor}"
    return info


def goals(rows: list[Row]) -> dict[str, Any]:
    """The issue's goals on the knee scenario, batch 1 (p50 times; fraction on the pipeline's bytes)."""

    def p50(impl: str) -> float | None:
        for row in rows:
            if (
                row.scenario == GOAL_SCENARIO
                and row.op == "cascade_step"
                and row.impl == impl
                and row.error is None
            ):
                return row.p50_us
        return None

    fused, fastmri, best = p50("c-triton"), p50("a-fastmri"), p50("b-torch")
    frac = next(
        (
            r.model_frac_copy_bw
            for r in rows
            if r.scenario == GOAL_SCENARIO and r.impl == "c-triton" and r.op == "cascade_step"
        ),
        None,
    )
    out: dict[str, Any] = {"scenario": GOAL_SCENARIO}
    if fused and fastmri:
        out["speedup_vs_fastmri"] = fastmri / fused
        out["speedup_vs_fastmri_met"] = fastmri / fused >= GOALS["vs_fastmri"]
    if fused and best:
        out["speedup_vs_best_torch"] = best / fused
        out["speedup_vs_best_torch_met"] = best / fused >= GOALS["vs_best_torch"]
    if frac is not None:
        out["model_frac_copy_bw"] = frac
        out["frac_copy_bw_met"] = frac >= GOALS["frac_copy_bw"]
    return out


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0].rstrip("f") or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(info: dict[str, Any], rows: list[Row], goal: dict[str, Any]) -> None:
    print(f"# fastrecon bench dc  {info['date_utc']}")
    print(f"# device {info['device']}  torch {info['torch']}  triton {info['triton']}  cuda {info['cuda']}")
    print(f"# HBM copy bandwidth {info['copy_bandwidth_GBps']:.0f} GB/s  L2 flushed: {info['l2_flushed']}")
    header = f"{'scenario':8} {'shape':16} {'op':13} {'impl':44} {'p50 us':>9} {'p90 us':>9} {'io GB/s':>8} {'io %bw':>6} {'mdl GB/s':>8} {'mdl %bw':>7} {'rel err':>8}  error/note"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.scenario:8} {r.shape:16} {r.op:13} {r.impl:44} {_fmt(r.p50_us, '9.1f')} {_fmt(r.p90_us, '9.1f')} "
            f"{_fmt(r.io_gbps, '8.0f')} {_fmt(None if r.io_frac_copy_bw is None else 100 * r.io_frac_copy_bw, '6.1f')} "
            f"{_fmt(r.model_gbps, '8.0f')} {_fmt(None if r.model_frac_copy_bw is None else 100 * r.model_frac_copy_bw, '7.1f')} "
            f"{_fmt(r.max_rel_err, '8.1e')}  {r.error or r.note}"
        )
    print(f"# goals ({GOAL_SCENARIO}, batch {info['batch']}): {json.dumps(goal)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fastrecon.bench.dc", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", metavar="PATH", help="write rows + provenance as JSON")
    parser.add_argument(
        "--interpret", action="store_true", help="no GPU: tiny shapes, Triton interpreter on CPU"
    )
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--batch", type=int, default=1, help="slices per call (N)")
    parser.add_argument(
        "--sampled", type=float, default=0.125, help="fraction of sampled columns besides the centre"
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--no-flush", action="store_true", help="do not evict L2 before each run")
    args = parser.parse_args(argv)
    if args.interpret:
        args.iters, args.warmup = min(args.iters, 3), min(args.warmup, 1)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; raise :class:`BackendUnavailableError` when it cannot run here."""
    if args.interpret:
        # Must precede the first import of fastrecon.kernels.dc (Triton decides at decoration time).
        os.environ["TRITON_INTERPRET"] = "1"
        if "fastrecon.kernels.dc" in sys.modules and not sys.modules["fastrecon.kernels.dc"]._INTERPRETED:
            raise BackendUnavailableError(
                "fastrecon.kernels.dc was imported before --interpret could take effect"
            )
        device = torch.device("cpu")
        scenarios = INTERPRET_SCENARIOS
    else:
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "this benchmark needs a CUDA GPU (torch sees none). Use --interpret for a small CPU run "
                "through Triton's interpreter that checks the harness (its timings mean nothing)."
            )
        device = torch.device("cuda")
        scenarios = {k: v for k, v in SCENARIOS.items() if not args.scenario or k in args.scenario}
    bench = Bench(args, device)
    bench.measure_copy_bandwidth()
    for name, (c, h, w) in scenarios.items():
        run_scenario(bench, name, (args.batch, c, h, w))
    info = provenance(device, bench.copy_bw, args)
    goal = goals(bench.rows)
    return {"provenance": info, "goals": goal, "rows": [asdict(r) for r in bench.rows]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [Row(**r) for r in result["rows"]]
    print_table(result["provenance"], rows, result["goals"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
