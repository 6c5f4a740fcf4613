"""Fuzz ``Reconstructor.reconstruct`` (demo-x8, CPU): random shapes, dtypes, array libraries and layouts
(non-contiguous, sparse, meta), scales and masks. Every call must give a finite result of the right shape, dtype and library, or raise a
``FastreconError``; anything else (NaN, a wrong shape, a bare torch/numpy exception) fails.

Deterministic (``derandomize``): the same examples in every run, so CI cannot flake; a failure prints
the example. Small matrices keep one example to a fraction of a second.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrecon
from fastrecon.errors import FastreconError


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and immune to a loaded machine
    yield
    torch.set_num_threads(threads)


@functools.cache
def _recon() -> fastrecon.Reconstructor:
    # Not a fixture argument: hypothesis prints the arguments of a failing example, and a model's repr is huge.
    return fastrecon.load("demo-x8", device="cpu")


DTYPES = ("complex64", "complex128", "float32x2", "float64x2")
MASKS = ("1d", "2d", "per-slice", "inferred", "1d-float", "2d-int")


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    dtype = draw(st.sampled_from(DTYPES))
    double = dtype in ("complex128", "float64x2")
    # complex128 must work from 1e-30 to 1e300; single precision over its own range.
    exponent = draw(st.floats(-30, 300 if double else 30, allow_nan=False))
    return {
        "single": draw(st.booleans()),
        "n": draw(st.integers(1, 3)),
        "coils": draw(st.integers(1, 5)),
        "h": draw(st.integers(6, 40)),
        "w": draw(st.integers(6, 40)),
        "dtype": dtype,
        "library": draw(st.sampled_from(("numpy", "torch"))),
        "layout": draw(st.sampled_from(("dense", "dense", "dense", "view", "sparse", "meta"))),
        "scale": 10.0**exponent,
        "mask": draw(st.sampled_from(MASKS)),
        "step": draw(st.integers(1, 8)),
        "acs": draw(st.integers(0, 8)),
        "junk": draw(st.sampled_from(("zero", "noise", "nan", "inf", "huge"))),
        "complex_out": draw(st.booleans()),
        "zero_coil": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def _mask_1d(w: int, step: int, acs: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(w, bool)
    mask[rng.integers(0, step) :: step] = True
    centre = w // 2
    mask[max(0, centre - acs // 2) : centre - acs // 2 + acs] = True
    return mask


def _build(case: dict[str, Any]) -> tuple[Any, Any, tuple[int, ...]]:
    rng = np.random.default_rng(case["seed"])
    n, c, h, w = case["n"], case["coils"], case["h"], case["w"]
    double = case["dtype"] in ("complex128", "float64x2")
    k = (rng.standard_normal((n, c, h, w)) + 1j * rng.standard_normal((n, c, h, w))) * case["scale"]
    if case["zero_coil"] and c > 1:
        k[:, 0] = 0  # one dead coil among several
    masks = np.stack([_mask_1d(w, case["step"], case["acs"], rng) for _ in range(n)])
    cols = masks[0]
    kind = case["mask"]
    if kind == "per-slice":
        sampled = masks[:, None, None, :]
        mask: Any = sampled
    elif kind in ("2d", "2d-int"):
        sampled = np.broadcast_to(cols, (h, w))
        mask = sampled.astype(np.int64) if kind == "2d-int" else sampled.copy()
    else:
        sampled = cols
        mask = cols.astype(np.float32) if kind == "1d-float" else cols
    inside = np.broadcast_to(sampled, k.shape)
    junk = {
        "zero": 0.0,
        "noise": 1.0,
        "nan": np.nan,
        "inf": np.inf,
        "huge": 1e30 if not double else 1e300,
    }[case["junk"]]
    if kind == "inferred":  # the zero pattern is the mask: outside must be exactly zero
        k = np.where(inside, k, 0)
        mask = None
    else:
        k = np.where(inside, k, junk * (rng.standard_normal(k.shape) if case["junk"] == "noise" else 1.0))
    k = k.astype(np.complex128 if double else np.complex64)
    if case["dtype"].endswith("x2"):
        k = np.stack([k.real, k.imag], axis=-1)
    if case["single"]:
        k = k[0]
        if kind == "per-slice":
            mask = mask[:1]
    if case["library"] == "torch":
        k = torch.from_numpy(np.ascontiguousarray(k))
        mask = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask))
        if case["layout"] == "view":  # non-contiguous: every other element of a larger buffer
            k = torch.stack([k, torch.zeros_like(k)], dim=-1)[..., 0]
        elif case["layout"] == "sparse":
            k = k.to_sparse()
        elif case["layout"] == "meta":
            k = k.to("meta")
    out_shape = (h, w) if case["single"] else (n, h, w)
    return k, mask, out_shape


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_reconstruct_gives_a_finite_image_or_a_fastrecon_error(case: dict[str, Any]) -> None:
    kspace, mask, out_shape = _build(case)
    try:
        out = _recon().reconstruct(kspace, mask, return_complex=case["complex_out"])
    except FastreconError as exc:
        assert str(exc), "a FastreconError without a message"
        return
    double = case["dtype"] in ("complex128", "float64x2")
    if case["library"] == "torch":
        assert isinstance(out, torch.Tensor)
        values = out.numpy()
    else:
        assert isinstance(out, np.ndarray)
        values = out
    assert values.shape == out_shape
    expected = {
        (False, False): np.float32,
        (False, True): np.float64,
        (True, False): np.complex64,
        (True, True): np.complex128,
    }[(case["complex_out"], double)]
    assert values.dtype == expected
    assert np.isfinite(values).all()
    # Scale-equivariance at the boundary: the image scales with the input (a 0 input gives an error).
    magnitude = float(np.abs(values).max())
    assert magnitude > 0
    assert abs(math.log10(magnitude) - math.log10(case["scale"])) < 6


def test_the_fuzz_accepts_good_input() -> None:
    """The generator is not all errors: a plain case reconstructs (so the fuzz test sees both outcomes)."""
    case = {
        "single": False, "n": 2, "coils": 3, "h": 24, "w": 20, "dtype": "complex64", "library": "numpy",
        "layout": "dense", "scale": 1.0, "mask": "1d", "step": 4, "acs": 6, "junk": "nan", "complex_out": False,
        "zero_coil": False, "seed": 0,
    }  # fmt: skip
    kspace, mask, shape = _build(case)
    out = _recon().reconstruct(kspace, mask)
    assert out.shape == shape and np.isfinite(out).all()
