"""CMRxRecon ``.mat`` files (MATLAB v7.3, i.e. HDF5) read with h5py.

Variables (challenge documentation):

* 2023: ``kspace_full`` and ``kspace_sub04`` / ``kspace_sub08`` / ``kspace_sub10`` (single-coil files:
  ``kspace_single_full``, ``kspace_single_subXX``); masks ``mask04`` / ``mask08`` / ``mask10`` in a
  separate ``<name>_mask.mat``.
* 2024: ``kspace_full`` (training) and ``kus`` (undersampled); masks ``mask`` in ``<name>_mask_<Type><R>.mat``.
* 2025: ``kspace``; masks ``mask``.

MATLAB stores k-space as ``(kx, ky, kc, kz, t)``; HDF5 keeps MATLAB's column-major order, so h5py
sees the axes reversed, ``(t, kz, kc, ky, kx)``, with a compound dtype of fields ``real`` and
``imag``. Trailing singleton axes are dropped by MATLAB: a file without ``t`` is 4-D
``(kx, ky, kc, kz)``, and so on.

The reader returns fastrecon's canonical layout ``(N, C, H, W)`` = ``(t*kz, kc, kx, ky)``: H is the
readout kx and W the phase encode ky (the masked axis). N runs frame-major, ``n = t * Z + z``;
:meth:`CMRxVolume.frame_slice` and the ``frame_index`` / ``slice_index`` arrays map back.
Arrays are numpy (complex64); single-coil files get a coil axis of length 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fastrecon.data._h5 import open_h5, read_dataset, to_complex64
from fastrecon.errors import DataFormatError, InputError

FULL_KEYS = ("kspace_full", "kspace", "kspace_single_full")
"""Fully sampled k-space variables, in the order :func:`read_cmrxrecon` looks for them."""

UNDERSAMPLED_KEYS = (
    "kus",
    "kspace_sub04",
    "kspace_sub08",
    "kspace_sub10",
    "kspace_single_sub04",
    "kspace_single_sub08",
    "kspace_single_sub10",
)
KSPACE_KEYS = FULL_KEYS + UNDERSAMPLED_KEYS
MASK_KEYS = ("mask", "mask04", "mask08", "mask10")

_WHAT = "CMRxRecon .mat (v7.3)"
_SUB_RE = re.compile(r"sub(\d+)$")
_NAME_ACCEL_RE = re.compile(r"(?:Uniform|AccFactor|ktUniform|ktGaussian|ktRadial)(\d+)", re.IGNORECASE)


@dataclass
class CMRxInfo:
    """A CMRxRecon file's layout without its data (see :func:`inspect_cmrxrecon`).

    ``matlab_shape`` is MATLAB's ``(kx, ky, kc, kz, t)`` order (as many axes as the file has).
    """

    path: Path
    key: str
    keys: tuple[str, ...]
    matlab_shape: tuple[int, ...]
    num_frames: int
    num_slices: int
    num_coils: int
    height: int
    width: int
    single_coil: bool

    @property
    def num_items(self) -> int:
        """N = frames x slices, the length of the canonical first axis."""
        return self.num_frames * self.num_slices


@dataclass
class CMRxVolume:
    """CMRxRecon k-space in canonical layout.

    Attributes:
        kspace: ``(N, C, H, W)`` complex64 numpy array, ``N = T * Z`` frame-major, ``H = kx``, ``W = ky``.
        key: the variable read (``kspace_full``, ``kus``, ``kspace_sub04``, ...).
        num_frames: T (1 when the file has no time axis).
        num_slices: Z.
        frame_index: ``(N,)`` int64, the frame t of each item n.
        slice_index: ``(N,)`` int64, the slice z of each item n.
        path: the file.
        single_coil: True for ``kspace_single_*`` variables (C = 1 added).
        undersampled: True unless ``key`` is one of :data:`FULL_KEYS`.
        acceleration: R from the key (``kspace_sub08`` -> 8) or the file name (``..._Uniform8.mat``), else None.
    """

    kspace: np.ndarray
    key: str
    num_frames: int
    num_slices: int
    frame_index: np.ndarray
    slice_index: np.ndarray
    path: Path
    single_coil: bool
    undersampled: bool
    acceleration: int | None

    def frame_slice(self, n: int) -> tuple[int, int]:
        """``(t, z)`` of item ``n`` of the first axis."""
        return int(self.frame_index[n]), int(self.slice_index[n])

    def index_of(self, frame: int, slice_: int) -> int:
        """Item ``n`` holding frame ``t`` of slice ``z`` (for a volume read whole)."""
        if not (0 <= frame < self.num_frames and 0 <= slice_ < self.num_slices):
            raise InputError(
                f"(t, z) = ({frame}, {slice_}) is outside T={self.num_frames}, Z={self.num_slices}."
            )
        return frame * self.num_slices + slice_


def _is_single(key: str) -> bool:
    return key.startswith("kspace_single")


def _acceleration(key: str, path: Path) -> int | None:
    match = _SUB_RE.search(key)
    if match:
        return int(match.group(1))
    match = _NAME_ACCEL_RE.search(path.stem)
    return int(match.group(1)) if match else None


def _choose_key(
    handle: h5py.File, path: Path, key: str | None, candidates: tuple[str, ...], what: str
) -> str:
    found = tuple(sorted(k for k in handle if not k.startswith("#")))  # '#refs#' holds MATLAB cell data
    if key is not None:
        if key not in handle:
            raise DataFormatError(
                f"{path} has no variable {key!r}; variables found: {list(found)}; expected {what} such as {list(candidates)}."
            )
        return key
    for candidate in candidates:
        if candidate in handle:
            return candidate
    raise DataFormatError(
        f"{path} holds no {what}: variables found: {list(found)}; expected one of {list(candidates)} "
        "(CMRxRecon 2023: kspace_full / kspace_subXX, 2024: kspace_full / kus, 2025: kspace)."
    )


def _layout(shape: tuple[int, ...], single: bool, path: Path, key: str) -> tuple[int, int, int, int, int]:
    """``(T, Z, C, ky, kx)`` from the h5py shape (MATLAB axes reversed)."""
    image_axes = 2 if single else 3
    if not image_axes <= len(shape) <= image_axes + 2:
        expected = "(kx, ky[, kz[, t]])" if single else "(kx, ky, kc[, kz[, t]])"
        raise DataFormatError(f"{path}: {key!r} has MATLAB shape {shape[::-1]}; expected {expected}.")
    lead = shape[: len(shape) - image_axes]
    frames, slices = (1, 1) if not lead else ((1, lead[0]) if len(lead) == 1 else (lead[0], lead[1]))
    if single:
        coils, ky, kx = 1, shape[-2], shape[-1]
    else:
        coils, ky, kx = shape[-3], shape[-2], shape[-1]
    return frames, slices, coils, ky, kx


def _info(handle: h5py.File, path: Path, key: str | None) -> CMRxInfo:
    chosen = _choose_key(handle, path, key, KSPACE_KEYS, "k-space variable")
    dataset = handle[chosen]
    if not isinstance(dataset, h5py.Dataset):
        raise DataFormatError(f"{path}: {chosen!r} is a MATLAB struct or group, not a k-space array.")
    shape = tuple(int(s) for s in dataset.shape)
    single = _is_single(chosen)
    frames, slices, coils, ky, kx = _layout(shape, single, path, chosen)
    return CMRxInfo(
        path=path,
        key=chosen,
        keys=tuple(sorted(k for k in handle if not k.startswith("#"))),
        matlab_shape=shape[::-1],
        num_frames=frames,
        num_slices=slices,
        num_coils=coils,
        height=kx,
        width=ky,
        single_coil=single,
    )


def inspect_cmrxrecon(path: str | Path, key: str | None = None) -> CMRxInfo:
    """Layout of the k-space variable ``key`` (default: the first of :data:`KSPACE_KEYS` present)."""
    path = Path(path)
    with open_h5(path, _WHAT) as handle:
        return _info(handle, path, key)


def read_cmrxrecon(path: str | Path, key: str | None = None, *, index: int | None = None) -> CMRxVolume:
    """Read CMRxRecon k-space into ``(N, C, H, W)`` complex64.

    Args:
        path: a MATLAB v7.3 ``.mat`` file.
        key: the variable; default the first present of ``kspace_full``, ``kspace``,
            ``kspace_single_full``, ``kus``, ``kspace_sub04``, ``kspace_sub08``, ``kspace_sub10``, ...
        index: read only item ``n = t * Z + z`` (``kspace`` is then ``(1, C, H, W)``).

    Raises:
        DataFormatError: a MATLAB v5/v7 file (with how to convert it), a truncated or corrupt file,
            or no k-space variable (the message lists the variables found and expected).
        InputError: ``index`` out of range.
    """
    path = Path(path)
    with open_h5(path, _WHAT) as handle:
        info = _info(handle, path, key)
        frames, slices = info.num_frames, info.num_slices
        lead = len(info.matlab_shape) - (2 if info.single_coil else 3)
        if index is None:
            raw = read_dataset(handle, info.key)
            items = np.arange(frames * slices)
        else:
            total = frames * slices
            if not -total <= index < total:
                raise InputError(
                    f"item {index} is out of range for {path} with N = T*Z = {frames}*{slices} = {total} items."
                )
            index = index % total
            frame, slice_ = divmod(index, slices)
            selection: tuple[Any, ...] = (frame, slice_)[2 - lead :] if lead else ()
            raw = read_dataset(handle, info.key, selection)
            items = np.array([index])
    kspace = to_complex64(raw, f"{path}:{info.key}")
    per_item = (1, info.width, info.height) if info.single_coil else (info.num_coils, info.width, info.height)
    kspace = kspace.reshape((len(items), *per_item))  # (N, C, ky, kx)
    kspace = np.ascontiguousarray(kspace.swapaxes(-1, -2))  # (N, C, kx, ky) = (N, C, H, W)
    return CMRxVolume(
        kspace=kspace,
        key=info.key,
        num_frames=frames,
        num_slices=slices,
        frame_index=(items // slices).astype(np.int64),
        slice_index=(items % slices).astype(np.int64),
        path=path,
        single_coil=info.single_coil,
        undersampled=info.key not in FULL_KEYS,
        acceleration=_acceleration(info.key, path),
    )


def read_cmrxrecon_mask(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read an undersampling mask file (``*_mask.mat``) into canonical orientation.

    MATLAB stores masks as ``(kx, ky)`` (2023 ``mask04/08/10``, 2024 ``mask``) or ``(kx, ky, t)``
    (k-t masks); h5py sees them reversed. Returned as bool ``(H, W)`` = ``(kx, ky)`` or ``(t, H, W)``.
    ``fastrecon.physics.mask_columns`` reduces a Cartesian mask to its ``(W,)`` columns.

    Args:
        key: ``mask``, ``mask04``, ``mask08`` or ``mask10``; default the only mask variable in the
            file (an error lists them when there are several).
    """
    path = Path(path)
    with open_h5(path, _WHAT) as handle:
        present = [k for k in MASK_KEYS if k in handle]
        if key is None and len(present) > 1:
            raise InputError(f"{path} holds several masks {present}; pass key= one of them.")
        chosen = _choose_key(handle, path, key, MASK_KEYS, "mask variable")
        raw = read_dataset(handle, chosen)
    if raw.dtype.names is not None:
        raise DataFormatError(
            f"{path}: mask {chosen!r} is complex ({raw.dtype}); expected a real or logical array."
        )
    if raw.ndim not in (2, 3):
        raise DataFormatError(
            f"{path}: mask {chosen!r} has MATLAB shape {raw.shape[::-1]}; expected (kx, ky) or (kx, ky, t)."
        )
    return np.ascontiguousarray(raw.swapaxes(-1, -2) != 0)
