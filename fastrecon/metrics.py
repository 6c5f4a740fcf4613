"""Image-quality metrics under two protocols that must not be mixed: fastMRI and CMRxRecon.

**fastMRI** (``fastmri/evaluate.py``), per volume ``(N, H, W)``:
SSIM with a 7x7 uniform window, k1 = 0.01, k2 = 0.03, sample covariance, data range = the volume's
ground-truth maximum, averaged over slices; PSNR with data range = the ground-truth maximum; NMSE
``||gt - pred||^2 / ||gt||^2`` over the volume.

**CMRxRecon**, per 2-D image, as the challenge's own scorers (``calmetric`` in each year's
``Evaluation.py``; paths below are in the ``CmrxRecon`` GitHub organisation): each image is normalised
on its own, ground truth and prediction separately (2023: divided by its maximum; 2024: z-scored,
``(x - mean) / std``; 2025: magnitude divided by its 99.5th percentile), then scikit-image's
``structural_similarity`` (7x7 box window, k1 .01, k2 .03, sample covariance) and
``peak_signal_noise_ratio`` with data range = the normalised reference image's maximum, and NMSE
``||ref - other||^2 / ||ref||^2``; a file's score is the mean over its images and a leaderboard
number the unweighted mean over files (``mean_results(..., weighted=False)``). The ranking data are
the central two slices, the first three frames (all for mapping) and a centre crop to
``(round(H/3), round(W/2))``: :func:`cmrx_run4ranking` / ``evaluate_cmrx(..., crop=True)``.

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


def mean_results(results: Sequence[MetricResult], *, weighted: bool = True) -> MetricResult:
    """Average results, weighted by ``count`` (default) or, with ``weighted=False``, one vote per result.

    The CMRxRecon scorers average per-file means without weights (2023 ``Evaluation/Main_Score.py``
    ``CalValue``: ``np.mean(PSNR_list)`` of ``np.mean(psnr_array)`` per file; 2024/2025 take
    ``DataFrame.mean()`` over per-file rows), so a file of 120 images counts as much as one of 6.
    Refuses to mix protocols. ``count`` of the result is always the total number of items.
    """
    if not results:
        raise InputError("no results to average.")
    protocols = {r.protocol for r in results}
    if len(protocols) > 1:
        raise InputError(
            f"cannot average results of different protocols {sorted(protocols)}; they are not comparable."
        )
    total = sum(r.count for r in results)
    weights = [r.count for r in results] if weighted else [1] * len(results)
    norm = sum(weights)
    return MetricResult(
        protocol=results[0].protocol,
        ssim=sum(r.ssim * w for r, w in zip(results, weights, strict=True)) / norm,
        psnr=sum(r.psnr * w for r, w in zip(results, weights, strict=True)) / norm,
        nmse=sum(r.nmse * w for r, w in zip(results, weights, strict=True)) / norm,
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


def evaluate_fastmri(
    gt: ArrayLike, pred: ArrayLike, *, crop: bool = False, maxval: float | None = None
) -> MetricResult:
    """fastMRI metrics of one volume ``(N, H, W)``.

    ``crop=True`` first centre-crops both to ``(W_gt, W_gt)`` as fastMRI's ``evaluate.py`` does
    before scoring (identical for its square 320x320 targets); the default scores the images as given.
    ``maxval``: the data range of SSIM and PSNR; fastMRI's training and validation pass the volume's
    ``max`` attribute (``attrs["max"]`` of its file); None uses the ground-truth volume's maximum
    (``evaluate.py``).
    """
    g, p = _to_float64(gt, "gt"), _to_float64(pred, "pred")
    if maxval is not None and not (math.isfinite(float(maxval)) and float(maxval) > 0):
        raise InputError(f"maxval is {maxval!r}; expected a positive finite data range (the volume's max).")
    if crop:
        side = g.shape[-1]
        g, p = center_crop(g, (side, side)), center_crop(p, (side, side))
    return MetricResult(
        "fastmri",
        ssim=fastmri_ssim(g, p, maxval),
        psnr=fastmri_psnr(g, p, maxval),
        nmse=fastmri_nmse(g, p),
        count=1,
    )


# --- CMRxRecon protocol ----------------------------------------------------------------------------
#
# Sources (GitHub, organisation CmrxRecon):
#   2023  CMRxRecon/Evaluation/Evaluation.py (calmetric), Evaluation/Main_Score.py (CalValue),
#         CMRxRecon/CMRxReconDemo/run4Ranking.m
#   2024  CMRxRecon2025-snippets/evaluation-2024/Evaluation.py (normalize_std, calmetric),
#         evaluation-2024/Main_Score2024.py, Val_Score2024.py, Test_Score2024.py,
#         CMRxRecon2024/CMRxReconDemo/run4Ranking.m, CMRxRecon2024/ReconTutorial/run4ranking.py
#   2025  CMRxRecon2025-snippets/evaluation-2025/Evaluation.py (normalize_percentile, calmetric),
#         evaluation-2025/Val_Score2025.py, CMRx-evaluation-snippets/test-2025/Evaluation.py and
#         Test_Score2025.py


def cmrx_normalise(image: torch.Tensor, year: int) -> torch.Tensor:
    """CMRxRecon's per-image normalisation of every 2-D image in ``(..., H, W)``.

    - 2023: ``x / x.max()`` (``Evaluation/Evaluation.py``, ``calmetric``: ``psnr(gt / gt.max(),
      pred / pred.max())``).
    - 2024: ``(x - mean) / std`` with numpy's population std (``evaluation-2024/Evaluation.py``,
      ``normalize_std``: ``mean = np.mean(array); std = np.std(array)``).
    - 2025: ``|x| / p``, ``p`` the 99.5th percentile of ``|x|`` (numpy's default linear
      interpolation), unclipped (``evaluation-2025/Evaluation.py``, ``normalize_percentile``:
      ``np.percentile(data, 99.5)``; the ``np.clip(..., 0, 1)`` there is commented out).

    An image whose scale is 0 is left unscaled: the 2025 code's guard (``if percentile99 == 0:
    return data``), applied to every year here (2023/2024 would divide by zero and score NaN).
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


