"""Benchmark: fused data-consistency kernels vs eager torch, at real MRI matrix sizes.

    python -m fastrecon.bench.dc --out DIR                  # on a CUDA GPU: DIR/bench-dc.{json,csv}
    python -m fastrecon.bench.dc --interpret --out DIR      # no GPU: tiny shapes in Triton's interpreter
                                                            # (checks the harness; timings meaningless)

Scenarios: cine (10, 512, 246), knee (15, 640, 368), brain (16, 640, 320) as (C, H, W); batch 1 and 16
(batch 1 measures launch overhead and L2 more than bandwidth); x8 equispaced and random column masks.
For each op (soft_dc, sens_expand, sens_reduce, one cascade step of DC):

- ``a-fastmri``: fastMRI's own arithmetic (:mod:`fastrecon.bench._fastmri_ref`), and ``a-fastmri-compile``
  (``torch.compile``: inductor fuses the real-layout elementwise work);
- ``a-eager``: this package's eager reference (native complex64, ``torch.fft.fftshift``);
- ``b-torch`` (and ``b-torch-compile``): the best plain torch we could write
  (:class:`~fastrecon.bench._dc_baselines.BestTorch`); ``b-hybrid``: the exact hybrid-space form
  (1-D FFTs along W only; checked against the oracle after ``fftc_H``);
- ``c-triton``: the fused kernels through the custom op (``c-triton-direct`` without it);
- ``... (graph)``: the cascade step inside a CUDA graph (GPU time without launch overhead): kernels are
  compared on these rows (the goals use them);
- FFT strategy rows: cuFFT alone, the centred DFT as complex GEMMs (fp32, TF32), cuFFT callbacks
  (not implemented: an error row);
- a sweep of the kernels' tile configurations on the knee scenario (graph rows).

Every row: p50/p90/p99 (CUDA events, L2 evicted by reading a large buffer before each run; see
:mod:`fastrecon.bench._harness`), ``io_bytes`` (each input read once, each output written once),
``model_bytes`` (the passes an implementation implies: each 2-D cuFFT two passes, 4E; masked reads by
32-byte sectors), GB/s on both and their fraction of the copy bandwidth measured in the same run, and the
max relative error against a complex128 oracle of the same inputs (graph and sweep rows included).
Failed rows carry an ``error``; provenance is on every row.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fastrecon.bench import _dc_baselines as B
from fastrecon.bench import _fastmri_ref as fm
from fastrecon.bench import _harness as H
from fastrecon.errors import BackendUnavailableError

SCENARIOS: dict[str, tuple[int, int, int]] = {
    "cine": (10, 512, 246),
    "knee": (15, 640, 368),
    "brain": (16, 640, 320),
}
INTERPRET_SCENARIOS: dict[str, tuple[int, int, int]] = {"tiny-even": (4, 16, 12), "tiny-odd": (3, 9, 11)}
MASKS = ("equispaced-x8", "random-x8")
GOAL_SCENARIO = "knee"
GOALS = {"vs_fastmri": 4.0, "vs_best_torch": 2.0, "frac_copy_bw": 0.5}

Tensor = torch.Tensor
Fn = Callable[[], Any]


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


def graphed(fn: Fn, device: torch.device) -> Fn:
    """Capture ``fn`` (static inputs) in a CUDA graph; the returned callable replays it and returns the
    captured (static) outputs, so graph rows get a parity check like every other row."""
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
        static_out = fn()

    def replay() -> Any:
        graph.replay()
        return static_out

    return replay


class Bench:
    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        self.table = H.Table("dc", device)
        self.copy_bw = float("nan")

    def time(self, fn: Fn) -> H.Timing:
        return H.time_fn(
            fn, self.device, warmup=self.args.warmup, iters=self.args.iters, flush=not self.args.no_flush
        )

    def measure_copy_bandwidth(self) -> float:
        """Copy bandwidth (bytes/s) from a copy far larger than L2 (1 GiB; 4 MiB in the interpreter)."""
        size = (1 << 30) if self.device.type == "cuda" else (4 << 20)
        src = torch.empty(size, dtype=torch.int8, device=self.device).fill_(1)
        dst = torch.empty_like(src)
        timing = H.time_fn(
            lambda: dst.copy_(src),
            self.device,
            warmup=self.args.warmup,
            iters=max(20, self.args.iters // 5),
            flush=False,
        )
        self.copy_bw = 2 * size / (timing.p50_ms * 1e-3)
        self.table.add(
            {"scenario": "-", "shape": f"{size} B", "op": "copy", "impl": "torch copy_", **_us(timing),
             "io_bytes": 2 * size, "io_gbps": self.copy_bw / 1e9, "io_frac_copy_bw": 1.0}
        )  # fmt: skip
        return self.copy_bw

    def add(
        self,
        base: H.Row,
        op: str,
        impl: str,
        fn: Fn,
        oracle: Any = None,
        model_bytes: int | None = None,
        note: str = "",
        check: Callable[[Any], Any] | None = None,
    ) -> H.Row:
        """One row: parity (``check`` maps the output to the oracle's space first), then timing."""
        n, c, h, w = base["dims"]
        row: H.Row = {**{k: v for k, v in base.items() if k != "dims"}, "op": op, "impl": impl, "note": note}
        row["io_bytes"] = B.io_bytes(op, n, c, h, w)
        row["model_bytes"] = model_bytes

        def measure() -> H.Row:
            out = fn()
            more: H.Row = {}
            if oracle is not None:
                more["max_rel_err"] = _rel_err(check(out) if check else out, oracle)
            timing = self.time(fn)
            more.update(_us(timing))
            seconds = timing.p50_ms * 1e-3
            more["io_gbps"] = row["io_bytes"] / seconds / 1e9
            more["io_frac_copy_bw"] = row["io_bytes"] / seconds / self.copy_bw
            if model_bytes is not None:
                more["model_gbps"] = model_bytes / seconds / 1e9
                more["model_frac_copy_bw"] = model_bytes / seconds / self.copy_bw
            return more

        return self.table.run(row, measure)

    def error_row(self, base: H.Row, op: str, impl: str, error: str) -> None:
        self.table.add(
            {**{k: v for k, v in base.items() if k != "dims"}, "op": op, "impl": impl, "error": error}
        )


def _us(timing: H.Timing) -> H.Row:
    return {
        "p50_us": timing.p50_ms * 1e3,
        "p90_us": timing.p90_ms * 1e3,
        "p99_us": timing.p99_ms * 1e3,
        "runs": timing.runs,
    }


def _inputs(n: int, c: int, h: int, w: int, device: torch.device, mask_name: str) -> dict[str, Tensor]:
    from fastrecon.bench.model import mask_for

    gen = torch.Generator(device="cpu").manual_seed(0)

    def randc(*shape: int) -> Tensor:
        return torch.randn(*shape, dtype=torch.complex64, generator=gen).to(device)

    return {
        "kspace": randc(n, c, h, w),
        "kspace0": randc(n, c, h, w),
        "sens": randc(n, c, h, w),
        "image": randc(n, h, w),
        "mask": mask_for(mask_name, w, seed=0).to(device),
        "dc_weight": torch.tensor([0.7], device=device),
    }


_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled(name: str) -> Callable[..., Any]:
    """``torch.compile(dynamic=True)`` of a module-level baseline, once per process."""
    if name not in _COMPILED:
        fn = {"fastmri": fm.cascade_step, "best": B.best_step}[name]
        _COMPILED[name] = torch.compile(fn, dynamic=True)
    return _COMPILED[name]


def run_scenario(bench: Bench, name: str, shape: tuple[int, int, int, int], mask_name: str) -> None:
    from fastrecon.kernels import dc as kdc
    from fastrecon.kernels import ops as kops

    n, c, h, w = shape
    dev = bench.device
    x = _inputs(n, c, h, w, dev, mask_name)
    k, k0, s, img, mask, wt = x["kspace"], x["kspace0"], x["sens"], x["image"], x["mask"], x["dc_weight"]
    sectors = B.sector_fraction(mask)
    base: H.Row = {
        "scenario": name, "shape": "x".join(map(str, shape)), "batch": n, "mask": mask_name,
        "sampled": float(mask.float().mean()), "sectors": sectors, "dims": shape,
    }  # fmt: skip
    r = torch.view_as_real
    best, hybrid = B.BestTorch(h, w, dev), B.HybridTorch(w, dev)
    fm_mask = mask.reshape(1, 1, 1, w, 1)
    hk, hk0 = hybrid.to_hybrid(k), hybrid.to_hybrid(k0)

    c128 = {key: (v.to(torch.complex128) if v.is_complex() else v) for key, v in x.items()}
    w64 = wt.double()
    oracles = {
        "soft_dc": kops.soft_dc_ref(c128["kspace"], c128["kspace0"], mask, w64),
        "sens_expand": kops.sens_expand_ref(c128["image"], c128["sens"]),
        "sens_reduce": kops.sens_reduce_ref(c128["kspace"], c128["sens"]),
        "cascade_step": kops.cascade_step_ref(c128["kspace"], c128["kspace0"], mask, w64, c128["sens"], c128["image"]),
    }  # fmt: skip
    del c128

    def from_real(out: Any) -> Any:
        return tuple(torch.view_as_complex(o.contiguous()) for o in out) if isinstance(out, tuple) else out

    def from_hybrid(out: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return hybrid.to_kspace(out[0]), out[1]

    best_args = best.step_args(mask, wt)
    impls: dict[str, dict[str, tuple[Fn, Callable[[Any], Any] | None]]] = {
        "soft_dc": {
            "a-fastmri": (lambda: fm.soft_dc(r(k), r(k0), fm_mask, wt), None),
            "a-eager": (lambda: kops.soft_dc_ref(k, k0, mask, wt), None),
            "b-torch": (lambda: best.soft_dc(k, k0, mask, wt), None),
            "c-triton": (lambda: kops.soft_dc(k, k0, mask, wt), None),
        },
        "sens_expand": {
            "a-fastmri": (lambda: fm.sens_expand(r(img), r(s)), None),
            "a-eager": (lambda: kops.sens_expand_ref(img, s), None),
            "b-torch": (lambda: best.sens_expand(img, s), None),
            "c-triton": (lambda: kops.sens_expand(img, s), None),
        },
        "sens_reduce": {
            "a-fastmri": (lambda: fm.sens_reduce(r(k), r(s)), None),
            "a-eager": (lambda: kops.sens_reduce_ref(k, s), None),
            "b-torch": (lambda: best.sens_reduce(k, s), None),
            "c-triton": (lambda: kops.sens_reduce(k, s), None),
        },
        "cascade_step": {
            "a-fastmri": (lambda: fm.cascade_step(r(k), r(k0), fm_mask, wt, r(s), r(img)), from_real),
            "a-fastmri-compile": (
                lambda: compiled("fastmri")(r(k), r(k0), fm_mask, wt, r(s), r(img)),
                from_real,
            ),
            "a-eager": (lambda: kops.cascade_step_ref(k, k0, mask, wt, s, img), None),
            "b-torch": (lambda: best.cascade_step(k, k0, mask, wt, s, img), None),
            "b-torch-compile": (lambda: compiled("best")(k, k0, best_args[0], s, img, *best_args[1:]), None),
            "b-hybrid": (lambda: hybrid.cascade_step(hk, hk0, mask, wt, s, img), from_hybrid),
            "c-triton": (lambda: kops.cascade_step(k, k0, mask, wt, s, img), None),
            "c-triton-direct": (lambda: kdc.cascade_step_triton(k, k0, mask, wt, s, img), None),
        },
    }
    if not best.even:
        del impls["cascade_step"]["b-torch-compile"]  # best_step is the even-size form
    for op, table in impls.items():
        for impl, (fn, check) in table.items():
            if impl.endswith("-compile") and bench.args.no_compile:
                continue
            model = B.triton_model_bytes(op, n, c, h, w, sectors) if impl.startswith("c-") else None
            if impl == "b-hybrid":
                model = B.hybrid_model_bytes(n, c, h, w, sectors)
            bench.add(base, op, impl, fn, oracles[op], model_bytes=model, check=check)
        if op == "cascade_step":
            for impl in ("a-fastmri", "b-torch", "b-hybrid", "c-triton"):
                fn, check = table[impl]
                model = B.triton_model_bytes(op, n, c, h, w, sectors) if impl.startswith("c-") else None
                try:
                    replay = graphed(fn, dev)
                except Exception as exc:  # noqa: BLE001 - reported as a row
                    bench.error_row(base, op, f"{impl} (graph)", H.error_text(exc))
                    continue
                bench.add(base, op, f"{impl} (graph)", replay, oracles[op], model_bytes=model, check=check)

    add_residual_rows(bench, base, x, oracles["cascade_step"][1])

    # FFT strategies: what the transforms alone cost, and the DFT-as-GEMM alternative.
    fft_oracle = kops.sens_expand_ref(
        torch.ones(n, h, w, dtype=torch.complex128, device=dev), s.to(torch.complex128)
    )
    bench.add(base, "fft2", "cuFFT unnormalised", lambda: torch.fft.fft2(s), note="no centring, no scale")
    bench.add(
        base,
        "fft2",
        "cuFFT ortho",
        lambda: torch.fft.fft2(s, norm="ortho"),
        note="torch scales in a 2nd pass",
    )
    bench.add(base, "fft2", "fft2c eager", lambda: kops.sens_expand_ref(torch.ones_like(img), s), fft_oracle)
    f_h, f_w_t = B.centred_dft_matrix(h, dev), B.centred_dft_matrix(w, dev).T.contiguous()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        bench.add(base, "fft2", "centred DFT as cgemm fp32", lambda: B.dft_gemm_fft2c(s, f_h, f_w_t), fft_oracle,
                  note=f"{8 * n * c * h * w * (h + w) / 1e9:.1f} GFLOP")  # fmt: skip
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            bench.add(
                base, "fft2", "centred DFT as cgemm tf32", lambda: B.dft_gemm_fft2c(s, f_h, f_w_t), fft_oracle
            )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    bench.error_row(
        base, "cascade_step", "cuFFT callbacks (CuPy)", "not implemented: needs CuPy + LTO callbacks"
    )

    if (name == GOAL_SCENARIO and mask_name == MASKS[0]) or bench.args.interpret:
        sweep_configs(bench, base, x, oracles["cascade_step"])


def add_residual_rows(bench: Bench, base: H.Row, x: dict[str, Tensor], image_oracle: Tensor) -> None:
    """One cascade in the residual form (``fastrecon.physics.hybrid``), from the state equivalent to the
    2-D step's input k-space: the x update and the rho update, torch (partial DFTs as complex matmuls)
    and the fused Triton kernels. Checked on the step's image output ``R F^-1 k'`` (the oracle's)."""
    from fastrecon.kernels import ops as kops
    from fastrecon.physics.coils import sens_reduce
    from fastrecon.physics.fft import ifftc
    from fastrecon.physics.hybrid import ResidualPlan, residual_rho_update, residual_x_update

    k, k0, s, img, mask, wt = x["kspace"], x["kspace0"], x["sens"], x["image"], x["mask"], x["dc_weight"]
    try:
        plan = ResidualPlan(k0, mask, s)
    except Exception as exc:  # noqa: BLE001 - a 2-D mask has no residual form: reported as a row
        bench.error_row(base, "cascade_step_residual", "b-residual", H.error_text(exc))
        return
    columns = torch.nonzero(mask.reshape(-1)).flatten()  # a shared (W,) mask: the sampled columns in order
    x_state = sens_reduce(k, s)
    rho = (ifftc(k - k0, -2))[..., columns].contiguous()  # P (h - h0) for the 2-D step's state k
    phi = plan.phi.to(torch.float32)
    for impl, (x_up, rho_up) in {
        "b-residual": (residual_x_update, residual_rho_update),
        "c-triton-residual": (kops.residual_x_update, kops.residual_rho_update),
    }.items():

        def step(x_up: Any = x_up, rho_up: Any = rho_up) -> Tensor:
            x_next = x_up(x_state, rho, wt, plan.inverse_p, s, phi, img)
            rho_up(rho, wt, plan.forward_p, s, img)
            return x_next

        bench.add(
            base, "cascade_step_residual", impl, step, image_oracle, note=f"Mp={columns.numel()} columns"
        )


def sweep_configs(bench: Bench, base: H.Row, x: dict[str, Tensor], oracle: Any) -> None:
    """The fused cascade step under a few tile configurations (CUDA graph: GPU time only), each checked."""
    from fastrecon.kernels import dc as kdc

    n, c, h, w = base["dims"]
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
    model = B.triton_model_bytes("cascade_step", n, c, h, w, base["sectors"])
    for cfg in configs:
        impl = f"c-triton sweep {cfg.block_h}x{cfg.block_w}/{cfg.reduce_block_h} w{cfg.num_warps} cpp{cfg.coils_per_program}"

        def fn(cfg: Any = cfg) -> Any:
            return kdc.cascade_step_triton(*args, config=cfg)

        try:
            timed = graphed(fn, bench.device) if bench.device.type == "cuda" else fn
        except Exception as exc:  # noqa: BLE001 - reported as a row
            bench.error_row(base, "cascade_step", impl, H.error_text(exc))
            continue
        bench.add(base, "cascade_step", impl, timed, oracle, model)


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def goals(rows: list[H.Row]) -> dict[str, Any]:
    """The issue's goals on the knee scenario at the largest batch, x8 equispaced, on the CUDA-graph rows
    (GPU time without launch overhead; p50; fraction of copy bandwidth on the pipeline's bytes)."""
    batch = max((r.get("batch") or 0 for r in rows if r.get("scenario") == GOAL_SCENARIO), default=0)

    def pick(impl: str) -> H.Row | None:
        for row in rows:
            if (
                row.get("scenario") == GOAL_SCENARIO and row.get("batch") == batch and row.get("mask") == MASKS[0]
                and row.get("op") == "cascade_step" and row.get("impl") == impl and not row.get("error")
            ):  # fmt: skip
                return row
        return None

    fused, fastmri, best = pick("c-triton (graph)"), pick("a-fastmri (graph)"), pick("b-torch (graph)")
    out: dict[str, Any] = {"scenario": GOAL_SCENARIO, "batch": batch, "rows": "CUDA graph"}
    if fused and fastmri:
        out["speedup_vs_fastmri"] = fastmri["p50_us"] / fused["p50_us"]
        out["speedup_vs_fastmri_met"] = out["speedup_vs_fastmri"] >= GOALS["vs_fastmri"]
    if fused and best:
        out["speedup_vs_best_torch"] = best["p50_us"] / fused["p50_us"]
        out["speedup_vs_best_torch_met"] = out["speedup_vs_best_torch"] >= GOALS["vs_best_torch"]
    if fused and fused.get("model_frac_copy_bw") is not None:
        out["model_frac_copy_bw"] = fused["model_frac_copy_bw"]
        out["frac_copy_bw_met"] = fused["model_frac_copy_bw"] >= GOALS["frac_copy_bw"]
    return out


TABLE = ("scenario", "batch", "mask", "op", "impl", "p50_us", "p90_us", "io_gbps", "io_frac_copy_bw",
         "model_gbps", "model_frac_copy_bw", "max_rel_err", "error", "note")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fastrecon.bench.dc", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", metavar="DIR", help="write DIR/bench-dc.json and DIR/bench-dc.csv")
    parser.add_argument("--json", metavar="PATH", help="(old spelling) write rows + provenance as JSON here")
    parser.add_argument(
        "--interpret", action="store_true", help="no GPU: tiny shapes, Triton interpreter on CPU"
    )
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--batch", default="1,16", help="comma-separated slices per call (default 1,16)")
    parser.add_argument("--mask", action="append", choices=MASKS, help="default: both")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--no-flush", action="store_true", help="do not evict L2 before each run")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baselines")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if args.interpret:
        args.iters, args.warmup = min(args.iters, 3), min(args.warmup, 1)
        args.batches = [min(b, 2) for b in args.batches]
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
    for batch in sorted(set(args.batches)):
        for name, (c, h, w) in scenarios.items():
            for mask_name in args.mask or MASKS:
                run_scenario(bench, name, (batch, c, h, w), mask_name)
    meta = {"copy_bandwidth_GBps": bench.copy_bw / 1e9, "l2_flushed": not args.no_flush, "iters": args.iters,
            "interpret": args.interpret, "goals": goals(bench.table.rows)}  # fmt: skip
    return {"meta": meta, "rows": bench.table.rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, meta = result["rows"], result["meta"]
    first = rows[0] if rows else {}
    print(f"# fastrecon bench dc  {first.get('date_utc')}  {first.get('device_name')}  torch {first.get('torch')}  "
          f"triton {first.get('triton')}  cuda {first.get('cuda')}")  # fmt: skip
    print(f"# copy bandwidth {meta['copy_bandwidth_GBps']:.0f} GB/s  L2 flushed: {meta['l2_flushed']}")
    print(H.format_table(rows, TABLE))
    print(f"# goals: {meta['goals']}")
    if args.out:
        for path in (
            H.write_json(Path(args.out) / "bench-dc.json", rows, meta),
            H.write_csv(Path(args.out) / "bench-dc.csv", rows),
        ):
            print(f"# wrote {path}")
    if args.json:
        print(f"# wrote {H.write_json(args.json, rows, meta)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
