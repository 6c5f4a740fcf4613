"""Training data that needs no files: simulated multicoil slices drawn on the fly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from fastrecon.data.dataset import SliceSample
from fastrecon.data.simulate import (
    _multicoil,
    birdcage_maps,
    cardiac_phantom,
    gaussian_coil_maps,
    simulate_slice,
    smooth_phase,
)
from fastrecon.errors import InputError
from fastrecon.physics.coils import rss
from fastrecon.physics.fft import ifft2c
from fastrecon.physics.masks import AnyMaskFunc, EquispacedMaskFractionFunc, RandomMaskFunc


class SimulatedSliceDataset(Dataset[SliceSample]):
    """``length`` simulated cardiac-like slices; item ``i`` is seeded by ``seed + i`` (reproducible).

    Each item is a fresh phantom frame with smooth phase, ``num_coils`` birdcage coils and complex
    noise at ``snr_db``; the mask comes from ``mask_func`` seeded per item. Targets are the RSS of
    the fully sampled coil images, as in fastMRI.
    """

    def __init__(
        self,
        length: int,
        mask_func: AnyMaskFunc,
        *,
        size: tuple[int, int] = (128, 128),
        num_coils: int = 8,
        snr_db: float | None = 30.0,
        seed: int = 0,
    ) -> None:
        self.length = length
        self.mask_func = mask_func
        self.size = size
        self.num_coils = num_coils
        self.snr_db = snr_db
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> SliceSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} simulated slices")
        item_seed = self.seed + index
        sim = simulate_slice(self.size, self.num_coils, snr_db=self.snr_db, seed=item_seed)
        drawn = self.mask_func.sample(self.size[1], seed=item_seed)
        kspace = sim.kspace[0]
        masked = torch.where(drawn.mask, kspace, torch.zeros((), dtype=kspace.dtype))
        target = sim.target[0]
        return SliceSample(
            masked_kspace=masked,
            mask=drawn.mask,
            target=target,
            fname=f"simulated-{item_seed}",
            slice_index=0,
            max_value=float(target.max()),
            num_low_frequencies=drawn.num_low_frequencies,
            has_target=True,
        )


# The cardiac phantom seeds the demo shows (``fastrecon demo``'s default seed): never trained on.
HELD_OUT_CARDIAC_SEEDS = frozenset({1234})
# Training cardiac "subjects" are drawn from this range, far from the demo's seeds.
TRAIN_CARDIAC_SEEDS = (100_000, 2**31 - 1)

TRAIN_SOURCES = ("cardiac", "phantom", "natural", "mni-t1")


@dataclass(frozen=True)
class VariedSettings:
    """What :class:`VariedSliceDataset` draws from (ranges inclusive).

    Sources and their weights: cardiac phantom, random phantom, scikit-image photograph, MNI152 T1
    slice (:mod:`fastrecon.data.sources`). Per batch group: matrix ``(H, W)`` from ``sizes`` and the coil
    count; per slice: coil geometry (birdcage with random radius and rotation, or Gaussian surface
    coils), smooth phase, SNR, mask type (equispaced or random), acceleration and ACS width (capped at
    ``W // R - 2`` lines so outer lines remain).
    """

    source_weights: tuple[float, float, float, float] = (0.15, 0.25, 0.25, 0.35)
    sizes: tuple[int, ...] = (96, 112, 128)
    coils: tuple[int, int] = (4, 16)
    accelerations: tuple[int, ...] = (4, 5, 6, 7, 8, 8, 8, 9, 10, 10)
    acs_lines: tuple[int, int] = (8, 24)
    snr_db: tuple[float, float] = (20.0, 40.0)


def draw_source_image(source: str, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """One magnitude image ``(H, W)`` in [0, 1] of a training ``source`` (see :data:`TRAIN_SOURCES`)."""
    from fastrecon.data import sources

    if source == "cardiac":
        seed = int(rng.integers(*TRAIN_CARDIAC_SEEDS))
        frame = int(rng.integers(12))
        return cardiac_phantom(size, 12, seed=seed)[frame]
    if source == "phantom":
        return sources.random_phantom(size, rng)
    if source == "natural":
        return sources.natural_image(size, rng)
    if source == "mni-t1":
        return sources.mni_t1_slice(size, rng)
    raise InputError(f"unknown training source {source!r}; choose one of {', '.join(TRAIN_SOURCES)}.")


def random_coil_maps(num_coils: int, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """Birdcage (random radius 1.1-2.0, random rotation) or Gaussian surface coils, half each; RSS-normalised."""
    if rng.random() < 0.5:
        return birdcage_maps(
            num_coils, size, radius=float(rng.uniform(1.1, 2.0)), rotation=float(rng.uniform(0, 6.3))
        )
    return gaussian_coil_maps(num_coils, size, rng)


class VariedSliceDataset(Dataset[SliceSample]):
    """``length`` varied simulated slices for a model meant to generalise (the demo-x8 recipe).

    Item ``i`` is fully determined by ``(seed, i)``. Items ``group * g .. group * g + group - 1``
    share one matrix size and coil count, so a DataLoader with ``batch_size=group`` and no
    shuffling collates them (each item is a fresh random draw, so shuffling adds nothing).
    Held-out sources never appear: pydicom's MR image, nibabel's EPI volume and the demo's cardiac
    seeds (:data:`HELD_OUT_CARDIAC_SEEDS`).
    """

    def __init__(
        self, length: int, *, seed: int = 0, group: int = 4, settings: VariedSettings | None = None
    ) -> None:
        if length < 1 or group < 1:
            raise InputError(f"length and group must be >= 1, got length={length}, group={group}.")
        self.length = length
        self.seed = seed
        self.group = group
        self.settings = settings or VariedSettings()
        weights = np.asarray(self.settings.source_weights, dtype=np.float64)
        if weights.shape != (len(TRAIN_SOURCES),) or (weights < 0).any() or weights.sum() <= 0:
            raise InputError(
                f"source_weights must be {len(TRAIN_SOURCES)} non-negative numbers, got {weights}."
            )
        self.weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.length

    def geometry(self, index: int) -> tuple[tuple[int, int], int]:
        """``((H, W), num_coils)`` shared by the group of item ``index``."""
        rng = np.random.default_rng([self.seed, index // self.group, 0])
        height, width = (int(rng.choice(self.settings.sizes)) for _ in range(2))
        return (height, width), int(rng.integers(self.settings.coils[0], self.settings.coils[1] + 1))

    def __getitem__(self, index: int) -> SliceSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} simulated slices")
        s = self.settings
        size, num_coils = self.geometry(index)
        rng = np.random.default_rng([self.seed, index, 1])
        source = TRAIN_SOURCES[int(rng.choice(len(TRAIN_SOURCES), p=self.weights))]
        magnitude = draw_source_image(source, size, rng)
        phase = smooth_phase(
            size,
            seed=int(rng.integers(2**31)),
            max_phase=float(rng.uniform(0.0, np.pi)),
            order=int(rng.integers(1, 4)),
        )
        image = magnitude.to(torch.complex64) * torch.polar(torch.ones(size), phase)
        maps = random_coil_maps(num_coils, size, rng)
        snr = float(rng.uniform(*s.snr_db))
        kspace, _, _ = _multicoil(image[None], num_coils, snr, None, int(rng.integers(2**31)), maps)
        target = rss(ifft2c(kspace), dim=1)[0].to(torch.float32)
        accel = int(rng.choice(s.accelerations))
        acs = int(rng.integers(s.acs_lines[0], s.acs_lines[1] + 1))
        # The centre block must leave room for outer lines: at most W / R - 2 of the W / R sampled ones.
        acs = max(min(acs, size[1] // accel - 2), 2)
        mask_cls = EquispacedMaskFractionFunc if rng.random() < 0.6 else RandomMaskFunc
        drawn = mask_cls([acs / size[1]], [accel]).sample(size[1], seed=int(rng.integers(2**31)))
        masked = torch.where(drawn.mask, kspace[0], torch.zeros((), dtype=kspace.dtype))
        return SliceSample(
            masked_kspace=masked,
            mask=drawn.mask,
            target=target,
            fname=f"varied-{self.seed}-{index}-{source}",
            slice_index=0,
            max_value=float(target.max()),
            num_low_frequencies=drawn.num_low_frequencies,
            has_target=True,
        )
