"""Image-quality metrics under two protocols that must not be mixed: fastMRI and CMRxRecon.

**fastMRI** (``fastmri/evaluate.py``), per volume ``(N, H, W)``:
SSIM with a 7x7 uniform window, k1 = 0.01, k2 = 0.03, sample covariance, data range = the volume's
ground-truth maximum, averaged over slices; PSNR with data range = the ground-truth maximum; NMSE
``||gt - pred||^2 / ||gt||^2`` over the volume.

**CMRxRecon**, per 2-D image: each image is normalised on its own, ground truth and prediction
separately (2023: divided by its maximum; 2024: z-scored, ``(x - mean) / std``; 2025: magnitude
divided by its 99.5th percentile), then SSIM / PSNR / NMSE per image (data range = the normalised
ground truth's maximum, as the challenge's ``Evaluation.py`` of each year) and the mean.

SSIM is implemented here in torch (``valid`` box filtering, equal to scikit-image's
``structural_similarity`` with the defaults fastMRI uses) and evaluated in float64. The same
kernel, in the input's dtype, is the differentiable training loss :class:`SSIMLoss`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastrecon.errors import InputError

Protocol = Literal["fastmri", "cmrxrecon-2023", "cmrxrecon-2024", "cmrxrecon-2025"]
ArrayLike = np.ndarray | torch.Tensor

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
CMRX_PERCENTILE = 99.5


@dataclass(frozen=True)
class MetricResult:
    """SSIM / PSNR (dB) / NMSE under one named protocol, averaged over ``count`` items
    (volumes for fastMRI, 2-D images for CMRxRecon).
    """

    protocol: Protocol
    ssim: float
    psnr: float
    nmse: float
    count: int = 1

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "protocol": self.protocol,
            "ssim": self.ssim,
            "psnr": self.psnr,
            "nmse": self.nmse,
            "count": self.count,
        }

    def __str__(self) -> str:
        return f"[{self.protocol}] SSIM {self.ssim:.4f}  PSNR {self.psnr:.2f} dB  NMSE {self.nmse:.4f}  (n={self.count})"


def mean_results(results: Sequence[MetricResult]) -> MetricResult:
    """Average results weighted by ``count``; refuses to mix protocols."""
    if not results:
        raise InputError("no results to average.")
    protocols = {r.protocol for r in results}
    if len(protocols) > 1:
        raise InputError(
            f"cannot average results of different protocols {sorted(protocols)}; they are not comparable."
        )
    total = sum(r.count for r in results)
    return MetricResult(
        protocol=results[0].protocol,
        ssim=sum(r.ssim * r.count for r in results) / total,
        psnr=sum(r.psnr * r.count for r in results) / total,
        nmse=sum(r.nmse * r.count for r in results) / total,
        count=total,
    )


# --- the SSIM kernel -------------------------------------------------------------------------------


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: torch.Tensor | float,
    win_size: int = WIN_SIZE,
    k1: float = K1,
    k2: float = K2,
) -> torch.Tensor:
    """Per-window SSIM of real images ``(B, 1, H, W)`` -> ``(B, 1, H - win + 1, W - win + 1)``.

    Box (uniform) window, sample covariance (``N / (N - 1)``), ``valid`` positions only: exactly
    scikit-image's ``structural_similarity`` map cropped by ``(win - 1) / 2`` as it does before
    averaging. ``data_range`` is a float or a ``(B,)`` tensor (one per image). Computed in the
    dtype of ``x`` (use float64 for evaluation).
    """
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 1:
        raise InputError(
            f"ssim_map expects two (B, 1, H, W) images of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[-1] < win_size or x.shape[-2] < win_size:
        raise InputError(
            f"images {tuple(x.shape[-2:])} are smaller than the {win_size}x{win_size} SSIM window."
        )
    weight = torch.full((1, 1, win_size, win_size), 1.0 / win_size**2, dtype=x.dtype, device=x.device)
    num = win_size**2
    cov_norm = num / (num - 1)
    if isinstance(data_range, torch.Tensor):
        data_range = data_range.to(dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    ux = F.conv2d(x, weight)
    uy = F.conv2d(y, weight)
    uxx = F.conv2d(x * x, weight)
    uyy = F.conv2d(y * y, weight)
    uxy = F.conv2d(x * y, weight)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
    denominator = (ux**2 + uy**2 + c1) * (vx + vy + c2)
    return numerator / denominator


class SSIMLoss(nn.Module):
    """``1 - SSIM`` as a training loss, as fastMRI's ``SSIMLoss`` (7x7 box window, k1 .01, k2 .03).

    ``forward(x, y, data_range)``: images ``(B, 1, H, W)`` or ``(B, H, W)``, ``data_range`` ``(B,)``
    (fastMRI passes each volume's maximum). ``reduced=False`` returns the per-window ``1 - SSIM``.
    """

    def __init__(self, win_size: int = WIN_SIZE, k1: float = K1, k2: float = K2) -> None:
        super().__init__()
        self.win_size = win_size
        self.k1, self.k2 = k1, k2

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor, reduced: bool = True
    ) -> torch.Tensor:
        if x.ndim == 3:
            x, y = x.unsqueeze(1), y.unsqueeze(1)
        if data_range.ndim == 0:
            data_range = data_range.expand(x.shape[0])
        if data_range.shape[0] != x.shape[0]:
            raise InputError(f"data_range has {data_range.shape[0]} entries for a batch of {x.shape[0]}.")
        s = ssim_map(x, y, data_range, self.win_size, self.k1, self.k2)
        return 1 - s.mean() if reduced else 1 - s


# --- helpers -----------------------------------------------------------------------------------------


def _to_float64(array: ArrayLike, name: str) -> torch.Tensor:
    tensor = array.detach().cpu() if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))
    if tensor.is_complex():
        raise InputError(f"{name} is complex; metrics compare real (magnitude) images. Pass abs() of it.")
    return tensor.to(torch.float64)


def _pair(gt: ArrayLike, pred: ArrayLike, ndim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g, p = _to_float64(gt, "gt"), _to_float64(pred, "pred")
    if g.shape != p.shape:
        raise InputError(f"gt {tuple(g.shape)} and pred {tuple(p.shape)} differ in shape.")
    if ndim is not None and g.ndim != ndim:
        raise InputError(f"expected {ndim}-D images, got shape {tuple(g.shape)}.")
    if g.ndim < 2:
        raise InputError(f"expected images (..., H, W), got shape {tuple(g.shape)}.")
    return g, p


def _psnr(gt: torch.Tensor, pred: torch.Tensor, data_range: float) -> float:
    mse = float((gt - pred).pow(2).mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _nmse(gt: torch.Tensor, pred: torch.Tensor) -> float:
    denominator = float(gt.pow(2).sum())
    if denominator == 0.0:
        raise InputError("NMSE is undefined for an all-zero ground truth.")
    return float((gt - pred).pow(2).sum()) / denominator


def _ssim_images(gt: torch.Tensor, pred: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """Mean SSIM of each image ``(B, H, W)`` -> ``(B,)`` float64."""
    return ssim_map(gt.unsqueeze(1), pred.unsqueeze(1), data_range).mean(dim=(1, 2, 3))


# --- fastMRI protocol ------------------------------------------------------------------------------


def fastmri_ssim(gt: ArrayLike, pred: ArrayLike, maxval: float | None = None) -> float:
    """fastMRI SSIM of a volume ``(N, H, W)``: mean over slices, data range ``maxval`` (default ``gt.max()``)."""
    g, p = _pair(gt, pred, ndim=3)
    data_range = float(g.max()) if maxval is None else float(maxval)
    return float(_ssim_images(g, p, data_range).mean())


def fastmri_psnr(gt: ArrayLike, pred: ArrayLike, maxval: float | None = None) -> float:
    """fastMRI PSNR (dB) over the whole volume, data range ``maxval`` (default ``gt.max()``)."""
    g, p = _pair(gt, pred)
    return _psnr(g, p, float(g.max()) if maxval is None else float(maxval))


def fastmri_nmse(gt: ArrayLike, pred: ArrayLike) -> float:
    """fastMRI NMSE ``||gt - pred||^2 / ||gt||^2`` over the whole volume."""
    g, p = _pair(gt, pred)
    return _nmse(g, p)


def center_crop(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """fastMRI's ``center_crop`` of the last two axes (start ``(size - crop) // 2``)."""
    height, width = shape
    if not (0 < height <= image.shape[-2] and 0 < width <= image.shape[-1]):
        raise InputError(f"cannot crop {tuple(image.shape[-2:])} to {shape}.")
    top = (image.shape[-2] - height) // 2
    left = (image.shape[-1] - width) // 2
    return image[..., top : top + height, left : left + width]


def evaluate_fastmri(gt: ArrayLike, pred: ArrayLike, *, crop: bool = False) -> MetricResult:
    """fastMRI metrics of one volume ``(N, H, W)``.

    ``crop=True`` first centre-crops both to ``(W_gt, W_gt)`` as fastMRI's ``evaluate.py`` does
    before scoring (identical for its square 320x320 targets); the default scores the images as given.
    """
    g, p = _to_float64(gt, "gt"), _to_float64(pred, "pred")
    if crop:
        side = g.shape[-1]
        g, p = center_crop(g, (side, side)), center_crop(p, (side, side))
    return MetricResult(
        "fastmri", ssim=fastmri_ssim(g, p), psnr=fastmri_psnr(g, p), nmse=fastmri_nmse(g, p), count=1
    )


# --- CMRxRecon protocol ----------------------------------------------------------------------------


def cmrx_normalise(image: torch.Tensor, year: int) -> torch.Tensor:
    """CMRxRecon's per-image normalisation of every 2-D image in ``(..., H, W)``.

    2023: ``x / x.max()``. 2024: ``(x - mean) / std`` (population std). 2025: ``|x| / p``, with ``p``
    the 99.5th percentile of ``|x|`` (numpy's linear interpolation), unclipped; an image whose
    scale is 0 is left unscaled (the 2025 code's guard, applied to every year here).
    """
    flat = image.flatten(-2)
    if year == 2023:
        offset, scale = torch.zeros_like(flat[..., 0]), flat.amax(dim=-1)
    elif year == 2024:
        offset, scale = flat.mean(dim=-1), flat.std(dim=-1, correction=0)
    elif year == 2025:
        image = image.abs()
        offset = torch.zeros_like(image[..., 0, 0])
        scale = torch.quantile(image.flatten(-2), CMRX_PERCENTILE / 100.0, dim=-1, interpolation="linear")
    else:
        raise InputError(
            f"unknown CMRxRecon year {year}; the protocols are 2023 (max), 2024 (z-score) and 2025 (99.5th percentile)."
        )
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (image - offset[..., None, None]) / scale[..., None, None]


_CMRX_PROTOCOLS: dict[int, Protocol] = {
    2023: "cmrxrecon-2023",
    2024: "cmrxrecon-2024",
    2025: "cmrxrecon-2025",
}


def evaluate_cmrx(gt: ArrayLike, pred: ArrayLike, *, year: int = 2023) -> MetricResult:
    """CMRxRecon metrics: every 2-D image of ``(..., H, W)`` normalised on its own (see
    :func:`cmrx_normalise`), scored, and averaged (SSIM / PSNR / NMSE means over the images).

    PSNR and SSIM use the normalised ground truth's maximum as data range, as the challenge's
    ``Evaluation.py`` does (1 for 2023; max/std-based for 2024; max over the 99.5th percentile for
    2025). The challenge's code swaps ground truth and prediction for 3-D inputs; we always score
    with the ground truth first (its 4-D branch).
    """
    if year not in _CMRX_PROTOCOLS:
        raise InputError(f"unknown CMRxRecon year {year}; choose one of {sorted(_CMRX_PROTOCOLS)}.")
    g, p = _pair(gt, pred)
    g = cmrx_normalise(g.reshape(-1, *g.shape[-2:]), year)
    p = cmrx_normalise(p.reshape(-1, *p.shape[-2:]), year)
    ranges = g.flatten(1).amax(dim=1)
    ssim_values = _ssim_images(g, p, ranges)
    psnr_values = [_psnr(g[i], p[i], float(ranges[i])) for i in range(g.shape[0])]
    nmse_values = [_nmse(g[i], p[i]) for i in range(g.shape[0])]
    protocol = _CMRX_PROTOCOLS[year]
    return MetricResult(
        protocol,
        ssim=float(ssim_values.mean()),
        psnr=float(np.mean(psnr_values)),
        nmse=float(np.mean(nmse_values)),
        count=int(g.shape[0]),
    )


def evaluate(gt: ArrayLike, pred: ArrayLike, protocol: Protocol) -> MetricResult:
    """Dispatch by protocol name: ``"fastmri"``, ``"cmrxrecon-2023"``, ``"cmrxrecon-2024"``, ``"cmrxrecon-2025"``."""
    if protocol == "fastmri":
        return evaluate_fastmri(gt, pred)
    years = {"cmrxrecon-2023": 2023, "cmrxrecon-2024": 2024, "cmrxrecon-2025": 2025}
    if protocol in years:
        return evaluate_cmrx(gt, pred, year=years[protocol])
    raise InputError(f"unknown metric protocol {protocol!r}; choose 'fastmri' or one of {list(years)}.")
