"""Model benchmark: model x backend x precision x batch x shape, every fast path beside eager fp32.

    python -m fastrecon.bench.model --model demo-x8 --backend eager,compile --batch 1,4 --out DIR
    fastrecon bench ...                                   # the same, with plots (see fastrecon.bench.cli)

Per scenario, in one run and on the same random (seeded, never zero) masked k-space:

- load: ``recon.with_backend(backend, precision)`` of one eager fp32 reference model (same weights;
  random-init weights get seeded non-zero ViT heads, since a zero head returns the zero-filled input);
- first call at the batch (compile / engine build included) -> ``first_call_s``; ``compile_s`` is
  that minus a steady-state call;
- throughput at the batch: ``tput_*`` quantiles of ``reconstruct(kspace[:B], batch_size=B)``, slices/s
  from the median; peak memory of one steady-state call;
- latency at batch 1: ``lat_b1_*`` p50/p90/p99 (>= 50 runs on GPU by default; fewer on CPU, the count
  is in ``lat_b1_runs``); for a batch-1 row the same timed runs give the throughput and the latency
  (one compiled graph, one set of runs);
- parity against eager fp32 on the same input through :func:`fastrecon.parity.compare`;
- roofline: FLOPs per slice (``torch.utils.flop_counter``; encoder, decoders and sensitivity network,
  FFTs not counted) against a GEMM peak measured in the same run in the row's precision, the DC's
  minimum bytes (2E per cascade, E = C*H*W*8) against the measured copy bandwidth; ``floor_ms_per_slice``
  is the larger of the two times, ``frac_of_floor`` how close the row's per-slice time is to it;
  the encoder and one DC step are also timed alone through the backend's model seams.

``recon.info()`` (what actually ran) goes into each row. A backend that fails (not registered, missing
dependency, no GPU, a precision it refuses, a numerical failure) gives a row with its ``error``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from fastrecon.bench import _harness as H

SHAPES: dict[str, tuple[int, int, int]] = {
    "cine": (10, 512, 246),  # CMRxRecon cine (C, H, W): 10 coils, readout 512, 246 phase encodes
    "knee": (15, 640, 368),  # fastMRI knee
    "brain": (16, 640, 320),  # fastMRI brain (16 coils)
    "demo": (8, 128, 128),  # the demo model's simulated slices
    "tiny": (4, 32, 32),  # tests: seconds, not minutes
}
"""Named (coils, readout H, phase-encode W) shapes."""

ACCELERATIONS = (4, 8, 10)
CENTER_FRACTION = 0.08
MASKS = tuple(f"{kind}-x{r}" for kind in ("equispaced", "random") for r in ACCELERATIONS)
"""``equispaced-xR``: fastMRI's EquispacedMaskFractionFunc (R with the centre counted, 8 % ACS);
``random-xR``: fastMRI's RandomMaskFunc (8 % ACS). Both seeded."""

