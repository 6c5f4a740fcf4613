"""``fastrecon demo``: reconstruct a simulated x8 slice with the bundled ``demo-x8`` model.

Every case is simulated the same way: a magnitude image (a held-out source, a training source, or the
user's own file) times a smooth random phase, 8 birdcage coils (true maps known), complex noise at
30 dB SNR, and fastMRI's x8 equispaced mask (8 % centre fraction). Three reconstructions are scored
against the fully sampled RSS target (fastMRI protocol): zero-filled, classical CG-SENSE with the true
maps (:func:`fastrecon.physics.sense.cg_sense_rss`), and demo-x8.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastrecon.errors import InputError
from fastrecon.metrics import MetricResult, evaluate_fastmri
from fastrecon.physics import ifft2c, rss

DEMO_COILS = 8
DEMO_SNR_DB = 30.0
DEMO_CENTER_FRACTION = 0.08
DEMO_ACCELERATION = 8
DEMO_SIZE = (128, 128)
# CG-SENSE settings of the demo's classical row (fixed, not tuned on the held-out images).
CG_LAMBDA = 1e-2
CG_ITERATIONS = 20

# Held out from demo-x8's training: the demo's cardiac slice, pydicom's MR image, nibabel's EPI volume.
HELD_OUT_SOURCES = ("cardiac", "mr", "epi")
# Training sources (fresh draws, not the training items): in distribution.
IN_DISTRIBUTION_SOURCES = ("mni-t1", "phantom", "natural")
SOURCES = (*HELD_OUT_SOURCES, "shepp-logan", *IN_DISTRIBUTION_SOURCES)
EPI_DEMO_SLICE = 12
EPI_TABLE_SLICES = tuple(range(6, 19, 2))  # 7 axial slices through the brain


def source_image(source: str, seed: int = 1234) -> torch.Tensor:
    """The magnitude image ``(H, W)`` in [0, 1] that the demo simulates for ``source``.

    ``cardiac``: :func:`~fastrecon.data.simulate.cardiac_phantom` subject ``seed``, a seeded frame
    (128x128); ``mr``: pydicom's MR_small (128x128); ``epi``: slice ``EPI_DEMO_SLICE`` of nibabel's EPI
    volume (96x128, native); ``shepp-logan``: scikit-image's phantom (128x128); ``mni-t1``, ``phantom``,
    ``natural``: a draw of demo-x8's training sources seeded by ``seed`` (128x128).
    """
    from fastrecon.data import simulate, sources
    from fastrecon.train.data import draw_source_image

    if source == "cardiac":
        frame = int(np.random.default_rng(seed).integers(12))
        return simulate.cardiac_phantom(DEMO_SIZE, 12, seed=seed)[frame]
    if source == "mr":
        return simulate.mr_image(DEMO_SIZE)
    if source == "epi":
        return sources.epi_slice(EPI_DEMO_SLICE)
    if source == "shepp-logan":
        return simulate.shepp_logan_image(DEMO_SIZE)
    if source in IN_DISTRIBUTION_SOURCES:
        return draw_source_image(source, DEMO_SIZE, np.random.default_rng([seed, 7]))
    raise InputError(f"unknown demo source {source!r}; choose one of {', '.join(SOURCES)}.")


def fit_image(image: torch.Tensor, longest: int = 128) -> torch.Tensor:
    """Resize a user's image so its longer side is ``longest`` pixels (aspect kept, both sides even, >= 16)."""
    from fastrecon.data.sources import resize_unit

    height, width = image.shape
    scale = longest / max(height, width)
    size = (max(16, 2 * round(height * scale / 2)), max(16, 2 * round(width * scale / 2)))
    return resize_unit(image, size)


