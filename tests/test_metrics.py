"""Metrics: SSIM against scikit-image, fastMRI's evaluate.py and SSIMLoss, CMRxRecon's per-image protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastrecon.errors import InputError
from fastrecon.metrics import (
    MetricResult,
    SSIMLoss,
    cmrx_normalise,
    evaluate,
    evaluate_cmrx,
    evaluate_fastmri,
    fastmri_nmse,
    fastmri_psnr,
    fastmri_ssim,
    mean_results,
)

metrics_sk = pytest.importorskip("skimage.metrics")


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


def _cmrx_oracle(gt: np.ndarray, pred: np.ndarray, year: int) -> tuple[float, float, float]:
    """The challenge's Evaluation.py per-image loop (4-D branch: ground truth first)."""

    def norm(x: np.ndarray) -> np.ndarray:
        if year == 2023:
            return x / x.max()
        if year == 2024:
            return (x - np.mean(x)) / np.std(x)
        data = np.abs(x)
        p = np.percentile(data, 99.5)
        return data if p == 0 else data / p

    ssims, psnrs, nmses = [], [], []
    for i in range(gt.shape[0]):
        g, p = norm(gt[i]), norm(pred[i])
        ssims.append(metrics_sk.structural_similarity(g, p, data_range=g.max()))
        psnrs.append(metrics_sk.peak_signal_noise_ratio(g, p, data_range=g.max()))
        nmses.append(np.linalg.norm(g - p) ** 2 / np.linalg.norm(g) ** 2)
    return float(np.mean(ssims)), float(np.mean(psnrs)), float(np.mean(nmses))


@pytest.mark.parametrize("year", [2023, 2024, 2025])
def test_cmrx_protocol_equals_challenge_code(year) -> None:
    gt, pred = _pair((5, 48, 40), seed=7)
    pred[2] *= 3.0  # a global scale error: invisible to the per-image normalisation
    result = evaluate_cmrx(gt, pred, year=year)
    ssim, psnr, nmse = _cmrx_oracle(gt, pred, year)
    assert result.protocol == f"cmrxrecon-{year}" and result.count == 5
    assert result.ssim == pytest.approx(ssim, abs=1e-10)
    assert result.psnr == pytest.approx(psnr, abs=1e-8)
    assert result.nmse == pytest.approx(nmse, rel=1e-9)
    assert evaluate(gt, pred, f"cmrxrecon-{year}") == result  # type: ignore[arg-type]


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
