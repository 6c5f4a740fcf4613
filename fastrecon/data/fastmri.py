"""fastMRI ``.h5`` volumes: read them, and write reconstructions (and whole volumes) in the same layout.

A fastMRI file holds ``kspace`` (slices, coils, H, W) complex64 (single-coil files: (slices, H, W)),
``reconstruction_rss`` (multicoil) or ``reconstruction_esc`` (single-coil) targets, an
``ismrmrd_header`` XML string with the encoded and reconstructed matrix sizes, test files a ``mask``
(W,), and attributes ``max``, ``norm``, ``acquisition`` (test files also ``acceleration`` and
``num_low_frequency``).

Arrays come back as **numpy** (a reader should not pick a device; ``torch.from_numpy`` shares the
memory). Single-coil k-space gets a coil axis of length 1, so every volume is ``(N, C, H, W)``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from fastrecon._files import atomic_write, check_output
from fastrecon.data._h5 import attr_value, open_h5, read_dataset, to_complex64
from fastrecon.errors import DataFormatError, InputError, InputTypeError

TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
_WHAT = "fastMRI .h5"


@dataclass
class FastMRIHeader:
    """What the ``ismrmrd_header`` XML says, in fastMRI's terms (each None when absent).

    ``encoded_size`` and ``recon_size`` are ``(x, y)`` = ``(H, W)`` matrix sizes; fastMRI crops
    reconstructions to ``recon_size``. ``padding`` is fastMRI's ``(padding_left, padding_right)``:
    the phase-encode columns ``[left, right)`` that were acquired, from ``encodingLimits``.
    """

    encoded_size: tuple[int, int] | None = None
    recon_size: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None


@dataclass
class FastMRIInfo:
    """A fastMRI file's layout without its data (see :func:`inspect_fastmri`)."""

    path: Path
    num_slices: int
    num_coils: int
    height: int
    width: int
    single_coil: bool
    has_mask: bool
    target_key: str | None
    target_shape: tuple[int, ...] | None
    attrs: dict[str, Any]
    header: FastMRIHeader


@dataclass
class FastMRIVolume:
    """One fastMRI volume (or one slice of it when read with ``index``).

    Attributes:
        kspace: ``(N, C, H, W)`` complex64 numpy array (C = 1 for single-coil files).
        mask: ``(W,)`` bool sampling mask stored in test/challenge files, else None.
        target: ``(N, h, w)`` float32 ``reconstruction_rss`` (or ``reconstruction_esc``), else None.
        target_key: the dataset the target came from.
        attrs: file attributes as plain Python values (``max``, ``norm``, ``acquisition``, ...).
        recon_size: ``(H, W)`` crop size from the header's ``reconSpace/matrixSize``, else None.
        encoded_size: ``(H, W)`` from ``encodedSpace/matrixSize``, else None.
        padding: acquired phase-encode columns ``[left, right)`` from ``encodingLimits``, else None.
        path: the file.
        single_coil: True when the file stored ``(slices, H, W)`` k-space.
        slices: the file's slice indices held in ``kspace`` (``range(num_slices)`` or one slice).
    """

    kspace: np.ndarray
    mask: np.ndarray | None
    target: np.ndarray | None
    target_key: str | None
    attrs: dict[str, Any]
    recon_size: tuple[int, int] | None
    encoded_size: tuple[int, int] | None
    padding: tuple[int, int] | None
    path: Path
    single_coil: bool = False
    slices: range = field(default_factory=lambda: range(0))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(node: ET.Element, names: list[str]) -> ET.Element | None:
    """Child path by local tag names (the ISMRMRD namespace is ignored)."""
    for name in names:
        nxt = next((child for child in node if _local(child.tag) == name), None)
        if nxt is None:
            return None
        node = nxt
    return node


def _find_int(node: ET.Element, names: list[str]) -> int | None:
    found = _find(node, names)
    if found is None or found.text is None:
        return None
    try:
        return int(float(found.text.strip()))
    except ValueError:
        return None


def parse_ismrmrd_header(xml: bytes | str) -> FastMRIHeader:
    """Sizes and padding from an ISMRMRD header, computed as fastMRI's ``SliceDataset`` does."""
    try:
        root = ET.fromstring(xml)  # noqa: S314 - a local data file's header, parsed by expat with its entity limits
    except ET.ParseError as exc:
        raise DataFormatError(f"ismrmrd_header is not valid XML: {exc}") from exc
    encoding = _find(root, ["encoding"])
    if encoding is None:
        return FastMRIHeader()

    def size(space: str) -> tuple[int, int] | None:
        x = _find_int(encoding, [space, "matrixSize", "x"])
        y = _find_int(encoding, [space, "matrixSize", "y"])
        return (x, y) if x is not None and y is not None else None

    encoded, recon = size("encodedSpace"), size("reconSpace")
    padding = None
    center = _find_int(encoding, ["encodingLimits", "kspace_encoding_step_1", "center"])
    maximum = _find_int(encoding, ["encodingLimits", "kspace_encoding_step_1", "maximum"])
    if encoded is not None and center is not None and maximum is not None:
        left = encoded[1] // 2 - center
        padding = (left, left + maximum + 1)
    return FastMRIHeader(encoded_size=encoded, recon_size=recon, padding=padding)