@dataclass
class DemoCase:
    """One simulated, undersampled slice and its three reconstructions ``(1, H, W)``."""

    target: torch.Tensor
    zero_filled: torch.Tensor
    cg_sense: torch.Tensor
    model: torch.Tensor
    acceleration: float
    sampled_lines: int
    seconds: float

    def metrics(self) -> dict[str, MetricResult]:
        return {
            "zero-filled": evaluate_fastmri(self.target, self.zero_filled),
            "CG-SENSE": evaluate_fastmri(self.target, self.cg_sense),
            "demo-x8": evaluate_fastmri(self.target, self.model),
        }


def run_case(recon: object, magnitude: torch.Tensor, seed: int) -> DemoCase:
    """Simulate ``magnitude`` (8 coils, 30 dB, phase and noise seeded by ``seed``), undersample x8, reconstruct."""
    from fastrecon.data.simulate import simulate_image
    from fastrecon.physics.masks import EquispacedMaskFractionFunc
    from fastrecon.physics.sense import cg_sense_rss

    sim = simulate_image(magnitude, DEMO_COILS, snr_db=DEMO_SNR_DB, seed=seed)
    width = sim.kspace.shape[-1]
    drawn = EquispacedMaskFractionFunc([DEMO_CENTER_FRACTION], [DEMO_ACCELERATION]).sample(width, seed=seed)
    masked = sim.kspace * drawn.mask
    began = time.perf_counter()
    image = recon.reconstruct(masked, drawn.mask)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - began
    classical = cg_sense_rss(masked, drawn.mask, sim.maps, lam=CG_LAMBDA, iterations=CG_ITERATIONS)
    return DemoCase(
        target=sim.target,
        zero_filled=rss(ifft2c(masked), dim=1),
        cg_sense=classical,
        model=image,
        acceleration=drawn.mask.numel() / float(drawn.mask.sum()),
        sampled_lines=int(drawn.mask.sum()),
        seconds=seconds,
    )


@dataclass
class DemoResult:
    zero_filled: MetricResult
    cg_sense: MetricResult
    model: MetricResult
    seconds: float
    png: Path
    acceleration: float
    label: str
    shape: tuple[int, int]


def run_demo(
    out: str | Path = "fastrecon-demo.png",
    *,
    seed: int = 1234,
    device: str | None = None,
    source: str = "cardiac",
    image: str | Path | None = None,
) -> DemoResult:
    """Simulate an x8 equispaced-undersampled 8-coil slice, reconstruct it three ways, score them against
    the fully sampled RSS target (fastMRI protocol) and save a PNG.

    ``source`` picks the image (:func:`source_image`; ``cardiac`` with the default seed, ``mr`` and
    ``epi`` are held out from demo-x8's training). ``image`` instead reads a user's PNG/JPEG, DICOM,
    NIfTI or ``.npy`` magnitude file (:func:`fastrecon.data.sources.load_image_file`), resized so its
    longer side is 128 pixels; coils, phase, noise and mask are simulated.
    """
    import fastrecon
    from fastrecon.plotting import save_comparison_png

    if image is not None:
        from fastrecon.data.sources import load_image_file

        magnitude = fit_image(load_image_file(image))
        label = Path(image).name
    else:
        magnitude = source_image(source, seed)
        label = source
    recon = fastrecon.load("demo-x8", device=device)
    case = run_case(recon, magnitude, seed)
    scores = case.metrics()
    png = save_comparison_png(
        case.target[0],
        case.zero_filled[0],
        case.model[0],
        out,
        titles=(
            "target (fully sampled RSS)",
            f"zero-filled  SSIM {scores['zero-filled'].ssim:.3f}",
            f"demo-x8  SSIM {scores['demo-x8'].ssim:.3f} (CG-SENSE {scores['CG-SENSE'].ssim:.3f})",
        ),
        suptitle=f"simulated {DEMO_COILS}-coil slice ({label}), equispaced mask x{case.acceleration:.1f} "
        f"({case.sampled_lines}/{case.target.shape[-1]} lines)",
    )
    return DemoResult(
        zero_filled=scores["zero-filled"],
        cg_sense=scores["CG-SENSE"],
        model=scores["demo-x8"],
        seconds=case.seconds,
        png=png,
        acceleration=case.acceleration,
        label=label,
        shape=(int(case.target.shape[-2]), int(case.target.shape[-1])),
    )