def _matlab_round(value: float) -> int:
    """MATLAB's ``round`` of a non-negative number (halves away from zero, unlike Python's)."""
    return math.floor(value + 0.5)


def cmrx_ranking_crop(image: torch.Tensor) -> torch.Tensor:
    """run4Ranking's spatial crop of the last two axes ``(H, W)`` = ``(sx, sy)`` = (readout kx, phase
    encode ky) to ``(round(H / 3), round(W / 2))``, the "middle 1/6" the challenge ranks.

    ``run4Ranking.m`` (2023 and 2024): ``crop(abs(img), [round(sx/3), round(sy/2), ...])`` with
    MATLAB's ``round`` (half away from zero) and Lustig's ``crop.m``, whose 1-based indices
    ``floor(m/2)+1+ceil(-s/2) : floor(m/2)+ceil(s/2)`` start at 0-based ``m // 2 - s // 2``; this is
    ``ReconTutorial/run4ranking.py``'s ``start_x + math.ceil(-cx/2)`` and differs from fastMRI's
    ``(m - s) // 2`` when ``m`` is even and ``s`` odd.
    """
    height, width = image.shape[-2], image.shape[-1]
    crop_h, crop_w = _matlab_round(height / 3), _matlab_round(width / 2)
    if crop_h < 1 or crop_w < 1:
        raise InputError(f"image {(height, width)} is too small for the CMRxRecon ranking crop.")
    top, left = height // 2 - crop_h // 2, width // 2 - crop_w // 2
    return image[..., top : top + crop_h, left : left + crop_w]


def cmrx_run4ranking(volume: ArrayLike, *, all_frames: bool = False) -> torch.Tensor:
    """The images CMRxRecon ranks, from a ``(T, Z, H, W)`` magnitude volume (frames, slices, kx, ky).

    As ``run4Ranking.m`` (2024 version, identical to 2023's wherever 2023's runs): the central two
    slices, MATLAB ``round(sz/2)-1 : round(sz/2)`` (all slices when ``sz < 3``); the first three frames
    ``1:3`` for cine-like series, every frame with ``all_frames=True`` (T1/T2 mapping, and T1rho in
    2025), then :func:`cmrx_ranking_crop`. Returns ``(T', Z', round(H/3), round(W/2))`` in float64.
    The 2025 ``run4Ranking_2025.m`` is not in the public code index; third-party translations of it
    apply the same rules (single-frame black-blood/T1w/T2w series are ``T = 1`` here).
    """
    if isinstance(volume, torch.Tensor) and volume.is_complex():
        volume = volume.abs()
    elif isinstance(volume, np.ndarray) and np.iscomplexobj(volume):
        volume = np.abs(volume)
    image = _to_float64(volume, "volume")
    if image.ndim != 4:
        raise InputError(f"cmrx_run4ranking expects a (T, Z, H, W) volume, got shape {tuple(image.shape)}.")
    frames, slices = image.shape[0], image.shape[1]
    if slices < 3:
        slice_index = list(range(slices))
    else:
        centre = _matlab_round(slices / 2)  # MATLAB 1-based round(sz/2)-1 : round(sz/2)
        slice_index = [centre - 2, centre - 1]
    frame_count = frames if all_frames else min(3, frames)
    image = image[:frame_count][:, slice_index]
    return cmrx_ranking_crop(image.abs())  # run4Ranking: crop(abs(...))


