"""Simulated multicoil k-space: a dynamic cardiac-like phantom, smooth phase, birdcage coils, noise.

No package ships raw k-space, so demos and tests simulate it. Everything is deterministic for a
given ``seed`` (numpy ``Generator``s seeded explicitly; torch's global RNG is never touched).

Shapes: images ``(N, H, W)``, coil maps ``(C, H, W)``, k-space ``(N, C, H, W)`` complex64.
The default coil maps are normalised so that their root-sum-of-squares is 1 at every pixel, so
the noise-free RSS target equals the magnitude of the simulated image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from fastrecon._features import import_optional
from fastrecon.errors import InputError
from fastrecon.physics.coils import rss
from fastrecon.physics.fft import fft2c, ifft2c

ImageSource = Literal["cardiac", "shepp-logan", "mr"]


@dataclass
class Simulated:
    """Fully sampled simulated data.

    Attributes:
        kspace: ``(N, C, H, W)`` complex64, fully sampled (with noise when asked for).
        target: ``(N, H, W)`` float32, RSS of the coil images ``ifft2c(kspace)`` (fastMRI's target).
        image: ``(N, H, W)`` complex64, the noise-free object (magnitude x smooth phase).
        maps: ``(C, H, W)`` complex64 coil sensitivities.
        noise_std: standard deviation of the complex k-space noise (0 without noise).
    """

    kspace: torch.Tensor
    target: torch.Tensor
    image: torch.Tensor
    maps: torch.Tensor
    noise_std: float


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 8:
        raise InputError(f"size must be (H, W) with both at least 8, got {size}.")
    return int(size[0]), int(size[1])


def _soft_ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, edge: float
) -> np.ndarray:
    """1 inside the ellipse, 0 outside, with a smooth edge about ``edge`` (normalised units) wide."""
    dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    scale = edge / min(ry, rx)
    return 0.5 * (1.0 - np.tanh((dist - 1.0) / max(scale, 1e-6)))


def cardiac_phantom(size: tuple[int, int] = (128, 128), frames: int = 12, seed: int = 0) -> torch.Tensor:
    """A dynamic cardiac-like magnitude phantom ``(frames, H, W)`` float32 in [0, 1].

    An elliptic body (soft tissue) with two dark lungs, a spine, a liver; a left ventricle (bright
    blood pool inside a myocardial ring) and a crescent right ventricle. Over one cardiac cycle the
    blood pools contract and expand (``r(t) = r0 (1 - 0.3 s(t))`` with ``s`` a raised cosine) while
    the myocardium thickens as the cavity shrinks (its area is kept). ``seed`` jitters positions,
    sizes and intensities, so different seeds give different "subjects".
    """
    height, width = _check_size(size)
    if frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}.")
    rng = np.random.default_rng(seed)
    jitter = lambda scale: float(rng.uniform(-scale, scale))  # noqa: E731
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    edge = 2.0 / min(height, width)  # about one pixel

    body = _soft_ellipse(yy, xx, jitter(0.03), jitter(0.03), 0.82 + jitter(0.04), 0.9 + jitter(0.04), edge)
    static = 0.35 * body
    # Texture: smooth low-frequency modulation of the soft tissue.
    static *= 1.0 + 0.08 * np.cos(math.pi * (1.5 + jitter(0.5)) * yy + jitter(3)) * np.cos(
        math.pi * (1.2 + jitter(0.5)) * xx
    )
    for side in (-1.0, 1.0):  # lungs
        lung = _soft_ellipse(
            yy,
            xx,
            -0.1 + jitter(0.03),
            side * (0.45 + jitter(0.03)),
            0.45 + jitter(0.03),
            0.25 + jitter(0.02),
            edge,
        )
        static = static * (1 - lung) + 0.04 * lung
    spine = _soft_ellipse(yy, xx, 0.62 + jitter(0.02), jitter(0.02), 0.09, 0.09, edge)
    static = static * (1 - spine) + 0.6 * spine
    liver = _soft_ellipse(yy, xx, 0.45 + jitter(0.03), -0.35 + jitter(0.03), 0.25, 0.3, edge) * body
    static = static * (1 - liver) + 0.45 * liver

    cy, cx = -0.05 + jitter(0.04), 0.1 + jitter(0.04)  # left ventricle centre
    lv_ry, lv_rx = 0.17 + jitter(0.02), 0.15 + jitter(0.02)
    wall = 0.07 + jitter(0.01)
    blood, myo, rv_level = 0.95 + jitter(0.05), 0.28 + jitter(0.04), 0.85 + jitter(0.05)
    phase0 = float(rng.uniform(0, 2 * math.pi))

    out = np.empty((frames, height, width), dtype=np.float32)
    for t in range(frames):
        squeeze = 0.5 - 0.5 * math.cos(2 * math.pi * t / frames + phase0)  # 0 (diastole) .. 1 (systole)
        k = 1.0 - 0.3 * squeeze
        ry, rx = lv_ry * k, lv_rx * k
        # Keep the myocardial area: (R_out^2 - r^2) constant, so the wall thickens as r shrinks.
        area = (lv_ry + wall) * (lv_rx + wall) - lv_ry * lv_rx
        grow = math.sqrt(ry * rx + area) - math.sqrt(ry * rx)
        heart_out = _soft_ellipse(yy, xx, cy, cx, ry + grow, rx + grow, edge)
        lv = _soft_ellipse(yy, xx, cy, cx, ry, rx, edge)
        rv_outer = _soft_ellipse(
            yy,
            xx,
            cy - 0.02,
            cx - 0.22 * (0.85 + 0.15 * k),
            0.26 * (0.7 + 0.3 * k),
            0.2 * (0.55 + 0.45 * k),
            edge,
        )
        rv = rv_outer * (1 - heart_out)
        frame = static * (1 - heart_out) * (1 - rv) + myo * (heart_out - lv) + blood * lv + rv_level * rv
        out[t] = frame
    return torch.from_numpy(np.clip(out, 0.0, 1.0))


def _resize_unit(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a 2-D image to ``size``, scaled into [0, 1]."""
    image = F.interpolate(image[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[
        0, 0
    ]
    image = image.clamp_min(0)
    return (image / image.max().clamp_min(1e-12)).contiguous()


def mr_image(size: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """A real MR magnitude image: pydicom's ``MR_small.dcm`` (64x64, shipped inside the pydicom wheel,
    no download), resized to ``(H, W)`` float32 in [0, 1]. Needs pydicom (in the ``dev`` extra)."""
    height, width = _check_size(size)
    import_optional("pydicom")
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small.dcm", download=False)
    if path is None:
        raise InputError("pydicom's bundled test file MR_small.dcm is missing from this installation.")
    pixels = np.asarray(dcmread(path).pixel_array, dtype=np.float32)
    return _resize_unit(torch.from_numpy(pixels), (height, width))


def shepp_logan_image(size: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """scikit-image's Shepp-Logan head phantom (shipped inside its wheel, no download) as ``(H, W)`` float32 in [0, 1].

    Needs scikit-image (:class:`~fastrecon.errors.MissingDependencyError` otherwise). Other
    offline images of scikit-image are photographs; its ``brain()`` volume needs ``pooch`` and a
    download, so it is not used.
    """
    height, width = _check_size(size)
    data = import_optional("skimage.data")
    return _resize_unit(
        torch.from_numpy(np.asarray(data.shepp_logan_phantom(), dtype=np.float32)), (height, width)
    )


def smooth_phase(
    size: tuple[int, int], seed: int = 0, max_phase: float = math.pi / 2, order: int = 2
) -> torch.Tensor:
    """A smooth random phase map ``(H, W)`` float32: a polynomial of degree ``order`` in (y, x), scaled to ``[-max_phase, max_phase]``."""
    height, width = _check_size(size)
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    phase = np.zeros((height, width))
    for i in range(order + 1):
        for j in range(order + 1 - i):
            phase += rng.normal() * yy**i * xx**j
    phase -= phase.mean()
    peak = np.abs(phase).max()
    if peak > 0:
        phase *= max_phase / peak
    return torch.from_numpy(phase.astype(np.float32))


def birdcage_maps(
    num_coils: int,
    size: tuple[int, int],
    radius: float = 1.5,
    normalize: bool = True,
    rotation: float = 0.0,
) -> torch.Tensor:
    """Birdcage coil sensitivities ``(C, H, W)`` complex64, as sigpy's ``birdcage_maps``.

    Coil c sits at angle ``2 pi c / C`` on a circle of ``radius`` (in units of the half field of
    view) with magnitude ``1 / distance`` and a phase that winds with the angle. With
    ``normalize=True`` (default, as sigpy) the maps are divided by their RSS, so
    ``sum_c |S_c|^2 = 1`` at every pixel. ``rotation`` (radians) turns the whole array.
    """
    height, width = _check_size(size)
    if num_coils < 1:
        raise InputError(f"num_coils must be >= 1, got {num_coils}.")
    c, y, x = np.mgrid[:num_coils, :height, :width].astype(np.float64)
    coil_x = radius * np.cos(c * (2 * math.pi / num_coils) + rotation)
    coil_y = radius * np.sin(c * (2 * math.pi / num_coils) + rotation)
    x_co = (x - width / 2.0) / (width / 2.0) - coil_x
    y_co = (y - height / 2.0) / (height / 2.0) - coil_y
    dist = np.sqrt(x_co**2 + y_co**2)
    phi = np.arctan2(x_co, -y_co) - c * (2 * math.pi / num_coils)
    maps = (1.0 / dist) * np.exp(1j * phi)
    if normalize:
        maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return torch.from_numpy(maps.astype(np.complex64))


def gaussian_coil_maps(
    num_coils: int, size: tuple[int, int], rng: np.random.Generator, normalize: bool = True
) -> torch.Tensor:
    """Random surface-coil-like sensitivities ``(C, H, W)`` complex64: Gaussian magnitude blobs centred on a
    jittered ellipse around the field of view (radius 0.7-1.3 half-FOVs, width 0.4-1.0), each with its own
    linear phase ramp and offset. Normalised by their RSS (``sum_c |S_c|^2 = 1``) unless ``normalize=False``."""
    height, width = _check_size(size)
    if num_coils < 1:
        raise InputError(f"num_coils must be >= 1, got {num_coils}.")
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    ring_y, ring_x = rng.uniform(0.7, 1.3, 2)
    start = rng.uniform(0, 2 * math.pi)
    maps = np.empty((num_coils, height, width), dtype=np.complex128)
    for c in range(num_coils):
        angle = start + 2 * math.pi * c / num_coils + rng.normal(0, 0.15)
        cy, cx = ring_y * math.sin(angle), ring_x * math.cos(angle)
        sigma = rng.uniform(0.4, 1.0)
        magnitude = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        phase = rng.uniform(0, 2 * math.pi) + rng.normal(0, 1.0) * yy + rng.normal(0, 1.0) * xx
        maps[c] = magnitude * np.exp(1j * phase)
    if normalize:
        maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return torch.from_numpy(maps.astype(np.complex64))


def simulate_multicoil(
    image: torch.Tensor,
    num_coils: int = 8,
    *,
    snr_db: float | None = None,
    noise_std: float | None = None,
    seed: int = 0,
    maps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fully sampled multicoil k-space of a complex image.

    Args:
        image: ``(N, H, W)`` (or ``(H, W)``) complex or real image.
        num_coils: C, for the default :func:`birdcage_maps` (ignored when ``maps`` is given).
        snr_db: noise level as ``20 log10(rms(noise-free k-space) / noise_std)``; or
        noise_std: the standard deviation of the complex noise (real and imaginary parts each get
            ``noise_std / sqrt(2)``). Give at most one; neither means no noise.
        seed: seed of the noise.
        maps: ``(C, H, W)`` or ``(N, C, H, W)`` complex sensitivities.

    Returns:
        ``(kspace (N, C, H, W) complex64, maps (C, H, W) or as given)``.
    """
    kspace, maps, _ = _multicoil(image, num_coils, snr_db, noise_std, seed, maps)
    return kspace, maps


def _multicoil(
    image: torch.Tensor,
    num_coils: int,
    snr_db: float | None,
    noise_std: float | None,
    seed: int,
    maps: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    if snr_db is not None and noise_std is not None:
        raise InputError("give snr_db or noise_std, not both.")
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3:
        raise InputError(f"image has shape {tuple(image.shape)}; expected (N, H, W) or (H, W).")
    image = image.to(torch.complex64)
    height, width = image.shape[-2:]
    if maps is None:
        maps = birdcage_maps(num_coils, (height, width))
    maps = maps.to(torch.complex64)
    if maps.shape[-2:] != image.shape[-2:]:
        raise InputError(f"maps {tuple(maps.shape)} and image {tuple(image.shape)} differ in (H, W).")
    kspace = fft2c(maps * image.unsqueeze(1))
    std = 0.0
    if snr_db is not None:
        signal_rms = float(torch.view_as_real(kspace).pow(2).sum(-1).mean().sqrt())
        std = signal_rms / 10 ** (snr_db / 20)
    elif noise_std is not None:
        if noise_std < 0:
            raise InputError(f"noise_std must be >= 0, got {noise_std}.")
        std = float(noise_std)
    if std > 0:
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((*kspace.shape, 2)).astype(np.float32) * np.float32(std / math.sqrt(2))
        kspace = kspace + torch.view_as_complex(torch.from_numpy(noise))
    return kspace.contiguous(), maps, std


def _simulate(
    magnitude: torch.Tensor, num_coils: int, snr_db: float | None, seed: int, phase: bool
) -> Simulated:
    height, width = magnitude.shape[-2:]
    image = magnitude.to(torch.complex64)
    if phase:
        image = image * torch.polar(torch.ones(height, width), smooth_phase((height, width), seed=seed + 1))
    kspace, maps, std = _multicoil(image, num_coils, snr_db, None, seed + 2, None)
    target = rss(ifft2c(kspace), dim=1).to(torch.float32)
    return Simulated(kspace=kspace, target=target, image=image, maps=maps, noise_std=std)


def simulate_image(
    magnitude: torch.Tensor,
    num_coils: int = 8,
    *,
    snr_db: float | None = 30.0,
    seed: int = 0,
    phase: bool = True,
) -> Simulated:
    """Simulate any magnitude image ``(H, W)`` (or ``(N, H, W)``) as :func:`simulate_slice` does: smooth
    phase (seeded ``seed + 1``), ``num_coils`` birdcage coils, complex noise at ``snr_db`` (seeded ``seed + 2``)."""
    if magnitude.ndim == 2:
        magnitude = magnitude[None]
    if magnitude.ndim != 3 or magnitude.is_complex():
        raise InputError(f"magnitude must be a real (H, W) or (N, H, W) image, got {tuple(magnitude.shape)}.")
    _check_size((magnitude.shape[-2], magnitude.shape[-1]))
    return _simulate(magnitude.to(torch.float32), num_coils, snr_db, seed, phase)


def simulate_cine(
    size: tuple[int, int] = (128, 128),
    frames: int = 12,
    num_coils: int = 8,
    *,
    snr_db: float | None = 30.0,
    seed: int = 0,
    phase: bool = True,
) -> Simulated:
    """A simulated cine: :func:`cardiac_phantom` x :func:`smooth_phase`, birdcage coils, noise.

    Returns :class:`Simulated` with ``kspace (T, C, H, W)`` and ``target (T, H, W)`` = RSS of the
    (noisy) fully sampled coil images, as fastMRI defines its targets.
    """
    return _simulate(cardiac_phantom(size, frames, seed=seed), num_coils, snr_db, seed, phase)


def simulate_slice(
    size: tuple[int, int] = (128, 128),
    num_coils: int = 8,
    *,
    source: ImageSource = "cardiac",
    snr_db: float | None = 30.0,
    seed: int = 0,
    phase: bool = True,
) -> Simulated:
    """One simulated slice: ``kspace (1, C, H, W)``, ``target (1, H, W)``.

    ``source="cardiac"`` takes a random frame of :func:`cardiac_phantom` (seeded);
    ``"shepp-logan"`` uses :func:`shepp_logan_image` (needs scikit-image); ``"mr"`` a real MR image,
    :func:`mr_image` (needs pydicom).
    """
    if source == "cardiac":
        frames = 12
        frame = int(np.random.default_rng(seed).integers(frames))
        magnitude = cardiac_phantom(size, frames, seed=seed)[frame : frame + 1]
    elif source == "shepp-logan":
        magnitude = shepp_logan_image(size)[None]
    elif source == "mr":
        magnitude = mr_image(size)[None]
    else:
        raise InputError(f"unknown image source {source!r}; choose 'cardiac', 'shepp-logan' or 'mr'.")
    return _simulate(magnitude, num_coils, snr_db, seed, phase)