TINY_MODELS = ("bench-tiny-vit", "bench-tiny-varnet")
"""Small configs registered on demand (2 cascades): the harness's own tests and a CPU ViT row."""


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix. ``weights``: ``"random"`` (seeded init, non-zero heads), ``"auto"``
    (the registry's checkpoint, e.g. the bundled demo-x8) or a checkpoint path."""

    model: str
    backend: str
    precision: str
    batch: int
    shape: str
    mask: str = "equispaced-x8"
    device: str = "cpu"
    weights: str = "random"

    def group(self) -> tuple[str, str, str, str, str]:
        """Scenarios sharing model, weights, device, shape and mask share one reference and input."""
        return (self.model, self.weights, self.device, self.shape, self.mask)


@dataclass
class Settings:
    """How much to measure. ``None`` iteration counts pick the device default (GPU: 50 latency runs,
    20 throughput runs; CPU: 10 and 5). ``max_seconds`` caps the timed runs of one measurement."""

    warmup: int = 2
    throughput_iters: int | None = None
    latency_iters: int | None = None
    max_seconds: float | None = 60.0
    roofline: bool = True
    components: bool = True
    seed: int = 0
    keep_samples: bool = True

    def iters(self, device: torch.device) -> tuple[int, int]:
        gpu = device.type == "cuda"
        tput = self.throughput_iters or (20 if gpu else 5)
        lat = self.latency_iters or (50 if gpu else 10)
        return tput, lat


def matrix(
    models: Sequence[str],
    backends: Sequence[str],
    precisions: Sequence[str],
    batches: Sequence[int],
    shapes: Sequence[str],
    masks: Sequence[str] = ("equispaced-x8",),
    device: str = "cpu",
    weights: str = "random",
) -> list[Scenario]:
    """The cross product, with each group's eager fp32 reference row first (added when missing).
    A backend written ``name:precision`` (e.g. ``compile:fp16``) runs that precision only."""
    pairs: list[tuple[str, str]] = []
    for backend in backends:
        name, _, only = backend.partition(":")
        pairs.extend((name, p) for p in ([only] if only else precisions))
    out: list[Scenario] = []
    for model, shape, mask, batch in itertools.product(models, shapes, masks, batches):
        base = Scenario(model, "eager", "fp32", batch, shape, mask, device, weights)
        rows = [replace(base, backend=b, precision=p) for b, p in dict.fromkeys(pairs)]
        if base not in rows:
            rows.insert(0, base)
        else:
            rows.remove(base)
            rows.insert(0, base)
        out.extend(rows)
    return out


# ----------------------------------------------------------------------------------------------------
# Inputs and models
# ----------------------------------------------------------------------------------------------------


def mask_for(name: str, width: int, seed: int = 0) -> torch.Tensor:
    """The ``(W,)`` bool column mask called ``name`` (``equispaced-x8``, ``random-x4``, ...)."""
    from fastrecon.errors import UnknownNameError
    from fastrecon.physics.masks import EquispacedMaskFractionFunc, RandomMaskFunc

    kind, _, accel = name.partition("-x")
    if kind not in ("equispaced", "random") or not accel.isdigit():
        raise UnknownNameError(f"unknown mask {name!r}; expected one of {', '.join(MASKS)} (any integer R).")
    cls = EquispacedMaskFractionFunc if kind == "equispaced" else RandomMaskFunc
    return cls([CENTER_FRACTION], [int(accel)], seed=seed)(width, seed=seed)


def shape_of(name: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of a named shape, or ``"CxHxW"`` literally."""
    from fastrecon.errors import UnknownNameError

    if name in SHAPES:
        return SHAPES[name]
    parts = name.lower().split("x")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        c, h, w = (int(p) for p in parts)
        return c, h, w
    raise UnknownNameError(f"unknown shape {name!r}; expected one of {', '.join(SHAPES)} or CxHxW.")


def random_kspace(num: int, shape: tuple[int, int, int], mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``(num, C, H, W)`` complex64 standard-normal k-space (seeded, never zero), zero outside ``mask``."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(num, *shape, dtype=torch.complex64, generator=gen)
    return k * mask.to(k.real.dtype)


def register_tiny_models() -> None:
    """Register :data:`TINY_MODELS` (idempotent): a 2-cascade tiny-ViT model and a 2-cascade VarNet."""
    from fastrecon.registry import (
        TINY_DEMO_ENCODER,
        DecoderConfig,
        InputContract,
        ModelConfig,
        SensConfig,
        VarNetConfig,
        WeightsInfo,
        register,
    )

    common = {
        "contract": InputContract(acceleration=8, acs_lines=3),
        "num_cascades": 2,
        "sens": SensConfig(chans=4, pools=2),
    }
    register(
        ModelConfig(
            name="bench-tiny-vit",
            family="vit_unrolled",
            weights=WeightsInfo(filename="bench-tiny-vit.safetensors", licence="none"),
            encoder=TINY_DEMO_ENCODER,
            decoder=DecoderConfig(channels=(32, 16, 16, 8), input_channels=8),
            description="benchmark-only tiny ViT config (2 cascades, random weights)",
            **common,  # type: ignore[arg-type]
        ),
        overwrite=True,
    )
    register(
        ModelConfig(
            name="bench-tiny-varnet",
            family="varnet",
            weights=WeightsInfo(filename="bench-tiny-varnet.safetensors", licence="none"),
            varnet=VarNetConfig(chans=4, pools=2),
            description="benchmark-only tiny VarNet config (2 cascades, random weights)",
            **common,  # type: ignore[arg-type]
        ),
        overwrite=True,
    )


def seed_heads(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> int:
    """Seeded non-zero weights (normal, ``std``) for each ViT cascade's zero-initialised head, so a
    random-init model does real work; returns how many heads were set (0 for VarNet)."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for cascade in getattr(model, "cascades", []):
            head = getattr(getattr(cascade, "denoiser", None), "head", None)
            if head is None:
                continue
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * std)
            if head.bias is not None:
                head.bias.copy_(torch.randn(head.bias.shape, generator=gen) * std * 0.1)
            count += 1
    return count


def load_reference(model: str, weights: str, device: str, seed: int = 0) -> Any:
    """The eager fp32 :class:`~fastrecon.api.Reconstructor` every other backend is copied from."""
    import fastrecon

    if model in TINY_MODELS:
        register_tiny_models()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random(ly)?[- ]initialised.*")
        warnings.filterwarnings("ignore", message=".*random weights.*")
        recon = fastrecon.load(
            model, weights=None if weights == "random" else weights, device=device, backend="eager"
        )
    if weights == "random":
        seed_heads(recon.model, seed)
    return recon


# ----------------------------------------------------------------------------------------------------
# Roofline: work per slice and the device's limits, measured in the same run
# ----------------------------------------------------------------------------------------------------

_GEMM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def gemm_peak_flops(device: str, precision: str) -> float:
    """FLOP/s of a large square matmul in ``precision`` on ``device`` (fp32 on GPU: TF32 off)."""
    dev = torch.device(device)
    n = 8192 if dev.type == "cuda" else 1024
    a = torch.randn(n, n, device=dev).to(_GEMM_DTYPES[precision])
    b = torch.randn(n, n, device=dev).to(_GEMM_DTYPES[precision])
    timing = H.time_fn(lambda: a @ b, dev, warmup=1, iters=10 if dev.type == "cuda" else 3, flush=False)
    return 2 * n**3 / (timing.min_ms * 1e-3)


@functools.cache
def copy_bandwidth(device: str) -> float:
    """Bytes/s of a copy far larger than any cache (1 GiB on GPU, 256 MiB on CPU), read + write counted."""
    dev = torch.device(device)
    size = (1 << 30) if dev.type == "cuda" else (256 << 20)
    src = torch.ones(size // 4, device=dev)
    dst = torch.empty_like(src)
    timing = H.time_fn(
        lambda: dst.copy_(src), dev, warmup=2, iters=20 if dev.type == "cuda" else 5, flush=False
    )
    return 2 * size / (timing.p50_ms * 1e-3)


def _tf32() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32)


@dataclass
class Work:
    """Work of one slice through the whole model (``flops``) and its encoder calls (``encoder_flops``),
    and the DC's minimum bytes (``dc_bytes``: 2E per cascade)."""

    flops: float
    encoder_flops: float | None
    dc_bytes: float
    cascades: int


def count_work(recon: Any, kspace1: torch.Tensor, mask: torch.Tensor) -> Work:
    """Count FLOPs of one slice with :class:`torch.utils.flop_counter.FlopCounterMode` (eager fp32)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = recon.model
    with FlopCounterMode(display=False) as counter:
        recon.reconstruct(kspace1, mask, batch_size=1)
    total = float(counter.get_total_flops())
    encoder_flops = None
    encode = model.encoder_call()
    if encode is not None:
        _, _, h, w = kspace1.shape
        magnitude = torch.rand(1, 1, h, w, device=recon.device)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            encode(magnitude)
        encoder_flops = float(counter.get_total_flops()) * len(model.cascades)
    _, c, h, w = kspace1.shape
    return Work(total, encoder_flops, 2.0 * c * h * w * 8 * len(model.cascades), len(model.cascades))


def time_components(recon: Any, kspace: torch.Tensor, mask: torch.Tensor, iters: int) -> H.Row:
    """Time the encoder call and one DC step alone, through the backend's model seams, at the batch."""
    from fastrecon.prepare import prepare

    model = recon.model
    device = recon.device
    prepared = prepare(kspace, mask, min_acs_lines=model.min_acs_lines, device=device)
    out: H.Row = {}
    with torch.inference_mode():
        with model._networks(device):
            sens = model.sens_net(prepared.kspace, prepared.mask, prepared.acs)
        plan = model.dc.bind(prepared.kspace, prepared.mask, sens)
        image = plan.image()
        gen = torch.Generator().manual_seed(1)
        correction = (0.1 * torch.randn(image.shape, dtype=torch.complex64, generator=gen)).to(device)
        weight = model.cascades[0].dc_weight
        dc = H.time_fn(lambda: plan.step(correction, weight), device, warmup=1, iters=iters)
        out["dc_step_ms"] = dc.p50_ms
        encode = model.encoder_call()
        if encode is not None:
            magnitude = (image.abs() / image.abs().amax()).unsqueeze(1).float()

            def run_encoder() -> Any:
                with model._networks(device):
                    return encode(magnitude)

            enc = H.time_fn(run_encoder, device, warmup=1, iters=iters)
            out["encoder_ms"] = enc.p50_ms
    return out


def roofline_fields(row: H.Row, work: Work, device: str, precision: str) -> H.Row:
    """Achieved rates and the floor for ``row`` (which holds ``slices_per_s`` and component times)."""
    peak = gemm_peak_flops(device, precision)
    bandwidth = copy_bandwidth(device)
    batch = row["batch"]
    compute_s = work.flops / peak
    memory_s = work.dc_bytes / bandwidth
    floor_s = max(compute_s, memory_s)
    out: H.Row = {
        "flops_per_slice": work.flops,
        "encoder_flops_per_slice": work.encoder_flops,
        "dc_bytes_per_slice": work.dc_bytes,
        "peak_tflops": peak / 1e12,
        "peak_note": f"measured {precision} GEMM"
        + (
            f" (TF32 {'on' if _tf32() else 'off'})"
            if precision == "fp32" and device.startswith("cuda")
            else ""
        ),
        "copy_gbps": bandwidth / 1e9,
        "floor_ms_per_slice": floor_s * 1e3,
        "floor_bound": "compute" if compute_s >= memory_s else "memory",
    }
    if row.get("slices_per_s"):
        per_slice = 1.0 / row["slices_per_s"]
        out["achieved_tflops"] = work.flops / per_slice / 1e12
        out["frac_of_floor"] = floor_s / per_slice
    if row.get("encoder_ms") and work.encoder_flops:
        per_call = work.encoder_flops / work.cascades * batch
        out["encoder_tflops"] = per_call / (row["encoder_ms"] * 1e-3) / 1e12
        out["encoder_frac_peak"] = out["encoder_tflops"] * 1e12 / peak
    if row.get("dc_step_ms"):
        step_bytes = work.dc_bytes / work.cascades * batch
        out["dc_gbps"] = step_bytes / (row["dc_step_ms"] * 1e-3) / 1e9
        out["dc_frac_copy_bw"] = out["dc_gbps"] * 1e9 / bandwidth
    return out


# ----------------------------------------------------------------------------------------------------
# Running the matrix
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Group:
    reference: Any
    kspace: torch.Tensor
    mask: torch.Tensor
    work: Work | None = None
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)

    def expected(self, batch: int) -> torch.Tensor:
        """The eager fp32 output for the first ``batch`` slices (computed once)."""
        if batch not in self.outputs:
            self.outputs[batch] = self.reference.reconstruct(self.kspace[:batch], self.mask, batch_size=batch)
        return self.outputs[batch]