def _header(handle: h5py.File) -> FastMRIHeader:
    if "ismrmrd_header" not in handle:
        return FastMRIHeader()
    raw = read_dataset(handle, "ismrmrd_header")
    value = raw.item() if raw.ndim == 0 else raw.tobytes()
    try:
        return parse_ismrmrd_header(value)
    except DataFormatError as exc:
        raise DataFormatError(f"{handle.filename}: {exc}") from exc


def _info(handle: h5py.File, path: Path) -> FastMRIInfo:
    if "kspace" not in handle:
        raise DataFormatError(
            f"{path} has no 'kspace' dataset; keys found: {sorted(handle.keys())}; expected a fastMRI file with "
            f"'kspace' and optionally {', '.join(TARGET_KEYS)}, 'ismrmrd_header', 'mask'."
        )
    for key in ("kspace", *TARGET_KEYS, "mask", "ismrmrd_header"):
        if key in handle and not isinstance(handle[key], h5py.Dataset):
            raise DataFormatError(
                f"{path}: {key!r} is an HDF5 group, not a dataset; expected a fastMRI file whose {key!r} is an array."
            )
    shape = tuple(handle["kspace"].shape)
    if len(shape) == 3:
        num_slices, height, width = shape
        num_coils, single = 1, True
    elif len(shape) == 4:
        num_slices, num_coils, height, width = shape
        single = False
    else:
        raise DataFormatError(
            f"{path}: 'kspace' has shape {shape}; expected (slices, coils, H, W) or single-coil (slices, H, W)."
        )
    target_key = next((key for key in TARGET_KEYS if key in handle), None)
    return FastMRIInfo(
        path=path,
        num_slices=num_slices,
        num_coils=num_coils,
        height=height,
        width=width,
        single_coil=single,
        has_mask="mask" in handle,
        target_key=target_key,
        target_shape=tuple(handle[target_key].shape) if target_key else None,
        attrs={key: attr_value(value) for key, value in handle.attrs.items()},
        header=_header(handle),
    )


def inspect_fastmri(path: str | Path) -> FastMRIInfo:
    """Shapes, attributes and header of a fastMRI file, without reading its k-space."""
    path = Path(path)
    with open_h5(path, _WHAT) as handle:
        return _info(handle, path)


def read_fastmri(path: str | Path, *, index: int | None = None) -> FastMRIVolume:
    """Read a fastMRI ``.h5`` file.

    Args:
        path: the file.
        index: read only this slice (``kspace`` is then ``(1, C, H, W)``); None reads the volume.

    Returns:
        :class:`FastMRIVolume` with ``(N, C, H, W)`` complex64 k-space (numpy).

    Raises:
        DataFormatError: not HDF5, truncated, or no ``kspace`` dataset (the message lists the keys).
        InputError: ``index`` out of range.
    """
    path = Path(path)
    with open_h5(path, _WHAT) as handle:
        info = _info(handle, path)
        if index is None:
            selection: Any = ()
            slices = range(info.num_slices)
        else:
            if not -info.num_slices <= index < info.num_slices:
                raise InputError(
                    f"slice index {index} is out of range for {path} with {info.num_slices} slices."
                )
            index = index % info.num_slices
            selection = slice(index, index + 1)
            slices = range(index, index + 1)
        kspace = to_complex64(read_dataset(handle, "kspace", selection), f"{path}:kspace")
        if info.single_coil:
            kspace = kspace[:, None]
        mask = None
        if info.has_mask:
            mask = read_dataset(handle, "mask").reshape(-1) != 0
            if mask.shape[0] != info.width:
                raise DataFormatError(
                    f"{path}: 'mask' has {mask.shape[0]} entries but k-space has W={info.width} columns."
                )
        target = None
        if info.target_key is not None:
            target = read_dataset(handle, info.target_key, selection).astype(np.float32, copy=False)
    return FastMRIVolume(
        kspace=np.ascontiguousarray(kspace),
        mask=mask,
        target=target,
        target_key=info.target_key,
        attrs=info.attrs,
        recon_size=info.header.recon_size,
        encoded_size=info.header.encoded_size,
        padding=info.header.padding,
        path=path,
        single_coil=info.single_coil,
        slices=slices,
    )