_CMRX_PROTOCOLS: dict[int, Protocol] = {
    2023: "cmrxrecon-2023",
    2024: "cmrxrecon-2024",
    2025: "cmrxrecon-2025",
}


def evaluate_cmrx(
    gt: ArrayLike,
    pred: ArrayLike,
    *,
    year: int = 2023,
    crop: bool = False,
    reference: Literal["gt", "pred"] = "gt",
) -> MetricResult:
    """CMRxRecon metrics: every 2-D image of ``(..., H, W)`` normalised on its own (see
    :func:`cmrx_normalise`), scored, and averaged (SSIM / PSNR / NMSE means over the images, as the
    scorers' ``np.mean(psnr_array)`` per file).

    Per image, with ``ref`` the normalised reference image and ``other`` the other one, exactly
    ``calmetric``'s ``psnr`` / ``ssim`` / ``nmse`` helpers: scikit-image ``structural_similarity(ref,
    other, data_range=ref.max())`` (defaults: 7x7 uniform window, k1 .01, k2 .03, sample covariance),
    ``peak_signal_noise_ratio(ref, other, data_range=ref.max())`` and ``||ref - other||^2 /
    ||ref||^2``. The data range is thus 1 for 2023, ``(max - mean) / std`` for 2024 and
    ``max / p99.5`` for 2025.

    ``crop=True`` first applies the ranking crop :func:`cmrx_ranking_crop` to both images (use
    :func:`cmrx_run4ranking` to also pick the ranked slices and frames of a ``(T, Z, H, W)`` volume).

    ``reference`` picks the image that sets the data range and the NMSE denominator. ``"gt"`` (the
    default) is ``calmetric``'s intent and what the 2023 scorer computes (``Main_Score.py`` calls
    ``calmetric(pred_recon, gt_recon)`` in the signature's order). The 2024 and 2025 scorers call
    ``calmetric(gtmat, reconmat)`` / ``calmetric(gt, recon)`` against the signature
    ``calmetric(pred_recon, gt_recon)``: for 4-D ``(sx, sy, sz, t)`` files (cine, mapping, ... -- most
    of the data) the reconstruction therefore takes the ground truth's place, which
    ``reference="pred"`` reproduces; their 3-D branch swaps the arguments once more, so 3-D files
    (black blood, T1w/T2w) are scored with ``reference="gt"``. SSIM and the MSE are symmetric; only
    the data range (PSNR, SSIM's constants) and the NMSE denominator change.
    """
    if year not in _CMRX_PROTOCOLS:
        raise InputError(f"unknown CMRxRecon year {year}; choose one of {sorted(_CMRX_PROTOCOLS)}.")
    if reference not in ("gt", "pred"):
        raise InputError(f"reference must be 'gt' or 'pred', got {reference!r}.")
    g, p = _pair(gt, pred)
    if crop:
        g, p = cmrx_ranking_crop(g), cmrx_ranking_crop(p)
    g = cmrx_normalise(g.reshape(-1, *g.shape[-2:]), year)
    p = cmrx_normalise(p.reshape(-1, *p.shape[-2:]), year)
    ref, other = (g, p) if reference == "gt" else (p, g)
    ranges = ref.flatten(1).amax(dim=1)
    ssim_values = _ssim_images(ref, other, ranges)
    psnr_values = [_psnr(ref[i], other[i], float(ranges[i])) for i in range(ref.shape[0])]
    nmse_values = [_nmse(ref[i], other[i]) for i in range(ref.shape[0])]
    protocol = _CMRX_PROTOCOLS[year]
    return MetricResult(
        protocol,
        ssim=float(ssim_values.mean()),
        psnr=float(np.mean(psnr_values)),
        nmse=float(np.mean(nmse_values)),
        count=int(ref.shape[0]),
    )


def evaluate(
    gt: ArrayLike, pred: ArrayLike, protocol: Protocol, *, maxval: float | None = None
) -> MetricResult:
    """Dispatch by protocol name: ``"fastmri"``, ``"cmrxrecon-2023"``, ``"cmrxrecon-2024"``, ``"cmrxrecon-2025"``.

    ``maxval`` (fastMRI only): the volume's data range, see :func:`evaluate_fastmri`.
    """
    if protocol == "fastmri":
        return evaluate_fastmri(gt, pred, maxval=maxval)
    years = {"cmrxrecon-2023": 2023, "cmrxrecon-2024": 2024, "cmrxrecon-2025": 2025}
    if protocol in years and maxval is not None:
        raise InputError(
            f"maxval={maxval!r} was given for {protocol}; the CMRxRecon protocols normalise each image on its own."
        )
    if protocol in years:
        return evaluate_cmrx(gt, pred, year=years[protocol])
    raise InputError(f"unknown metric protocol {protocol!r}; choose 'fastmri' or one of {list(years)}.")