@dataclass
class TableRow:
    """Mean metrics of one source over its cases: ``scores[method] = (ssim, psnr, nmse)``."""

    source: str
    held_out: bool
    cases: int
    scores: dict[str, tuple[float, float, float]]


def table_cases(source: str) -> list[tuple[torch.Tensor, int]]:
    """The ``(magnitude, seed)`` cases of one source in the README table."""
    from fastrecon.data.sources import epi_slice

    if source == "epi":
        return [(epi_slice(index), 1234 + index) for index in EPI_TABLE_SLICES]
    if source in IN_DISTRIBUTION_SOURCES:
        return [(source_image(source, 5000 + k), 5000 + k) for k in range(6)]
    return [(source_image(source, 1234), 1234)]


def held_out_table(device: str | None = None, recon: object | None = None) -> list[TableRow]:
    """Zero-filled, CG-SENSE and demo-x8 (or ``recon``, anything with ``.reconstruct(kspace, mask)``) on every
    demo source (held out first), means over each source's cases."""
    import fastrecon

    if recon is None:
        recon = fastrecon.load("demo-x8", device=device)
    rows = []
    for source in SOURCES:
        per_method: dict[str, list[tuple[float, float, float]]] = {}
        cases = table_cases(source)
        for magnitude, seed in cases:
            for name, m in run_case(recon, magnitude, seed).metrics().items():
                per_method.setdefault(name, []).append((m.ssim, m.psnr, m.nmse))
        scores = {
            name: tuple(float(v) for v in np.mean(np.asarray(values), axis=0))
            for name, values in per_method.items()
        }
        rows.append(TableRow(source, source in HELD_OUT_SOURCES, len(cases), scores))  # type: ignore[arg-type]
    return rows


def format_table(rows: list[TableRow]) -> str:
    """The table as Markdown (SSIM / PSNR dB / NMSE per method)."""
    methods = ("zero-filled", "CG-SENSE", "demo-x8")
    lines = [
        "| source | slices | " + " | ".join(f"{m} SSIM / PSNR / NMSE" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for row in rows:
        where = (
            "held out"
            if row.held_out
            else ("in distribution" if row.source in IN_DISTRIBUTION_SOURCES else "out of distribution")
        )
        cells = [f"{s:.3f} / {p:.2f} dB / {n:.4f}" for s, p, n in (row.scores[m] for m in methods)]
        lines.append(f"| `{row.source}` ({where}) | {row.cases} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(
    out: str,
    seed: int,
    device: str | None,
    source: str = "cardiac",
    image: str | None = None,
    table: bool = False,
) -> int:
    if table:
        began = time.perf_counter()
        print(format_table(held_out_table(device)))
        print(f"({time.perf_counter() - began:.0f} s)")
        return 0
    result = run_demo(out, seed=seed, device=device, source=source, image=image)
    height, width = result.shape
    print(
        f"simulated x{result.acceleration:.1f} undersampled {DEMO_COILS}-coil {height}x{width} {result.label} slice "
        f"(seed {seed}); metrics vs fully sampled RSS (fastMRI protocol):"
    )
    print(f"  {'':<12} {'SSIM':>7} {'PSNR dB':>8} {'NMSE':>8}")
    for name, m in (
        ("zero-filled", result.zero_filled),
        ("CG-SENSE", result.cg_sense),
        ("demo-x8", result.model),
    ):
        print(f"  {name:<12} {m.ssim:>7.4f} {m.psnr:>8.2f} {m.nmse:>8.4f}")
    print(f"reconstruction took {result.seconds * 1000:.0f} ms; picture written to {result.png}")
    return 0
