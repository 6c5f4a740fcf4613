"""Metrics: SSIM against scikit-image, fastMRI's evaluate.py and SSIMLoss, CMRxRecon's per-image protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.metrics as metrics_sk  # a dev dependency: a broken environment must fail, not skip
import torch
import torch.nn.functional as F

from fastrecon.errors import InputError
from fastrecon.metrics import (
    MetricResult,
    SSIMLoss,
    cmrx_normalise,
    cmrx_ranking_crop,
    cmrx_run4ranking,
    evaluate,
    evaluate_cmrx,
    evaluate_fastmri,
    fastmri_nmse,
    fastmri_psnr,
    fastmri_ssim,
    mean_results,
)


def _pair(
    shape: tuple[int, ...], seed: int = 0, noise: float = 0.1, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[-2]), np.linspace(-1, 1, shape[-1]), indexing="ij")
    base = np.exp(-(xx**2 + yy**2) * 2) + 0.3 * (xx**2 / 0.5 + yy**2 / 0.7 < 1)
    gt = (
        np.broadcast_to(base, shape) * rng.uniform(0.5, 2.0, size=shape[:-2] + (1, 1)) * 1e-4
    )  # fastMRI-like scale
    pred = gt + noise * gt.max() * rng.standard_normal(shape)
    return np.abs(gt).astype(dtype), np.abs(pred).astype(dtype)


# --- fastMRI's evaluate.py, as the oracle ------------------------------------------------------------


def _fastmri_ssim_oracle(gt: np.ndarray, pred: np.ndarray) -> float:
    maxval = gt.max()
    return float(
        np.mean(
            [metrics_sk.structural_similarity(gt[i], pred[i], data_range=maxval) for i in range(gt.shape[0])]
        )
    )


class _FastMRISSIMLossOracle(torch.nn.Module):
    """fastMRI's ``fastmri/losses.py`` SSIMLoss (MIT licence), verbatim arithmetic."""

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> None:
        super().__init__()
        self.k1, self.k2 = k1, k2
        self.register_buffer("w", torch.ones(1, 1, win_size, win_size) / win_size**2)
        np_ = win_size**2
        self.cov_norm = np_ / (np_ - 1)

    def forward(self, X: torch.Tensor, Y: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:  # noqa: N803
        data_range = data_range[:, None, None, None]
        C1 = (self.k1 * data_range) ** 2  # noqa: N806
        C2 = (self.k2 * data_range) ** 2  # noqa: N806
        w = self.w
        assert isinstance(w, torch.Tensor)
        ux, uy = F.conv2d(X, w), F.conv2d(Y, w)
        uxx, uyy, uxy = F.conv2d(X * X, w), F.conv2d(Y * Y, w), F.conv2d(X * Y, w)
        vx, vy, vxy = (
            self.cov_norm * (uxx - ux * ux),
            self.cov_norm * (uyy - uy * uy),
            self.cov_norm * (uxy - ux * uy),
        )
        A1, A2, B1, B2 = (2 * ux * uy + C1, 2 * vxy + C2, ux**2 + uy**2 + C1, vx + vy + C2)  # noqa: N806
        return 1 - ((A1 * A2) / (B1 * B2)).mean()


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 41, 29), (1, 7, 7), (4, 64, 48)])
def test_ssim_equals_skimage_float64(shape) -> None:
    gt, pred = _pair(shape, seed=sum(shape))
    assert fastmri_ssim(gt, pred) == pytest.approx(_fastmri_ssim_oracle(gt, pred), abs=1e-10)


def test_ssim_equals_skimage_float32_inputs() -> None:
    # fastMRI's files hold float32; skimage then filters in float32 while we evaluate in float64.
    gt, pred = _pair((3, 80, 60), seed=3, dtype=np.float32)
    assert fastmri_ssim(gt, pred) == pytest.approx(_fastmri_ssim_oracle(gt, pred), abs=1e-5)


def test_ssim_uses_volume_max_not_slice_max() -> None:
    gt, pred = _pair((3, 32, 32), seed=1)
    gt[0] *= 10  # one bright slice changes the data range of every slice
    pred[0] *= 10
    per_slice = np.mean(
        [metrics_sk.structural_similarity(gt[i], pred[i], data_range=gt[i].max()) for i in range(3)]
    )
    assert fastmri_ssim(gt, pred) == pytest.approx(_fastmri_ssim_oracle(gt, pred), abs=1e-10)
    assert abs(fastmri_ssim(gt, pred) - per_slice) > 1e-3