def measure(scenario: Scenario, group: _Group, settings: Settings) -> H.Row:
    """All figures of one scenario (raises on failure; :func:`run` turns that into the row's error)."""
    from fastrecon.parity import compare

    device = group.reference.device
    tput_iters, lat_iters = settings.iters(device)
    reference = group.reference
    same = scenario.backend == "eager" and scenario.precision == "fp32"
    out: H.Row = {}
    if same:
        recon, out["load_s"] = reference, 0.0
    else:
        recon, out["load_s"] = H.time_once(
            lambda: reference.with_backend(scenario.backend, scenario.precision), device
        )
    batch = scenario.batch
    x = group.kspace[:batch]

    def call() -> torch.Tensor:
        return recon.reconstruct(x, group.mask, batch_size=batch)  # type: ignore[no-any-return]

    result, out["first_call_s"] = H.time_once(call, device)
    parity = compare(result, group.expected(batch), precision=scenario.precision)
    out.update({f"parity_{k}": v for k, v in parity.as_row().items() if k != "precision"})
    # At batch 1 one set of timed runs (the latency count) gives both the throughput and the latency.
    tput = H.time_fn(
        call,
        device,
        warmup=max(settings.warmup - 1, 0),
        iters=lat_iters if batch == 1 else tput_iters,
        max_seconds=settings.max_seconds,
    )
    out.update(tput.as_row("tput"))
    out["slices_per_s"] = batch / (tput.p50_ms * 1e-3)
    out["ms_per_slice"] = tput.p50_ms / batch
    out["compile_s"] = max(0.0, out["first_call_s"] - tput.p50_ms * 1e-3)
    with H.peak_memory(device) as peak:
        call()
    out["peak_mem_mb"], out["peak_mem_method"] = peak.mb, peak.method
    if batch == 1:
        lat = tput
        out["first_call_b1_s"] = out["first_call_s"]
    else:
        x1 = group.kspace[:1]

        def call1() -> torch.Tensor:
            return recon.reconstruct(x1, group.mask, batch_size=1)  # type: ignore[no-any-return]

        _, out["first_call_b1_s"] = H.time_once(call1, device)
        lat = H.time_fn(
            call1,
            device,
            warmup=max(settings.warmup - 1, 0),
            iters=lat_iters,
            max_seconds=settings.max_seconds,
        )
    out.update(lat.as_row("lat_b1"))
    if settings.keep_samples:
        out["lat_b1_samples_ms"] = list(lat.samples_ms)
    if settings.components:
        with contextlib.suppress(Exception):  # component timing is optional; its absence is visible
            out.update(time_components(recon, x, group.mask, iters=3 if device.type == "cpu" else 20))
    out["info"] = recon.info()
    if group.work is not None:
        out.update(roofline_fields({**out, "batch": batch}, group.work, str(device), scenario.precision))
    return out


