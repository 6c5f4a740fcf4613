"""Cartesian undersampling masks: fastMRI's mask functions and CMRxRecon's uniform mask.

Every mask function here shares one call signature (``seed`` and ``offset`` keyword-only, because
fastMRI's positional order is ``(shape, offset, seed)``)::

    mask = mask_func(width_or_shape, seed=..., offset=...)          # (W,) bool tensor
    sample = mask_func.sample(width_or_shape, seed=..., offset=...)  # SampledMask(mask, num_low_frequencies, ...)

``width_or_shape`` is the number of phase-encode columns ``W`` or a k-space shape whose **last**
entry is ``W`` (fastrecon's complex layout ``(N, C, H, W)``; fastMRI's own functions take the
real-view layout ``(..., W, 2)`` and read ``shape[-2]``). Masks select columns of ``W``.

:class:`RandomMaskFunc`, :class:`EquiSpacedMaskFunc` and :class:`EquispacedMaskFractionFunc`
reproduce fastMRI's ``fastmri.data.subsample`` (MIT licence) draw for draw: the same
``numpy.random.RandomState`` calls in the same order, so a given seed gives the mask fastMRI gives.
fastMRI seeds per file with ``tuple(map(ord, fname))`` (see :func:`seed_from_name`), so every
slice of a volume shares one mask. With ``seed=None`` the function's own generator (seeded by the
constructor's ``seed``) advances from call to call, as in fastMRI.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from fastrecon.errors import InputError, UnknownNameError, close_matches

Seed = int | tuple[int, ...] | None
"""A seed for ``numpy.random.RandomState.seed``: an int, a tuple of ints, or None (keep the state)."""


class SampledMask(NamedTuple):
    """One drawn mask.

    Attributes:
        mask: ``(W,)`` bool tensor, True where a phase-encode column is sampled.
        num_low_frequencies: width of the fully sampled central block (the ACS lines).
        acceleration: the acceleration that was asked for (chosen among the function's list).
        center_fraction: the centre fraction that was chosen (``num_low_frequencies / W`` for
            :class:`CMRxUniformMask`).
    """

    mask: torch.Tensor
    num_low_frequencies: int
    acceleration: float
    center_fraction: float


@runtime_checkable
class MaskSampler(Protocol):
    """Anything with the common signature: every mask function here, or your own."""

    def __call__(
        self,
        width_or_shape: int | Sequence[int] | torch.Size,
        *,
        seed: Seed = None,
        offset: int | None = None,
    ) -> torch.Tensor: ...

    def sample(
        self,
        width_or_shape: int | Sequence[int] | torch.Size,
        *,
        seed: Seed = None,
        offset: int | None = None,
    ) -> SampledMask: ...


def seed_from_name(name: str) -> tuple[int, ...]:
    """fastMRI's per-file seed: ``tuple(map(ord, name))`` (same mask for every slice of a file)."""
    return tuple(map(ord, name))


def _num_columns(width_or_shape: int | Sequence[int] | torch.Size) -> int:
    if isinstance(width_or_shape, int | np.integer):
        width = int(width_or_shape)
    else:
        shape = tuple(int(s) for s in width_or_shape)
        if not shape:
            raise InputError(
                "an empty shape was given; pass the number of phase-encode columns W or a k-space shape (..., W)."
            )
        width = shape[-1]
    if width < 1:
        raise InputError(f"the number of phase-encode columns must be at least 1, got {width}.")
    return width


@contextlib.contextmanager
def _temp_seed(rng: np.random.RandomState, seed: Seed) -> Iterator[None]:
    """fastMRI's ``temp_seed``: reseed ``rng`` for the block and restore its state afterwards."""
    if seed is None:
        yield
        return
    state = rng.get_state()
    rng.seed(seed)  # type: ignore[arg-type]  # RandomState.seed accepts a tuple of ints (an array_like).
    try:
        yield
    finally:
        rng.set_state(state)


def _center_mask(num_cols: int, num_low_frequencies: int) -> np.ndarray:
    """fastMRI's centre block: ``num_low_frequencies`` columns starting at ``(W - n + 1) // 2``."""
    mask = np.zeros(num_cols, dtype=bool)
    pad = (num_cols - num_low_frequencies + 1) // 2
    mask[pad : pad + num_low_frequencies] = True
    return mask


class _CallSamples:
    """``mask_func(W, seed=..., offset=...)`` is ``mask_func.sample(...).mask``."""

    def sample(
        self,
        width_or_shape: int | Sequence[int] | torch.Size,
        *,
        seed: Seed = None,
        offset: int | None = None,
    ) -> SampledMask:
        raise NotImplementedError

    def __call__(
        self,
        width_or_shape: int | Sequence[int] | torch.Size,
        *,
        seed: Seed = None,
        offset: int | None = None,
    ) -> torch.Tensor:
        """The ``(W,)`` bool mask; see :meth:`sample` for the arguments."""
        return self.sample(width_or_shape, seed=seed, offset=offset).mask


class MaskFunc(_CallSamples, abc.ABC):
    """Base of the fastMRI-compatible mask functions (``fastmri.data.subsample.MaskFunc``).

    Args:
        center_fractions: fraction of columns kept in the fully sampled centre, one per entry of
            ``accelerations``; one (fraction, acceleration) pair is drawn uniformly per call.
        accelerations: undersampling factors, same length as ``center_fractions``.
        allow_any_combination: draw the fraction and the acceleration independently (fastMRI's flag).
        seed: seed of the function's own ``numpy.random.RandomState``.
    """

    def __init__(
        self,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        allow_any_combination: bool = False,
        seed: int | None = None,
    ) -> None:
        center_fractions = list(center_fractions)
        accelerations = list(accelerations)
        if not center_fractions or not accelerations:
            raise InputError(
                "center_fractions and accelerations must each hold at least one value, e.g. [0.08] and [4]."
            )
        if len(center_fractions) != len(accelerations) and not allow_any_combination:
            raise InputError(
                f"got {len(center_fractions)} center_fractions {center_fractions} and {len(accelerations)} accelerations "
                f"{accelerations}; they pair up one to one unless allow_any_combination=True."
            )
        for fraction in center_fractions:
            if not 0.0 <= float(fraction) < 1.0:
                raise InputError(
                    f"center fraction {fraction!r} is outside [0, 1); e.g. 0.08 keeps 8% of the columns."
                )
        for acceleration in accelerations:
            if not float(acceleration) >= 1.0:
                raise InputError(
                    f"acceleration {acceleration!r} must be >= 1 (e.g. 4 keeps about a quarter of the columns)."
                )
        self.center_fractions = center_fractions
        self.accelerations = accelerations
        self.allow_any_combination = allow_any_combination
        self.rng = np.random.RandomState(seed)

    def sample(
        self,
        width_or_shape: int | Sequence[int] | torch.Size,
        *,
        seed: Seed = None,
        offset: int | None = None,
    ) -> SampledMask:
        """Draw one mask.

        Args:
            width_or_shape: number of phase-encode columns ``W``, or a shape whose last entry is ``W``.
            seed: reseed for this call only (fastMRI passes ``tuple(map(ord, fname))``); None keeps
                advancing the function's own generator.
            offset: first column of the equispaced lines (equispaced masks only); None draws it.

        Returns:
            :class:`SampledMask` with the ``(W,)`` bool mask and the centre width.
        """
        num_cols = _num_columns(width_or_shape)
        with _temp_seed(self.rng, seed):
            center_fraction, acceleration = self._choose_acceleration()
            num_low_frequencies = int(round(num_cols * center_fraction))
            center = _center_mask(num_cols, num_low_frequencies)
            outer = self._acceleration_mask(num_cols, acceleration, offset, num_low_frequencies)
        mask = torch.from_numpy(center | outer)
        return SampledMask(mask, num_low_frequencies, float(acceleration), float(center_fraction))

    def _choose_acceleration(self) -> tuple[float, float]:
        # Same RandomState calls, in the same order, as fastMRI's choose_acceleration.
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        choice = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[choice], self.accelerations[choice]

    @abc.abstractmethod
    def _acceleration_mask(
        self, num_cols: int, acceleration: float, offset: int | None, num_low_frequencies: int
    ) -> np.ndarray:
        """The ``(W,)`` bool mask of the columns sampled outside the centre."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(center_fractions={self.center_fractions}, accelerations={self.accelerations})"


class RandomMaskFunc(MaskFunc):
    """fastMRI's ``RandomMaskFunc``: the centre plus each other column with probability
    ``(W / R - n_low) / (W - n_low)``, so the expected number of sampled columns is ``W / R``.
    """

    def _acceleration_mask(
        self, num_cols: int, acceleration: float, offset: int | None, num_low_frequencies: int
    ) -> np.ndarray:
        if num_low_frequencies >= num_cols:
            # fastMRI divides by zero here; the centre already covers every column.
            return np.zeros(num_cols, dtype=bool)
        prob = (num_cols / acceleration - num_low_frequencies) / (num_cols - num_low_frequencies)
        return np.asarray(self.rng.uniform(size=num_cols) < prob)


class EquiSpacedMaskFunc(MaskFunc):
    """fastMRI's ``EquiSpacedMaskFunc``: the centre plus every R-th column from ``offset``
    (drawn in ``[0, R)`` when not given); the true acceleration is below R because of the centre.
    """

    def _acceleration_mask(
        self, num_cols: int, acceleration: float, offset: int | None, num_low_frequencies: int
    ) -> np.ndarray:
        step = int(acceleration)
        if step != acceleration:
            raise InputError(
                f"EquiSpacedMaskFunc needs an integer acceleration, got {acceleration!r}; use EquispacedMaskFractionFunc."
            )
        if offset is None:
            offset = int(self.rng.randint(0, high=round(acceleration)))
        mask = np.zeros(num_cols, dtype=bool)
        mask[offset::step] = True
        return mask


class EquispacedMaskFractionFunc(MaskFunc):
    """fastMRI's ``EquispacedMaskFractionFunc``: the centre plus columns spaced by the adjusted
    rate ``R (n_low - W) / (n_low R - W)``, so the total number of sampled columns is about ``W / R``.

    Like fastMRI's (issue #54 there) the outer lines are rounded positions of a fractional grid and
    may not be exactly equispaced. Raises :class:`InputError` when the centre alone already holds
    ``W / R`` columns or more (fastMRI fails with a numpy error there).
    """

    def _acceleration_mask(
        self, num_cols: int, acceleration: float, offset: int | None, num_low_frequencies: int
    ) -> np.ndarray:
        denominator = num_low_frequencies * acceleration - num_cols
        adjusted = (
            (acceleration * (num_low_frequencies - num_cols)) / denominator if denominator != 0 else math.inf
        )
        if not adjusted > 0 or not math.isfinite(adjusted) or round(adjusted) < 1:
            raise InputError(
                f"acceleration {acceleration} with {num_low_frequencies} centre columns out of W={num_cols}: the centre "
                f"alone holds W/R = {num_cols / acceleration:.1f} columns or more, so no outer lines fit. "
                "Lower the center fraction or the acceleration."
            )
        if offset is None:
            offset = int(self.rng.randint(0, high=round(adjusted)))
        mask = np.zeros(num_cols, dtype=bool)
        # fastMRI: np.arange(offset, num_cols - 1, adjusted) rounded to the nearest column.
        positions = np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.uint64)
        mask[positions] = True
        return mask


class CMRxUniformMask(_CallSamples):
    """CMRxRecon's uniform mask: every R-th phase-encode column plus ``acs_lines`` central columns.

    Follows the challenge's MATLAB generator (``UniformSampling.m`` / ``mySubsampling.m``):
    ``mask(:, 1:R:end) = 1`` (columns 0, R, 2R, ... counted from ``offset``) and the ACS block
    placed by ``zpad``, starting at column ``W // 2 - acs_lines // 2``. For even ``W`` that is
    the same block as fastMRI's centre; for odd ``W`` with even ``acs_lines`` it is one column to
    the left of fastMRI's. CMRxRecon 2023 uses 24 ACS lines (x4, x8, x10); 2024 uses 16.
    The mask is deterministic: ``seed`` is accepted for the common signature and ignored.
    """

    def __init__(self, acceleration: int, acs_lines: int = 24, offset: int = 0) -> None:
        if int(acceleration) != acceleration or acceleration < 1:
            raise InputError(
                f"acceleration must be a positive integer (4, 8 or 10 in CMRxRecon), got {acceleration!r}."
            )
        if acs_lines < 0:
            raise InputError(f"acs_lines must be >= 0, got {acs_lines}.")
        if not 0 <= offset < acceleration:
            raise InputError(f"offset must be in [0, acceleration={acceleration}), got {offset}.")
        self.acceleration = int(acceleration)
        self.acs_lines = int(acs_lines)
        self.offset = int(offset)

    def sample(
        self,
        width_or_shape: int | Sequence[int] | torch.Size,
        *,
        seed: Seed = None,
        offset: int | None = None,
    ) -> SampledMask:
        """The mask for ``W`` columns (``offset`` overrides the constructor's; ``seed`` is ignored)."""
        num_cols = _num_columns(width_or_shape)
        if self.acs_lines > num_cols:
            raise InputError(f"{self.acs_lines} ACS lines do not fit in W={num_cols} phase-encode columns.")
        start_offset = self.offset if offset is None else int(offset)
        mask = np.zeros(num_cols, dtype=bool)
        mask[start_offset :: self.acceleration] = True
        start = num_cols // 2 - self.acs_lines // 2
        mask[start : start + self.acs_lines] = True
        return SampledMask(
            torch.from_numpy(mask), self.acs_lines, float(self.acceleration), self.acs_lines / num_cols
        )

    def __repr__(self) -> str:
        return f"CMRxUniformMask(acceleration={self.acceleration}, acs_lines={self.acs_lines}, offset={self.offset})"


AnyMaskFunc = MaskSampler
"""Alias of :class:`MaskSampler` (the name other modules import)."""

_MASK_TYPES: dict[str, type[MaskFunc]] = {
    "random": RandomMaskFunc,
    "equispaced": EquiSpacedMaskFunc,
    "equispaced_fraction": EquispacedMaskFractionFunc,
}


def create_mask_for_mask_type(
    mask_type: str, center_fractions: Sequence[float], accelerations: Sequence[float], seed: int | None = None
) -> MaskSampler:
    """fastMRI's ``create_mask_for_mask_type`` (``random``, ``equispaced``, ``equispaced_fraction``)
    plus ``"cmrx_uniform"``: :class:`CMRxUniformMask` with ``accelerations[0]`` and 24 ACS lines
    (``center_fractions`` and ``seed`` are not used; build the class directly for other ACS widths).
    """
    if mask_type == "cmrx_uniform":
        return CMRxUniformMask(int(accelerations[0]))
    if mask_type not in _MASK_TYPES:
        raise UnknownNameError(
            f"unknown mask type {mask_type!r}. {close_matches(mask_type, [*_MASK_TYPES, 'cmrx_uniform'])}"
        )
    return _MASK_TYPES[mask_type](center_fractions, accelerations, seed=seed)