def _as_numpy(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _write_attrs(handle: h5py.File, attrs: dict[str, Any] | None) -> None:
    for key, value in (attrs or {}).items():
        if value is None:
            continue
        handle.attrs[key] = value


def write_reconstruction(
    path: str | Path,
    reconstruction: np.ndarray | torch.Tensor,
    *,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a fastMRI-style reconstruction file: dataset ``reconstruction`` ``(N, H, W)`` float32.

    This is the layout fastMRI's ``save_reconstructions`` writes and its ``evaluate.py`` reads
    (one file per volume, named like the input file). ``attrs`` become HDF5 attributes. Parent
    folders are created. The file is written to a temporary file beside ``path`` and renamed onto it,
    so a failure never leaves half a file or loses an old one; an existing file is replaced only
    when ``overwrite`` is true (otherwise :class:`~fastrecon.errors.OutputExistsError`). Returns the path.
    """
    array = _as_numpy(reconstruction, "reconstruction")
    if np.iscomplexobj(array):
        raise InputTypeError("reconstruction is complex; write the magnitude (e.g. RSS), as fastMRI does.")
    if array.ndim != 3:
        raise InputError(f"reconstruction has shape {array.shape}; expected (N, H, W).")
    path = check_output(path, overwrite=overwrite)
    with atomic_write(path, overwrite=overwrite) as temp, h5py.File(temp, "w") as handle:
        handle.create_dataset("reconstruction", data=array.astype(np.float32, copy=False))
        _write_attrs(handle, attrs)
    return path


def ismrmrd_header_xml(
    encoded_size: tuple[int, int],
    recon_size: tuple[int, int],
    padding: tuple[int, int] | None = None,
) -> bytes:
    """An ISMRMRD header with the fields fastMRI reads (sizes and phase-encode limits), valid against
    the ISMRMRD schema (``ismrmrd.xsd.CreateFromDocument`` accepts it)."""
    from fastrecon.data.mrd_header import build_header, header_xml

    enc_x, enc_y = encoded_size
    left, right = padding if padding is not None else (0, enc_y)
    center = enc_y // 2 - left
    maximum = right - left - 1
    header = build_header(encoded_size=encoded_size, recon_size=recon_size, e1_limits=(0, maximum, center))
    return header_xml(header).encode("utf-8")


def write_fastmri(
    path: str | Path,
    kspace: np.ndarray | torch.Tensor,
    *,
    target: np.ndarray | torch.Tensor | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    attrs: dict[str, Any] | None = None,
    recon_size: tuple[int, int] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a volume in fastMRI's file layout (e.g. simulated data for :class:`~fastrecon.data.SliceDataset`).

    Written to a temporary file beside ``path`` and renamed onto it; an existing file is replaced only
    when ``overwrite`` is true (otherwise :class:`~fastrecon.errors.OutputExistsError`).

    Args:
        kspace: ``(N, C, H, W)`` complex k-space, stored as complex64 ``kspace``.
        target: ``(N, h, w)`` real image stored as ``reconstruction_rss``; its max and L2 norm
            become attrs ``max`` and ``norm``.
        mask: ``(W,)`` mask stored as ``mask`` (fastMRI test files carry one).
        attrs: extra attributes (``acquisition``, ``norm``, ...).
        recon_size: ``(H, W)`` for the header's ``reconSpace`` (default: the target's or k-space's size).
    """
    kspace_np = _as_numpy(kspace, "kspace")
    if kspace_np.ndim != 4 or not np.iscomplexobj(kspace_np):
        raise InputError(
            f"kspace has shape {kspace_np.shape} and dtype {kspace_np.dtype}; expected complex (N, C, H, W)."
        )
    _, _, height, width = kspace_np.shape
    merged: dict[str, Any] = {"acquisition": "SIMULATED"}
    target_np = None
    if target is not None:
        target_np = _as_numpy(target, "target").astype(np.float32, copy=False)
        merged["max"] = float(target_np.max())
        merged["norm"] = float(np.linalg.norm(target_np))
    merged.update(attrs or {})
    if recon_size is None:
        recon_size = (
            (int(target_np.shape[-2]), int(target_np.shape[-1])) if target_np is not None else (height, width)
        )
    path = check_output(path, overwrite=overwrite)
    with atomic_write(path, overwrite=overwrite) as temp, h5py.File(temp, "w") as handle:
        handle.create_dataset("kspace", data=kspace_np.astype(np.complex64, copy=False))
        if target_np is not None:
            handle.create_dataset("reconstruction_rss", data=target_np)
        if mask is not None:
            handle.create_dataset("mask", data=_as_numpy(mask, "mask").reshape(-1) != 0)
        handle.create_dataset("ismrmrd_header", data=ismrmrd_header_xml((height, width), recon_size))
        _write_attrs(handle, merged)
    return path