def run(
    scenarios: Sequence[Scenario],
    settings: Settings | None = None,
    progress: Callable[[Scenario, bool], None] | None = None,
) -> list[H.Row]:
    """Measure every scenario; rows in scenario order, failures included with their ``error``.
    ``progress(scenario, finished)`` is called before and after each one."""
    settings = settings or Settings()
    rows: list[H.Row] = []
    groups: dict[tuple[str, ...], _Group | BaseException] = {}
    largest: dict[tuple[str, ...], int] = {}
    for scenario in scenarios:
        largest[scenario.group()] = max(largest.get(scenario.group(), 1), scenario.batch)
    for scenario in scenarios:
        if progress is not None:
            progress(scenario, False)
        key = scenario.group()
        if key not in groups:
            try:
                groups[key] = _build_group(scenario, largest[key], settings)
            except Exception as exc:  # noqa: BLE001 - every scenario of the group becomes an error row
                groups[key] = exc
        table = H.Table("model", scenario.device if _device_ok(scenario.device) else "cpu")
        row: H.Row = {**asdict(scenario), "shape_chw": "x".join(map(str, _safe_shape(scenario.shape)))}
        entry = groups[key]
        if isinstance(entry, BaseException):
            row["error"] = "reference: " + H.error_text(entry)
            rows.append(table.add(row))
        else:
            rows.append(table.run(row, functools.partial(measure, scenario, entry, settings)))
        if progress is not None:
            progress(scenario, True)
    return rows


def _device_ok(device: str) -> bool:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return False
    return dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_available())


def _safe_shape(name: str) -> tuple[int, ...]:
    try:
        return shape_of(name)
    except Exception:  # noqa: BLE001 - the row's error says why
        return ()


def _build_group(scenario: Scenario, slices: int, settings: Settings) -> _Group:
    shape = shape_of(scenario.shape)
    mask = mask_for(scenario.mask, shape[-1], seed=settings.seed)
    reference = load_reference(scenario.model, scenario.weights, scenario.device, settings.seed)
    # Inputs live on the model's device: GPU timings must not include host-device copies.
    kspace = random_kspace(slices, shape, mask, settings.seed).to(reference.device)
    group = _Group(reference, kspace, mask.to(reference.device))
    if settings.roofline:
        group.work = count_work(reference, kspace[:1], mask)
    return group


def main(argv: Sequence[str] | None = None) -> int:
    from fastrecon.bench.cli import build_parser, run_cli

    parser = build_parser(
        argparse.ArgumentParser(prog="python -m fastrecon.bench.model", description=__doc__.split("\n\n")[0])
    )
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