def test_psnr_and_nmse_equal_fastmri() -> None:
    gt, pred = _pair((3, 40, 36), seed=5)
    assert fastmri_psnr(gt, pred) == pytest.approx(
        metrics_sk.peak_signal_noise_ratio(gt, pred, data_range=gt.max()), abs=1e-9
    )
    expected_nmse = np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2
    assert fastmri_nmse(gt, pred) == pytest.approx(expected_nmse, rel=1e-12)
    result = evaluate_fastmri(torch.from_numpy(gt), torch.from_numpy(pred))
    assert result.protocol == "fastmri" and result.count == 1
    assert result.ssim == pytest.approx(_fastmri_ssim_oracle(gt, pred), abs=1e-10)


def test_identical_images() -> None:
    gt, _ = _pair((2, 16, 16))
    result = evaluate_fastmri(gt, gt)
    assert result.ssim == pytest.approx(1.0, abs=1e-12)
    assert result.psnr == math.inf and result.nmse == 0.0


def test_evaluate_fastmri_crop_matches_fastmri_center_crop() -> None:
    gt, pred = _pair((2, 40, 32), seed=2)
    cropped = evaluate_fastmri(gt, pred, crop=True)
    top = (40 - 32) // 2
    assert cropped.ssim == pytest.approx(
        _fastmri_ssim_oracle(gt[:, top : top + 32], pred[:, top : top + 32]), abs=1e-10
    )


def test_ssim_loss_matches_fastmri_and_backpropagates() -> None:
    gt, pred = _pair((3, 1, 36, 30), seed=4, dtype=np.float32)
    x = torch.from_numpy(pred).requires_grad_(True)
    y = torch.from_numpy(gt)
    data_range = torch.from_numpy(gt.reshape(3, -1).max(axis=1))
    loss = SSIMLoss()(x, y, data_range)
    expected = _FastMRISSIMLossOracle()(x.detach(), y, data_range)
    assert loss.detach().item() == pytest.approx(float(expected), abs=1e-6)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # (B, H, W) input and the per-window map.
    assert SSIMLoss()(x.detach()[:, 0], y[:, 0], data_range).item() == pytest.approx(
        float(expected), abs=1e-6
    )
    assert SSIMLoss()(x.detach(), y, data_range, reduced=False).shape == (3, 1, 30, 24)


def test_ssim_loss_per_sample_data_range_equals_skimage() -> None:
    gt, pred = _pair((2, 1, 24, 24), seed=6)
    data_range = torch.tensor([gt[0].max(), 3 * gt[1].max()])
    per_window = SSIMLoss()(torch.from_numpy(pred), torch.from_numpy(gt), data_range, reduced=False)
    for i in range(2):
        sk = metrics_sk.structural_similarity(gt[i, 0], pred[i, 0], data_range=float(data_range[i]))
        assert 1 - float(per_window[i].mean()) == pytest.approx(sk, abs=1e-10)


# --- CMRxRecon ----------------------------------------------------------------------------------------


def _official_normalise(x: np.ndarray, year: int) -> np.ndarray:
    """normalize per year, as the challenge's Evaluation.py files write it."""
    if year == 2023:  # CMRxRecon/Evaluation/Evaluation.py: gt / gt.max()
        return x / x.max()
    if year == 2024:  # CMRxRecon2025-snippets/evaluation-2024/Evaluation.py: normalize_std
        return (x - np.mean(x)) / np.std(x)
    data = np.abs(x)  # evaluation-2025/Evaluation.py: normalize_percentile
    percentile99 = np.percentile(data, 99.5)
    return data if percentile99 == 0 else data / percentile99


