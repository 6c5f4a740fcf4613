"""A torch ``Dataset`` of 2-D slices from a folder of fastMRI ``.h5`` and CMRxRecon ``.mat`` files.

Each item is one slice (fastMRI) or one (frame, slice) pair (CMRxRecon), undersampled by a mask
function. Files are opened only inside ``__getitem__``, each time with a context manager, so no
HDF5 handle outlives a call and the dataset pickles cleanly into ``DataLoader`` workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from fastrecon.data.cmrxrecon import KSPACE_KEYS, inspect_cmrxrecon, read_cmrxrecon
from fastrecon.data.fastmri import inspect_fastmri, read_fastmri
from fastrecon.errors import DataFormatError, InputError
from fastrecon.physics.acs import acs_bounds, infer_mask, mask_columns
from fastrecon.physics.coils import rss
from fastrecon.physics.fft import ifft2c
from fastrecon.physics.masks import MaskSampler, seed_from_name

SUFFIXES = (".h5", ".mat")


class SliceSample(NamedTuple):
    """One training/evaluation item (a NamedTuple, so ``DataLoader``'s default collate batches it).

    Attributes:
        masked_kspace: ``(C, H, W)`` complex64, zero outside the mask.
        mask: ``(W,)`` bool, the sampled phase-encode columns.
        target: ``(H, W)`` float32 reference image; all zeros when ``has_target`` is False.
        fname: the file's path relative to the dataset root (POSIX form); also the mask seed.
        slice_index: the item's index within its file (``n = t * Z + z`` for CMRxRecon).
        max_value: ``attrs['max']`` (the volume maximum) when the target is the file's own
            ``reconstruction_rss``; otherwise the maximum of this slice's target.
        num_low_frequencies: width of the fully sampled centre (from the mask function, or the
            ACS block found in a stored mask).
        has_target: False for already-undersampled files (fastMRI test files, CMRxRecon ``kus`` /
            ``kspace_subXX``), whose fully sampled reference is unknown.
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    fname: str
    slice_index: int
    max_value: float
    num_low_frequencies: int
    has_target: bool


class _Entry(NamedTuple):
    path: Path
    name: str
    kind: str  # "fastmri" | "cmrx"
    num_items: int


def _is_mask_file(path: Path) -> bool:
    stem = path.stem.lower()
    return path.suffix == ".mat" and ("_mask" in stem or stem.startswith("mask"))


class SliceDataset(Dataset[SliceSample]):
    """Slices of every fastMRI ``.h5`` and CMRxRecon ``.mat`` file under ``root``.

    Args:
        root: a folder (searched recursively, files sorted by path) or a list of files.
        mask_func: draws the ``(W,)`` mask for fully sampled files; seeded per file with
            ``tuple(map(ord, fname))`` as fastMRI does (``fname`` is the path relative to ``root``,
            i.e. the bare file name for fastMRI's flat folders), so every slice of a file shares one
            mask and runs are reproducible. Already-undersampled files keep their own sampling
            whatever ``mask_func`` is: the stored ``mask`` of fastMRI test files, the zero pattern of
            undersampled CMRxRecon k-space. None with fully sampled data samples every column.
        cmrx_key: the CMRxRecon variable to read (default: the first of ``kspace_full``, ``kspace``,
            ``kus``, ``kspace_subXX`` present in each file).
        use_seed: seed the mask per file (True, fastMRI's default) or let ``mask_func`` advance its
            own generator (a new mask on every access).

    Targets: the file's ``reconstruction_rss`` when its ``(H, W)`` equals k-space's; otherwise
    (no target stored, or fastMRI's cropped 320x320 targets next to larger k-space) the RSS of the
    fully sampled coil images ``rss(ifft2c(kspace))``, computed before masking. fastMRI's
    ``padding`` (non-acquired edge columns, from the header) is removed from the mask as fastMRI does.
    ``*_mask.mat`` files in the folder are skipped (read them with ``read_cmrxrecon_mask``).
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        mask_func: MaskSampler | None = None,
        *,
        cmrx_key: str | None = None,
        use_seed: bool = True,
    ) -> None:
        if cmrx_key is not None and cmrx_key not in KSPACE_KEYS:
            raise InputError(
                f"cmrx_key {cmrx_key!r} is not a CMRxRecon k-space variable; choose one of {list(KSPACE_KEYS)}."
            )
        if isinstance(root, str | Path):
            base = Path(root).resolve()
            if not base.is_dir():
                raise FileNotFoundError(f"dataset folder not found: {root}")
            files = sorted(
                p for p in base.rglob("*") if p.suffix in SUFFIXES and p.is_file() and not _is_mask_file(p)
            )
        else:
            files = [Path(p).resolve() for p in root]
            missing = [str(p) for p in files if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"dataset files not found: {missing}")
            base = Path(*_common_parts(files)) if files else Path.cwd()
        if not files:
            raise InputError(f"no .h5 or .mat files found in {root}.")
        self.root = base
        self.mask_func = mask_func
        self.cmrx_key = cmrx_key
        self.use_seed = use_seed
        self.entries: list[_Entry] = []
        for path in files:
            name = path.relative_to(base).as_posix()
            if path.suffix == ".h5":
                count = inspect_fastmri(path).num_slices
                self.entries.append(_Entry(path, name, "fastmri", count))
            else:
                count = inspect_cmrxrecon(path, cmrx_key).num_items
                self.entries.append(_Entry(path, name, "cmrx", count))
        self._offsets = np.cumsum([0] + [entry.num_items for entry in self.entries])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __iter__(self) -> Iterator[SliceSample]:
        for index in range(len(self)):
            yield self[index]

    def _resolve(self, index: int) -> tuple[_Entry, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} slices.")
        index %= len(self)
        file_number = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.entries[file_number], index - int(self._offsets[file_number])

    def locate(self, index: int) -> tuple[Path, int]:
        """``(file, index within the file)`` of dataset item ``index``."""
        entry, local = self._resolve(index)
        return entry.path, local

    def __getitem__(self, index: int) -> SliceSample:
        entry, local = self._resolve(index)

        stored_mask: torch.Tensor | None = None
        padding: tuple[int, int] | None = None
        file_target: torch.Tensor | None = None
        file_max: float | None = None
        if entry.kind == "fastmri":
            volume = read_fastmri(entry.path, index=local)
            kspace = torch.from_numpy(volume.kspace[0])
            undersampled = volume.mask is not None
            if volume.mask is not None:
                stored_mask = torch.from_numpy(volume.mask)
            padding = volume.padding
            if volume.target is not None and tuple(volume.target.shape[-2:]) == tuple(kspace.shape[-2:]):
                file_target = torch.from_numpy(volume.target[0])
                max_attr = volume.attrs.get("max")
                file_max = float(max_attr) if isinstance(max_attr, int | float) else None
        else:
            cmrx = read_cmrxrecon(entry.path, self.cmrx_key, index=local)
            kspace = torch.from_numpy(cmrx.kspace[0])
            undersampled = cmrx.undersampled
            if undersampled:
                stored_mask = mask_columns(infer_mask(kspace.unsqueeze(0)))
        width = kspace.shape[-1]

        has_target = not undersampled or file_target is not None
        if file_target is not None:
            target = file_target.to(torch.float32)
        elif not undersampled:
            target = rss(ifft2c(kspace), dim=0).to(torch.float32)
        else:
            target = torch.zeros(kspace.shape[-2:], dtype=torch.float32)

        if self.mask_func is not None and not undersampled:
            seed = seed_from_name(entry.name) if self.use_seed else None
            drawn = self.mask_func.sample(width, seed=seed)
            mask, num_low = drawn.mask, drawn.num_low_frequencies
        elif stored_mask is not None:
            mask = stored_mask
            num_low = _acs_width(mask)
        else:
            mask = torch.ones(width, dtype=torch.bool)
            num_low = width
        if mask.shape[0] != width:
            raise DataFormatError(
                f"{entry.path}: mask has {mask.shape[0]} columns but k-space has W={width}."
            )
        if padding is not None:
            mask = mask.clone()
            left, right = max(padding[0], 0), min(padding[1], width)
            mask[:left] = False
            mask[right:] = False

        zero = torch.zeros((), dtype=kspace.dtype)
        masked = torch.where(mask.view(1, 1, width), kspace, zero)
        max_value = file_max if file_max is not None else float(target.max())
        return SliceSample(
            masked_kspace=masked,
            mask=mask,
            target=target,
            fname=entry.name,
            slice_index=local,
            max_value=max_value,
            num_low_frequencies=int(num_low),
            has_target=has_target,
        )


def _acs_width(mask: torch.Tensor) -> int:
    start, stop = acs_bounds(mask, min_lines=0)
    return stop - start


def _common_parts(files: Sequence[Path]) -> tuple[str, ...]:
    parents = [p.resolve().parent.parts for p in files]
    common: list[str] = []
    for parts in zip(*parents, strict=False):
        if all(part == parts[0] for part in parts):
            common.append(parts[0])
        else:
            break
    return tuple(common)
