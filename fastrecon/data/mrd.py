"""MRD (ISMRMRD) raw data: Cartesian k-space assembled from acquisitions, and MRD images out.

An MRD raw file (usually plain ``.h5``) holds a group (``dataset``) with an XML header (``xml``) and one
row per readout (``data``: acquisition header, trajectory, ``(channels, samples)`` complex samples).
The same objects travel over TCP in the MRD streaming protocol (see :mod:`fastrecon.serve`).

:class:`KSpaceAssembler` turns acquisitions, one at a time, into fastrecon's k-space slices
``(C, H, W)`` complex64 (H readout, W phase encode), following the header's encoding and the flags:

- noise scans, navigators, phase-correction, dummy and feedback readouts are skipped;
- ``ACQ_IS_PARALLEL_CALIBRATION`` lines go to a separate calibration array (not into the image data,
  not into the mask), unless also flagged ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``;
- ``ACQ_IS_REVERSE`` readouts are flipped;
- readout oversampling is removed when the header says the readout is oversampled: by the ratio of
  ``encodedSpace`` to ``reconSpace`` field of view x (as Gadgetron does), else where ``encodedSpace`` x is
  larger than ``reconSpace`` x (centre crop in image space along the readout, then back to k-space);
- ``kspace_encode_step_1`` is offset by the encoding limits' centre, so the k-space centre lands at
  column ``W // 2``.

Only one Cartesian 2-D encoding is accepted; non-Cartesian trajectories and 3-D encoding are refused
with :class:`~fastrecon.errors.DataFormatError`. Headers: :mod:`fastrecon.data.mrd_header`; images out:
:mod:`fastrecon.data.mrd_images`. The ``ismrmrd`` package is imported when first needed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fastrecon.data.mrd_header import (
    MAX_MATRIX,
    Encoding,
    _ismrmrd,
    build_header,
    encoding_of,
    header_xml,
    parse_header,
)
from fastrecon.errors import DataFormatError

MAX_COILS = 1024
# Pending (incomplete) slices an assembler may hold at once, in bytes of k-space.
DEFAULT_MAX_PENDING_BYTES = 4 * 2**30

SLICE_FIELDS = ("slice", "contrast", "phase", "repetition", "set", "average")


def _skipped_flags() -> tuple[int, ...]:
    m = _ismrmrd()
    return (
        m.ACQ_IS_NOISE_MEASUREMENT,
        m.ACQ_IS_NAVIGATION_DATA,
        m.ACQ_IS_PHASECORR_DATA,
        m.ACQ_IS_HPFEEDBACK_DATA,
        m.ACQ_IS_DUMMYSCAN_DATA,
        m.ACQ_IS_RTFEEDBACK_DATA,
        m.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
        m.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
        m.ACQ_IS_PHASE_STABILIZATION,
    )


@dataclass(frozen=True, order=True)
class SliceKey:
    """The indices that tell one 2-D image from another in an MRD stream."""

    slice: int = 0
    contrast: int = 0
    phase: int = 0
    repetition: int = 0
    set: int = 0
    average: int = 0

    @staticmethod
    def of(acquisition: Any) -> SliceKey:
        idx = acquisition.idx
        return SliceKey(*(int(getattr(idx, name)) for name in SLICE_FIELDS))


@dataclass
class MRDSlice:
    """One assembled 2-D slice.

    Attributes:
        kspace: ``(C, H, W)`` complex64, zero where no line was acquired.
        mask: ``(W,)`` bool, the phase-encode lines acquired for imaging.
        key: slice / contrast / phase / repetition / set / average.
        head: a copy of the acquisition header of the line nearest the k-space centre (position,
            read/phase/slice directions, table position, time stamps) for the image's geometry.
        calibration: ``(C, H, W)`` complex64 calibration-only lines, or None when there were none.
        calibration_mask: ``(W,)`` bool, the calibration-only lines, or None.
        completed_at: ``time.monotonic()`` when the slice's last acquisition arrived.
    """

    kspace: np.ndarray
    mask: np.ndarray
    key: SliceKey
    head: Any
    calibration: np.ndarray | None = None
    calibration_mask: np.ndarray | None = None
    completed_at: float = 0.0


@dataclass
class _Pending:
    kspace: np.ndarray
    mask: np.ndarray
    head: Any = None
    head_distance: int = -1
    calibration: np.ndarray | None = None
    calibration_mask: np.ndarray | None = None


def _fftc(x: np.ndarray, axis: int) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


def _ifftc(x: np.ndarray, axis: int) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


def crop_readout(lines: np.ndarray, size: int) -> np.ndarray:
    """Remove readout oversampling from k-space lines ``(..., X)``: centred inverse FFT along X, keep the
    central ``size`` samples of the image, FFT back. Returns ``(..., size)`` complex64."""
    full = lines.shape[-1]
    start = (full - size) // 2
    image = _ifftc(lines.astype(np.complex64, copy=False), axis=-1)[..., start : start + size]
    return _fftc(image, axis=-1).astype(np.complex64, copy=False)


def pad_readout(lines: np.ndarray, size: int) -> np.ndarray:
    """The inverse of :func:`crop_readout`: k-space lines ``(..., X)`` oversampled to ``size`` samples
    (zero-padded image along the readout). Used to write oversampled test data."""
    small = lines.shape[-1]
    start = (size - small) // 2
    image = _ifftc(lines.astype(np.complex64, copy=False), axis=-1)
    padded = np.zeros((*lines.shape[:-1], size), dtype=np.complex64)
    padded[..., start : start + small] = image
    return _fftc(padded, axis=-1).astype(np.complex64, copy=False)


class PendingBudget:
    """Bytes of incomplete slices shared by several assemblers (a server's clients): thread-safe.

    :meth:`take` refuses with :class:`DataFormatError` when ``limit`` would be passed; :meth:`give`
    returns bytes when slices complete or an assembler is closed.
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        with self._lock:
            if self.used + nbytes > self.limit:
                raise DataFormatError(
                    f"the server already holds {self.used / 2**20:.0f} MiB of incomplete slices for its clients "
                    f"(limit {self.limit / 2**20:.0f} MiB); try again when fewer scans are streaming."
                )
            self.used += nbytes

    def give(self, nbytes: int) -> None:
        with self._lock:
            self.used = max(0, self.used - nbytes)


class KSpaceAssembler:
    """Assembles acquisitions into k-space slices; one per file or per stream.

    ``add(acquisition)`` returns the slices that acquisition completed: on ``ACQ_LAST_IN_SLICE`` every
    pending image of that slice index (all its phases, contrasts, sets, averages), on
    ``ACQ_LAST_IN_MEASUREMENT`` every pending image; :meth:`flush` returns the rest when the data end.
    Memory is bounded: at most ``max_pending_bytes`` of incomplete slices are held.
    """

    def __init__(
        self,
        header: Any,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        budget: PendingBudget | None = None,
    ) -> None:
        self.header = parse_header(header)
        self.encoding = encoding_of(self.header)
        self.max_pending_bytes = int(max_pending_bytes)
        self.budget = budget  # shared with other assemblers; what this one holds is given back by close()
        self.coils: int | None = None
        self._pending: dict[SliceKey, _Pending] = {}
        self._flags = _skipped_flags()
        m = _ismrmrd()
        self._calibration = m.ACQ_IS_PARALLEL_CALIBRATION
        self._calibration_and_imaging = m.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
        self._reverse = m.ACQ_IS_REVERSE
        self._last_in_slice = m.ACQ_LAST_IN_SLICE
        self._last_in_measurement = m.ACQ_LAST_IN_MEASUREMENT
        self.acquisitions = 0
        self.skipped = 0

    @property
    def pending(self) -> int:
        """Slices started and not yet complete."""
        return len(self._pending)

    def _slice_bytes(self) -> int:
        coils = self.coils or 1
        return coils * self.encoding.height * self.encoding.width * 8

    def _pending_bytes(self) -> int:
        total = 0
        for item in self._pending.values():
            total += item.kspace.nbytes + (item.calibration.nbytes if item.calibration is not None else 0)
        return total

    def _reserve(self, extra: int) -> None:
        if self._pending_bytes() + extra > self.max_pending_bytes:
            raise DataFormatError(
                f"more than {self.max_pending_bytes / 2**20:.0f} MiB of incomplete slices ({len(self._pending)} "
                "pending); expected each slice's last acquisition to carry ACQ_LAST_IN_SLICE."
            )
        if self.budget is not None:
            self.budget.take(extra)

    @staticmethod
    def _held(item: _Pending) -> int:
        return item.kspace.nbytes + (item.calibration.nbytes if item.calibration is not None else 0)

    def close(self) -> None:
        """Drop the incomplete slices (the stream ended early) and give their bytes back to the budget."""
        held = sum(self._held(item) for item in self._pending.values())
        self._pending.clear()
        if self.budget is not None:
            self.budget.give(held)

    def _check_channels(self, acquisition: Any) -> int:
        channels = int(acquisition.active_channels)
        if self.coils is None:
            if not 1 <= channels <= MAX_COILS:
                raise DataFormatError(
                    f"acquisition has {channels} active channels; expected 1 to {MAX_COILS}."
                )
            self.coils = channels
        elif channels != self.coils:
            raise DataFormatError(
                f"acquisition {self.acquisitions} has {channels} active channels; earlier ones had "
                f"{self.coils} (expected the same coils throughout)."
            )
        return channels

    def _readout(self, acquisition: Any) -> np.ndarray:
        """The acquisition's samples as one k-space line ``(C, H)``: reversed, placed, oversampling removed."""
        enc_x = self.encoding.encoded[0]
        samples = int(acquisition.number_of_samples)
        data = np.asarray(acquisition.data, dtype=np.complex64)
        if data.shape != (self.coils, samples):
            raise DataFormatError(
                f"acquisition {self.acquisitions} data has shape {data.shape}; expected (channels, samples) = "
                f"({self.coils}, {samples})."
            )
        if acquisition.is_flag_set(self._reverse):
            data = data[:, ::-1]
        if samples == enc_x:
            line = data
        else:
            start = enc_x // 2 - int(acquisition.center_sample)
            if samples > enc_x or start < 0 or start + samples > enc_x:
                raise DataFormatError(
                    f"acquisition {self.acquisitions} has {samples} samples (centre sample "
                    f"{acquisition.center_sample}); they do not fit the header's encodedSpace x = {enc_x} "
                    "(expected number_of_samples = encodedSpace x, or a partial echo inside it)."
                )
            line = np.zeros((data.shape[0], enc_x), dtype=np.complex64)
            line[:, start : start + samples] = data
        if self.encoding.remove_oversampling:
            line = crop_readout(line, self.encoding.height)
        return line

    def add(self, acquisition: Any) -> list[MRDSlice]:
        """Store one acquisition; returns the slices it completed (often none)."""
        self.acquisitions += 1
        if any(acquisition.is_flag_set(flag) for flag in self._flags):
            self.skipped += 1
            return []
        self._check_channels(acquisition)
        e2 = int(acquisition.idx.kspace_encode_step_2)
        if e2 != self.encoding.e2_minimum:
            raise DataFormatError(
                f"acquisition {self.acquisitions - 1} has kspace_encode_step_2 = {e2}; the header describes 2-D "
                f"data (expected {self.encoding.e2_minimum})."
            )
        width = self.encoding.width
        e1 = int(acquisition.idx.kspace_encode_step_1)
        column = e1 - self.encoding.e1_center + width // 2
        if not 0 <= column < width:
            raise DataFormatError(
                f"acquisition {self.acquisitions - 1} has kspace_encode_step_1 = {e1}, column {column} of a "
                f"k-space {width} lines wide (encoding centre {self.encoding.e1_center}); expected 0 <= column < {width}."
            )
        line = self._readout(acquisition)
        key = SliceKey.of(acquisition)
        item = self._pending.get(key)
        shape = (self.coils or 1, self.encoding.height, width)
        if item is None:
            self._reserve(self._slice_bytes())
            item = _Pending(kspace=np.zeros(shape, np.complex64), mask=np.zeros(width, bool))
            self._pending[key] = item
        calibration_only = acquisition.is_flag_set(self._calibration) and not acquisition.is_flag_set(
            self._calibration_and_imaging
        )
        if calibration_only:
            if item.calibration is None or item.calibration_mask is None:
                self._reserve(self._slice_bytes())
                item.calibration = np.zeros(shape, np.complex64)
                item.calibration_mask = np.zeros(width, bool)
            item.calibration[:, :, column] = line
            item.calibration_mask[column] = True
        else:
            item.kspace[:, :, column] = line
            item.mask[column] = True
            distance = abs(column - width // 2)
            if item.head is None or distance < item.head_distance:
                item.head, item.head_distance = acquisition.getHead(), distance
        if acquisition.is_flag_set(self._last_in_measurement):
            return self.flush()
        if acquisition.is_flag_set(self._last_in_slice):
            # The slice's last readout ends every image of that slice: cine phases, echoes (contrasts),
            # sets and averages are interleaved inside a slice and only the very last line is flagged
            # (as python-ismrmrd-server and Gadgetron's slice trigger read it).
            ended = [pending for pending in self._pending if pending.slice == key.slice]
            done = [self._complete(pending) for pending in ended]
            return [item for item in done if item is not None]
        return []

    def _complete(self, key: SliceKey) -> MRDSlice | None:
        item = self._pending.pop(key)
        if self.budget is not None:
            self.budget.give(self._held(item))  # the slice now belongs to the caller (bounded by its queue)
        if not item.mask.any():  # calibration lines only: nothing to reconstruct
            return None
        return MRDSlice(
            kspace=item.kspace,
            mask=item.mask,
            key=key,
            head=item.head,
            calibration=item.calibration,
            calibration_mask=item.calibration_mask,
            completed_at=time.monotonic(),
        )

    def flush(self) -> list[MRDSlice]:
        """Complete every pending slice (the data ended); in the order they were started."""
        done = [self._complete(key) for key in list(self._pending)]
        return [item for item in done if item is not None]


@dataclass
class MRDVolume:
    """The slices of an MRD raw file, assembled.

    Attributes:
        slices: one :class:`MRDSlice` per image, sorted by index (slice, contrast, phase, repetition,
            set, average; acquisition order among equal indices), whatever order they were acquired in.
        header: the ``ismrmrdHeader``.
        encoding: what the header says about the encoding (sizes, fields of view).
        path: the file; group: the MRD group read.
        skipped: acquisitions skipped (noise scans, navigators, ...).
    """

    slices: list[MRDSlice]
    header: Any
    encoding: Encoding
    path: Path
    group: str
    skipped: int = 0

    @property
    def kspace(self) -> np.ndarray:
        """``(N, C, H, W)`` complex64."""
        return np.stack([s.kspace for s in self.slices])

    @property
    def mask(self) -> np.ndarray:
        """``(N, 1, 1, W)`` bool: each slice's acquired lines."""
        return np.stack([s.mask for s in self.slices])[:, None, None, :]

    @property
    def indices(self) -> np.ndarray:
        """``(N, 6)`` int: each slice's slice, contrast, phase, repetition, set, average (:data:`SLICE_FIELDS`)."""
        return np.array(
            [[getattr(s.key, name) for name in SLICE_FIELDS] for s in self.slices], dtype=np.int64
        )


def _raw_groups(handle: h5py.File) -> list[str]:
    """Top-level groups that look like MRD raw data: an ``xml`` header and a compound ``data`` with ``head``."""
    found = []
    for name, item in handle.items():
        if not isinstance(item, h5py.Group) or "xml" not in item or "data" not in item:
            continue
        data = item["data"]
        if isinstance(data, h5py.Dataset) and data.dtype.names and "head" in data.dtype.names:
            found.append(name)
    return found


# What h5py / ismrmrd raise on MRD groups whose datasets do not have the MRD layout.
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, OSError)


def mrd_raw_groups(path: str | Path) -> list[str]:
    """The groups of an HDF5 file that hold MRD raw data (usually ``["dataset"]``); ``[]`` for any other file."""
    try:
        if not h5py.is_hdf5(path):
            return []
        with h5py.File(path, "r") as handle:
            return _raw_groups(handle)
    except (OSError, ValueError):
        return []


def is_mrd_file(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file holding MRD raw data (by content, whatever its suffix)."""
    return bool(mrd_raw_groups(path))


def read_mrd(
    path: str | Path,
    *,
    group: str | None = None,
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    progress: bool | None = None,
) -> MRDVolume:
    """Read an MRD raw file and assemble its Cartesian k-space slice by slice.

    Args:
        path: the file (HDF5; any suffix).
        group: the MRD group (default: the only group holding raw data, usually ``dataset``).
        max_pending_bytes: bound on incomplete slices held while reading.
        progress: show a progress bar (default: when on a terminal).

    Raises:
        DataFormatError: not MRD raw data, a header fastrecon cannot reconstruct (non-Cartesian, 3-D,
            several encodings), acquisitions that do not fit the header, or no imaging data at all.
    """
    from tqdm import tqdm

    m = _ismrmrd()
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            groups = _raw_groups(handle)
    except OSError as exc:
        raise DataFormatError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from exc
    if group is None:
        if len(groups) != 1:
            raise DataFormatError(
                f"{str(path)!r} holds {len(groups)} MRD raw data groups {groups}; expected one (or pass group=)."
            )
        group = groups[0]
    elif group not in groups:
        raise DataFormatError(
            f"{str(path)!r} has no MRD raw data group {group!r}; groups with raw data: {groups}."
        )
    with m.Dataset(str(path), group, create_if_needed=False, mode="r") as dataset:
        try:
            xml = dataset.read_xml_header()
        except _UNREADABLE as exc:
            raise DataFormatError(f"{path}: the MRD header /{group}/xml cannot be read: {exc}") from exc
        try:
            assembler = KSpaceAssembler(xml, max_pending_bytes=max_pending_bytes)
        except DataFormatError as exc:
            raise DataFormatError(f"{path}: {exc}") from exc
        slices: list[MRDSlice] = []
        count = dataset.number_of_acquisitions()
        disable = None if progress is None else not progress
        for index in tqdm(range(count), desc=f"reading {path.name}", unit="acq", disable=disable):
            try:
                acquisition = dataset.read_acquisition(index)
            except _UNREADABLE as exc:
                raise DataFormatError(
                    f"{path}: acquisition {index} of /{group}/data cannot be read as an MRD acquisition: {exc}"
                ) from exc
            try:
                slices += assembler.add(acquisition)
            except DataFormatError as exc:
                raise DataFormatError(f"{path}: {exc}") from exc
        slices += assembler.flush()
    # Interleaved multi-slice scans complete their slices out of order (2, 0, 1, ...): a volume is in
    # index order (slice, contrast, phase, repetition, set, average); equal keys keep acquisition order.
    slices.sort(key=lambda item: item.key)
    if not slices:
        raise DataFormatError(
            f"{path}: no imaging acquisitions ({count} acquisitions, {assembler.skipped} skipped as noise or "
            "other non-imaging data)."
        )
    shapes = {s.kspace.shape for s in slices}
    if len(shapes) != 1:  # pragma: no cover - the assembler keeps coils and matrix fixed
        raise DataFormatError(f"{path}: slices of different shapes {sorted(shapes)}.")
    return MRDVolume(
        slices=slices,
        header=assembler.header,
        encoding=assembler.encoding,
        path=path,
        group=group,
        skipped=assembler.skipped,
    )


__all__ = [
    "DEFAULT_MAX_PENDING_BYTES",
    "MAX_COILS",
    "MAX_MATRIX",
    "SLICE_FIELDS",
    "Encoding",
    "KSpaceAssembler",
    "MRDSlice",
    "MRDVolume",
    "PendingBudget",
    "SliceKey",
    "build_header",
    "crop_readout",
    "encoding_of",
    "header_xml",
    "is_mrd_file",
    "mrd_raw_groups",
    "pad_readout",
    "parse_header",
    "read_mrd",
]