def _official_calmetric(
    pred_recon: np.ndarray, gt_recon: np.ndarray, year: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The challenges' ``calmetric(pred_recon, gt_recon)`` on MATLAB-order arrays ``(sx, sy, sz[, t])``,
    branch for branch: the 4-D branch scores ``(gt, pred)``, the 3-D branch ``(pred, gt)`` (2024/2025;
    2023's 3-D branch keeps ``(gt, pred)``)."""

    def triple(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
        return (
            metrics_sk.peak_signal_noise_ratio(a, b, data_range=a.max()),
            metrics_sk.structural_similarity(a, b, data_range=a.max()),
            float(np.linalg.norm(a - b) ** 2 / np.linalg.norm(a) ** 2),
        )

    out = []
    if gt_recon.ndim == 4:
        for i in range(gt_recon.shape[-2]):
            for j in range(gt_recon.shape[-1]):
                pred = _official_normalise(pred_recon[:, :, i, j], year)
                gt = _official_normalise(gt_recon[:, :, i, j], year)
                out.append(triple(gt, pred))
    else:
        for j in range(gt_recon.shape[-1]):
            pred = _official_normalise(pred_recon[:, :, j], year)
            gt = _official_normalise(gt_recon[:, :, j], year)
            out.append(triple(gt, pred) if year == 2023 else triple(pred, gt))
    psnr, ssim, nmse = (np.array(v) for v in zip(*out, strict=True))
    return psnr, ssim, nmse


def _matlab(volume: np.ndarray) -> np.ndarray:
    """fastrecon ``(..., H, W)`` -> MATLAB ``(sx, sy, ...)`` as scipy.io.loadmat returns ``img4ranking``."""
    return np.moveaxis(volume, (-2, -1), (0, 1))


def _assert_matches(result: MetricResult, psnr: np.ndarray, ssim: np.ndarray, nmse: np.ndarray) -> None:
    # The scorers' per-file numbers: np.mean(psnr_array) etc.
    assert result.ssim == pytest.approx(float(np.mean(ssim)), abs=1e-10)
    assert result.psnr == pytest.approx(float(np.mean(psnr)), abs=1e-8)
    assert result.nmse == pytest.approx(float(np.mean(nmse)), rel=1e-9)


@pytest.mark.parametrize("year", [2023, 2024, 2025])
def test_cmrx_protocol_equals_challenge_calmetric(year) -> None:
    gt, pred = _pair((3, 2, 48, 40), seed=7)  # (t, sz, H, W)
    pred[2] *= 3.0  # a global scale error: invisible to the per-image normalisation
    pred[0, 1] += 0.3 * gt.max()  # an offset: visible to 2023/2025, not to 2024's z-score
    result = evaluate_cmrx(gt, pred, year=year)
    assert result.protocol == f"cmrxrecon-{year}" and result.count == 6
    # calmetric(pred_recon, gt_recon) in signature order (2023 Main_Score.py CalValue): gt is the reference.
    mat_gt, mat_pred = (
        _matlab(gt.transpose(1, 0, 2, 3)),
        _matlab(pred.transpose(1, 0, 2, 3)),
    )  # (sx, sy, sz, t)
    _assert_matches(result, *_official_calmetric(mat_pred, mat_gt, year))
    assert evaluate(gt, pred, f"cmrxrecon-{year}") == result  # type: ignore[arg-type]


@pytest.mark.parametrize("year", [2024, 2025])
def test_cmrx_reference_pred_reproduces_swapped_scorer_call(year) -> None:
    # Val_Score2024.py / Test_Score2025.py call calmetric(gtmat, reconmat): for 4-D files the
    # reconstruction becomes the reference (data range and NMSE denominator).
    gt, pred = _pair((3, 2, 40, 36), seed=11)
    pred *= np.linspace(0.7, 1.4, 36)  # a smooth intensity ramp: the two normalised maxima differ
    mat_gt, mat_pred = _matlab(gt.transpose(1, 0, 2, 3)), _matlab(pred.transpose(1, 0, 2, 3))
    official = _official_calmetric(mat_gt, mat_pred, year)
    swapped = evaluate_cmrx(gt, pred, year=year, reference="pred")
    _assert_matches(swapped, *official)
    default = evaluate_cmrx(gt, pred, year=year)
    assert abs(default.psnr - swapped.psnr) > 1e-3 and default.ssim != swapped.ssim
    if year == 2025:  # z-scored images all have ||x||^2 = H * W, so 2024's NMSE does not change
        assert abs(default.nmse - swapped.nmse) > 1e-6
    # Their 3-D branch swaps back: 3-D files (black blood, T1w/T2w) are scored with the gt as reference.
    gt3, pred3 = gt[0], pred[0]  # (sz, H, W) -> MATLAB (sx, sy, sz)
    _assert_matches(
        evaluate_cmrx(gt3, pred3, year=year), *_official_calmetric(_matlab(gt3), _matlab(pred3), year)
    )


def _run4ranking_py_crop(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """CMRxRecon2024/ReconTutorial/run4ranking.py ``crop`` on MATLAB-order (sx, sy, ...) arrays."""
    sx, sy = image.shape[:2]
    cx, cy = crop
    start_x, start_y = math.floor(sx / 2), math.floor(sy / 2)
    return image[
        start_x + math.ceil(-cx / 2) : start_x + math.ceil(cx / 2),
        start_y + math.ceil(-cy / 2) : start_y + math.ceil(cy / 2),
    ]


@pytest.mark.parametrize("shape", [(10, 5), (12, 9), (11, 8), (246, 512), (204, 448), (7, 6)])
def test_cmrx_ranking_crop_matches_run4ranking(shape) -> None:
    height, width = shape
    image = torch.arange(height * width, dtype=torch.float64).reshape(1, height, width)
    cropped = cmrx_ranking_crop(image)
    # MATLAB round(sx/3), round(sy/2): halves round up (run4ranking.py adds 0.00001 for this).
    expected_shape = (round(height / 3 + 1e-5), round(width / 2 + 1e-5))
    assert tuple(cropped.shape[-2:]) == expected_shape
    reference = _run4ranking_py_crop(image[0].numpy(), expected_shape)
    np.testing.assert_array_equal(cropped[0].numpy(), reference)


def test_cmrx_ranking_crop_hand_computed() -> None:
    # H=10 -> round(3.33)=3 rows starting at 10//2 - 3//2 = 4 (fastMRI's (10-3)//2 would start at 3);
    # W=5 -> MATLAB round(2.5)=3 columns (Python's round gives 2) starting at 5//2 - 3//2 = 1.
    image = torch.arange(50, dtype=torch.float64).reshape(10, 5)
    expected = torch.tensor([[21, 22, 23], [26, 27, 28], [31, 32, 33]], dtype=torch.float64)
    assert torch.equal(cmrx_ranking_crop(image), expected)
    gt, pred = _pair((2, 30, 20), seed=12)
    top, left = 30 // 2 - 10 // 2, 20 // 2 - 10 // 2
    assert evaluate_cmrx(gt, pred, crop=True) == evaluate_cmrx(
        gt[:, top : top + 10, left : left + 10], pred[:, top : top + 10, left : left + 10]
    )


@pytest.mark.parametrize(
    ("slices", "expected"), [(1, [0]), (2, [0, 1]), (3, [0, 1]), (10, [3, 4]), (11, [4, 5]), (13, [5, 6])]
)
def test_cmrx_run4ranking_picks_central_slices_and_first_frames(slices, expected) -> None:
    # MATLAB: round(sz/2)-1 : round(sz/2), 1-based, round half away from zero; all slices when sz < 3.
    frames = 5
    volume = np.zeros((frames, slices, 12, 8))
    volume += np.arange(frames).reshape(-1, 1, 1, 1) * 100 + np.arange(slices).reshape(1, -1, 1, 1)
    ranked = cmrx_run4ranking(volume)
    assert ranked.shape == (3, len(expected), 4, 4)
    np.testing.assert_array_equal(ranked[:, :, 0, 0].numpy(), np.add.outer([0, 100, 200], expected))
    every = cmrx_run4ranking(volume - 1j * volume, all_frames=True)  # complex in, magnitude out
    assert every.shape == (frames, len(expected), 4, 4)
    np.testing.assert_allclose(
        every[:, :, 0, 0].numpy(), np.sqrt(2) * np.add.outer(np.arange(frames) * 100, expected)
    )


def test_mean_results_unweighted_is_mean_over_files() -> None:
    a = MetricResult("cmrxrecon-2023", ssim=0.9, psnr=30.0, nmse=0.01, count=1)
    b = MetricResult("cmrxrecon-2023", ssim=0.5, psnr=20.0, nmse=0.03, count=3)
    weighted, per_file = mean_results([a, b]), mean_results([a, b], weighted=False)
    assert weighted.psnr == pytest.approx(22.5) and weighted.count == 4
    assert per_file.psnr == pytest.approx(25.0) and per_file.ssim == pytest.approx(0.7)
    assert per_file.nmse == pytest.approx(0.02) and per_file.count == 4


def test_cmrx_accepts_any_leading_axes_and_is_scale_invariant() -> None:
    gt, pred = _pair((2, 3, 32, 32), seed=8)
    flat = evaluate_cmrx(gt.reshape(6, 32, 32), pred.reshape(6, 32, 32))
    assert evaluate_cmrx(gt, pred) == flat
    scaled = pred * np.array([1, 5, 0.1, 2, 3, 7]).reshape(2, 3, 1, 1)
    assert evaluate_cmrx(gt, scaled).ssim == pytest.approx(flat.ssim, abs=1e-12)


def test_protocols_give_different_numbers_and_never_mix() -> None:
    gt, pred = _pair((3, 32, 32), seed=9)
    pred[1] *= 1.5
    fast, cmrx = evaluate(gt, pred, "fastmri"), evaluate(gt, pred, "cmrxrecon-2023")
    assert abs(fast.psnr - cmrx.psnr) > 0.1
    with pytest.raises(InputError, match="different protocols"):
        mean_results([fast, cmrx])
    both = mean_results([fast, evaluate_fastmri(gt, gt * 1.01)])
    assert both.count == 2 and both.protocol == "fastmri"
    assert "fastmri" in str(fast)


def test_cmrx_normalise_percentile() -> None:
    image = torch.arange(1000, dtype=torch.float64).reshape(1, 20, 50)
    normalised = cmrx_normalise(image, 2025)
    assert float(normalised.max()) == pytest.approx(999 / np.percentile(np.arange(1000), 99.5))


@pytest.mark.parametrize(
    "call",
    [
        lambda: fastmri_ssim(np.ones((2, 8, 8)), np.ones((2, 8, 9))),
        lambda: fastmri_ssim(np.ones((8, 8)), np.ones((8, 8))),
        lambda: fastmri_ssim(np.ones((1, 5, 8)), np.ones((1, 5, 8))),
        lambda: evaluate_fastmri(np.ones((1, 8, 8), dtype=np.complex64), np.ones((1, 8, 8))),
        lambda: evaluate_cmrx(np.ones((1, 8, 8)), np.ones((1, 8, 8)), year=2022),
        lambda: evaluate_cmrx(np.ones((1, 8, 8)), np.ones((1, 8, 8)), reference="both"),  # type: ignore[arg-type]
        lambda: cmrx_run4ranking(np.ones((2, 8, 8))),
        lambda: cmrx_ranking_crop(torch.ones(1, 1, 1)),
        lambda: evaluate(np.ones((1, 8, 8)), np.ones((1, 8, 8)), "ssim"),  # type: ignore[arg-type]
        lambda: mean_results([]),
    ],
)
def test_bad_inputs_raise_input_error(call) -> None:
    with pytest.raises(InputError):
        call()


def test_result_as_dict() -> None:
    result = MetricResult("fastmri", 0.9, 30.0, 0.01)
    assert result.as_dict() == {"protocol": "fastmri", "ssim": 0.9, "psnr": 30.0, "nmse": 0.01, "count": 1}


def test_fastmri_maxval_is_the_data_range() -> None:
    from fastrecon.metrics import evaluate, evaluate_fastmri, fastmri_psnr, fastmri_ssim

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 16, 16, generator=gen, dtype=torch.float64)
    pred = gt + 0.05 * torch.randn(2, 16, 16, generator=gen, dtype=torch.float64)
    result = evaluate_fastmri(gt, pred, maxval=3.0)
    assert result.ssim == fastmri_ssim(gt, pred, 3.0) and result.psnr == fastmri_psnr(gt, pred, 3.0)
    assert result.psnr != evaluate_fastmri(gt, pred).psnr
    assert evaluate(gt, pred, "fastmri", maxval=3.0) == result
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="maxval"):
            evaluate_fastmri(gt, pred, maxval=bad)
    with pytest.raises(InputError, match="normalise each image"):
        evaluate(gt, pred, "cmrxrecon-2023", maxval=3.0)
