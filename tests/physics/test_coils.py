"""Coil operators: adjointness of E and R, RSS, complex magnitude."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrecon.physics import complex_abs, fft2c, rss, sens_expand, sens_reduce


@pytest.mark.parametrize(("coils", "size"), [(1, (6, 8)), (4, (7, 5)), (15, (9, 12))])
def test_expand_reduce_adjoint(coils: int, size: tuple[int, int]) -> None:
    x = torch.randn(2, *size, dtype=torch.complex128)
    y = torch.randn(2, coils, *size, dtype=torch.complex128)
    sens = torch.randn(2, coils, *size, dtype=torch.complex128)
    lhs = torch.vdot(sens_expand(x, sens).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), sens_reduce(y, sens).flatten())
    torch.testing.assert_close(lhs, rhs)


def test_expand_matches_numpy_oracle() -> None:
    x = torch.randn(1, 5, 7, dtype=torch.complex64)
    sens = torch.randn(1, 3, 5, 7, dtype=torch.complex64)
    xs = (sens.numpy() * x.numpy()[:, None]).astype(np.complex128)
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(xs, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(sens_expand(x, sens).numpy(), expected, atol=1e-5)


def test_reduce_of_expand_is_identity_for_normalised_maps() -> None:
    sens = torch.randn(2, 4, 6, 6, dtype=torch.complex128)
    sens = sens / rss(sens, dim=1).unsqueeze(1)
    x = torch.randn(2, 6, 6, dtype=torch.complex128)
    torch.testing.assert_close(sens_reduce(sens_expand(x, sens), sens), x)


def test_rss_and_complex_abs() -> None:
    x = torch.tensor([[3 + 4j, 0j], [1j, -2 + 0j]], dtype=torch.complex64).reshape(1, 2, 1, 2)
    torch.testing.assert_close(complex_abs(x), torch.tensor([[[[5.0, 0.0]], [[1.0, 2.0]]]]))
    torch.testing.assert_close(rss(x, dim=1), torch.tensor([[[np.sqrt(26.0), 2.0]]], dtype=torch.float32))
    torch.testing.assert_close(rss(torch.tensor([[3.0], [4.0]]), dim=0), torch.tensor([5.0]))
    # RSS of coil images equals RSS of the k-space energy per coil (Parseval), a scale check.
    k = torch.randn(1, 3, 8, 8, dtype=torch.complex64)
    torch.testing.assert_close(
        rss(fft2c(k), dim=1).pow(2).sum(), rss(k, dim=1).pow(2).sum(), rtol=1e-5, atol=0
    )
