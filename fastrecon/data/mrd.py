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
- readout oversampling is removed when ``encodedSpace`` x is larger than ``reconSpace`` x (centre crop
  in image space along the readout, then back to k-space);
- ``kspace_encode_step_1`` is offset by the encoding limits' centre, so the k-space centre lands at
  column ``W // 2``.

Only one Cartesian 2-D encoding is accepted; non-Cartesian trajectories and 3-D encoding are refused
with :class:`~fastrecon.errors.DataFormatError`. The ``ismrmrd`` package is imported when first needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fastrecon._files import atomic_write, check_output
from fastrecon.errors import DataFormatError, InputError, MissingDependencyError

# Largest accepted matrix side and coil count: far above any scanner's, small enough that a corrupt
# header cannot ask for terabytes.
MAX_MATRIX = 4096
MAX_COILS = 1024
# Pending (incomplete) slices an assembler may hold at once, in bytes of k-space.
DEFAULT_MAX_PENDING_BYTES = 4 * 2**30

_SLICE_FIELDS = ("slice", "contrast", "phase", "repetition", "set", "average")


def _ismrmrd() -> Any:
    try:
        import ismrmrd
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            "MRD (ISMRMRD) data needs the 'ismrmrd' package: pip install 'ismrmrd>=1.14'."
        ) from exc
    return ismrmrd


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


# --- header -----------------------------------------------------------------------------------------


def parse_header(header: Any) -> Any:
    """An ``ismrmrd.xsd.ismrmrdHeader`` from XML text/bytes (or the object itself), schema-checked.

    Raises :class:`DataFormatError` naming what the schema refused.
    """
    m = _ismrmrd()
    if isinstance(header, m.xsd.ismrmrdHeader):
        return header
    if isinstance(header, np.ndarray | np.bytes_):
        header = header.item() if isinstance(header, np.ndarray) and header.ndim == 0 else bytes(header)
    if not isinstance(header, str | bytes):
        raise DataFormatError(
            f"MRD header is a {type(header).__name__}; expected ISMRMRD XML text or an ismrmrdHeader."
        )
    try:
        return m.xsd.CreateFromDocument(header)
    except Exception as exc:  # xsdata raises its own ParserError and plain exceptions from the XML parser
        message = " ".join(str(exc).split())[:300]
        raise DataFormatError(f"MRD header is not a valid ISMRMRD XML header: {message}") from exc


def build_header(
    *,
    encoded_size: tuple[int, int],
    recon_size: tuple[int, int] | None = None,
    fov_mm: tuple[float, float, float] | None = None,
    recon_fov_mm: tuple[float, float, float] | None = None,
    e1_limits: tuple[int, int, int] | None = None,
    slices: int = 1,
    repetitions: int = 1,
    phases: int = 1,
    contrasts: int = 1,
    num_coils: int | None = None,
    trajectory: str = "cartesian",
    encoded_z: int = 1,
    e2_limits: tuple[int, int, int] | None = None,
    larmor_hz: int = 127_740_000,
) -> Any:
    """A schema-valid ``ismrmrdHeader`` for one Cartesian encoding (also used to write test data).

    Args:
        encoded_size: ``(x, y)``: readout samples (with oversampling) and phase-encode lines.
        recon_size: ``(x, y)`` of the reconstructed image (default: ``encoded_size``).
        fov_mm / recon_fov_mm: fields of view in mm (default: 1 mm per sample of each matrix, 5 mm thick).
        e1_limits: ``(minimum, maximum, center)`` of ``kspace_encoding_step_1`` (default: the full matrix,
            centre ``y // 2``).
        slices, repetitions, phases, contrasts: counts for the encoding limits.
        num_coils: ``receiverChannels`` (omitted when None).
        trajectory: ``cartesian`` (what fastrecon reconstructs), ``radial``, ``spiral``, ...
        encoded_z, e2_limits: 3-D encoding (refused by fastrecon; here so tests can write it).
    """
    x = _ismrmrd().xsd
    enc_x, enc_y = encoded_size
    rec_x, rec_y = recon_size if recon_size is not None else encoded_size
    fov = fov_mm if fov_mm is not None else (float(enc_x), float(enc_y), 5.0)
    rfov = recon_fov_mm if recon_fov_mm is not None else (float(rec_x), float(rec_y), fov[2])
    e1 = e1_limits if e1_limits is not None else (0, enc_y - 1, enc_y // 2)

    def limit(minimum: int, maximum: int, center: int) -> Any:
        return x.limitType(minimum=minimum, maximum=maximum, center=center)

    limits = x.encodingLimitsType(
        kspace_encoding_step_0=limit(0, enc_x - 1, enc_x // 2),
        kspace_encoding_step_1=limit(*e1),
        kspace_encoding_step_2=limit(*(e2_limits or (0, 0, 0))),
        average=limit(0, 0, 0),
        slice=limit(0, slices - 1, 0),
        contrast=limit(0, contrasts - 1, 0),
        phase=limit(0, phases - 1, 0),
        repetition=limit(0, repetitions - 1, 0),
        set=limit(0, 0, 0),
        segment=limit(0, 0, 0),
    )
    encoding = x.encodingType(
        encodedSpace=x.encodingSpaceType(
            matrixSize=x.matrixSizeType(x=enc_x, y=enc_y, z=encoded_z),
            fieldOfView_mm=x.fieldOfViewMm(x=fov[0], y=fov[1], z=fov[2]),
        ),
        reconSpace=x.encodingSpaceType(
            matrixSize=x.matrixSizeType(x=rec_x, y=rec_y, z=1),
            fieldOfView_mm=x.fieldOfViewMm(x=rfov[0], y=rfov[1], z=rfov[2]),
        ),
        encodingLimits=limits,
        trajectory=x.trajectoryType(trajectory),
    )
    system = None
    if num_coils is not None:
        system = x.acquisitionSystemInformationType(receiverChannels=num_coils)
    return x.ismrmrdHeader(
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=larmor_hz),
        encoding=[encoding],
        acquisitionSystemInformation=system,
    )


def header_xml(header: Any) -> str:
    """The header as ISMRMRD XML text."""
    return str(parse_header(header).toXML("utf-8"))


@dataclass(frozen=True)
class Encoding:
    """What the assembler takes from the header's single Cartesian encoding.

    Attributes:
        encoded: ``(x, y)`` readout samples (with oversampling) and phase-encode lines of the k-space matrix.
        recon: ``(x, y)`` of the reconstructed image.
        height: H of the assembled k-space: ``recon`` x when oversampling is removed, else ``encoded`` x.
        width: W = ``encoded`` y.
        e1_center: ``kspace_encoding_step_1`` index of the k-space centre (lands at column ``W // 2``).
        e2_minimum: the only accepted ``kspace_encode_step_2`` (2-D data).
        fov_mm: ``reconSpace`` field of view ``(x, y, z)`` in mm (the images' field of view).
        encoded_fov_mm: ``encodedSpace`` field of view.
        receiver_channels: from ``acquisitionSystemInformation`` (None when absent).
    """

    encoded: tuple[int, int]
    recon: tuple[int, int]
    height: int
    width: int
    e1_center: int
    e2_minimum: int
    fov_mm: tuple[float, float, float]
    encoded_fov_mm: tuple[float, float, float]
    receiver_channels: int | None

    @property
    def remove_oversampling(self) -> bool:
        return self.encoded[0] > self.recon[0]


def _fov(space: Any) -> tuple[float, float, float]:
    f = space.fieldOfView_mm
    return (float(f.x), float(f.y), float(f.z))


def encoding_of(header: Any) -> Encoding:
    """Validate the header (one Cartesian 2-D encoding of sane size) and return its :class:`Encoding`."""
    header = parse_header(header)
    encodings = list(header.encoding)
    if len(encodings) != 1:
        raise DataFormatError(
            f"MRD header has {len(encodings)} encodings; fastrecon reconstructs data with exactly one "
            "Cartesian 2-D encoding."
        )
    enc = encodings[0]
    trajectory = getattr(enc.trajectory, "value", enc.trajectory)
    if trajectory != "cartesian":
        raise DataFormatError(
            f"MRD header has a non-Cartesian trajectory {trajectory!r}; fastrecon reconstructs Cartesian 2-D "
            "data only (expected trajectory 'cartesian')."
        )
    es, rs = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
    limits = enc.encodingLimits
    e2 = limits.kspace_encoding_step_2
    e2_lines = (int(e2.maximum) - int(e2.minimum) + 1) if e2 is not None else 1
    if int(es.z) > 1 or e2_lines > 1:
        raise DataFormatError(
            f"MRD header describes 3-D encoding (encodedSpace z = {es.z}, kspace_encoding_step_2 range "
            f"{e2_lines}); fastrecon reconstructs 2-D slices only (expected z = 1 and one step-2 index)."
        )
    encoded = (int(es.x), int(es.y))
    recon = (int(rs.x), int(rs.y))
    for name, (sx, sy) in (("encodedSpace", encoded), ("reconSpace", recon)):
        if not (1 <= sx <= MAX_MATRIX and 1 <= sy <= MAX_MATRIX):
            raise DataFormatError(
                f"MRD header {name} matrix is {sx} x {sy}; expected sides from 1 to {MAX_MATRIX}."
            )
    if recon[0] > encoded[0]:
        raise DataFormatError(
            f"MRD header reconSpace x = {recon[0]} is larger than encodedSpace x = {encoded[0]}; expected "
            "reconSpace x <= encodedSpace x (readout oversampling is removed, never added)."
        )
    e1 = limits.kspace_encoding_step_1
    e1_center = int(e1.center) if e1 is not None else encoded[1] // 2
    system = header.acquisitionSystemInformation
    channels = getattr(system, "receiverChannels", None) if system is not None else None
    height = recon[0] if encoded[0] > recon[0] else encoded[0]
    return Encoding(
        encoded=encoded,
        recon=recon,
        height=height,
        width=encoded[1],
        e1_center=e1_center,
        e2_minimum=int(e2.minimum) if e2 is not None else 0,
        fov_mm=_fov(enc.reconSpace),
        encoded_fov_mm=_fov(enc.encodedSpace),
        receiver_channels=int(channels) if channels is not None else None,
    )


# --- assembler --------------------------------------------------------------------------------------


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
        return SliceKey(*(int(getattr(idx, name)) for name in _SLICE_FIELDS))


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


class KSpaceAssembler:
    """Assembles acquisitions into k-space slices; one per file or per stream.

    ``add(acquisition)`` returns the slices that acquisition completed (``ACQ_LAST_IN_SLICE``, or every
    pending slice on ``ACQ_LAST_IN_MEASUREMENT``); :meth:`flush` returns the rest when the data end.
    Memory is bounded: at most ``max_pending_bytes`` of incomplete slices are held.
    """

    def __init__(self, header: Any, *, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self.header = parse_header(header)
        self.encoding = encoding_of(self.header)
        self.max_pending_bytes = int(max_pending_bytes)
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
            line = crop_readout(line, self.encoding.recon[0])
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
            done = self._complete(key)
            return [done] if done is not None else []
        return []

    def _complete(self, key: SliceKey) -> MRDSlice | None:
        item = self._pending.pop(key)
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


# --- files ------------------------------------------------------------------------------------------


@dataclass
class MRDVolume:
    """The slices of an MRD raw file, assembled.

    Attributes:
        slices: one :class:`MRDSlice` per image, in acquisition order.
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


def is_mrd_file(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file holding MRD raw data (by content, whatever its suffix)."""
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as handle:
            return bool(_raw_groups(handle))
    except (OSError, ValueError):
        return False


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
        xml = dataset.read_xml_header()
        try:
            assembler = KSpaceAssembler(xml, max_pending_bytes=max_pending_bytes)
        except DataFormatError as exc:
            raise DataFormatError(f"{path}: {exc}") from exc
        slices: list[MRDSlice] = []
        count = dataset.number_of_acquisitions()
        disable = None if progress is None else not progress
        for index in tqdm(range(count), desc=f"reading {path.name}", unit="acq", disable=disable):
            try:
                slices += assembler.add(dataset.read_acquisition(index))
            except DataFormatError as exc:
                raise DataFormatError(f"{path}: {exc}") from exc
        slices += assembler.flush()
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


# --- images -----------------------------------------------------------------------------------------


def crop_to_recon(image: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Centre-crop ``(..., H, W)`` images to the header's ``reconSpace`` ``(x, y)`` where it is smaller."""
    height, width = image.shape[-2:]
    rx, ry = min(encoding.recon[0], height), min(encoding.recon[1], width)
    top, left = (height - rx) // 2, (width - ry) // 2
    return image[..., top : top + rx, left : left + ry]


def to_mrd_images(
    images: np.ndarray | Sequence[np.ndarray],
    slices: Sequence[MRDSlice],
    encoding: Encoding,
    *,
    meta: dict[str, Any] | None = None,
    series_index: int = 1,
    first_index: int = 1,
    dtype: str = "float32",
) -> list[Any]:
    """MRD magnitude images from reconstructions.

    Args:
        images: ``(N, H, W)`` magnitudes (H readout, W phase encode), one per slice; centre-cropped
            here to ``reconSpace``.
        slices: the :class:`MRDSlice` each image came from (indices, geometry).
        encoding: the header's encoding (``reconSpace`` field of view).
        meta: extra MRD meta attributes (model, backend, precision, latency, ...).
        series_index: ``image_series_index`` of every image; first_index: ``image_index`` of the first.
        dtype: ``"float32"`` (values as reconstructed) or ``"uint16"`` (scaled so the largest value is
            4095, as python-ismrmrd-server's examples do for scanners that display 12-bit images).

    Returns:
        ``ismrmrd.Image`` list: ``matrix_size = (x, y, 1)`` with x the readout; ``field_of_view`` from
        ``reconSpace``; position, read/phase/slice directions, table position and time stamps from the
        acquisition nearest the k-space centre; slice/contrast/phase/repetition/set/average indices.
    """
    m = _ismrmrd()
    if dtype not in ("float32", "uint16"):
        raise InputError(f"image dtype {dtype!r} is not supported; expected 'float32' or 'uint16'.")
    if len(images) != len(slices):
        raise InputError(f"{len(images)} images for {len(slices)} slices; expected one image per slice.")
    out = []
    for offset, (image, item) in enumerate(zip(images, slices, strict=True)):
        magnitude = np.abs(np.asarray(image)).astype(np.float32)
        magnitude = crop_to_recon(magnitude, encoding)
        window: tuple[float, float]
        if dtype == "uint16":
            peak = float(magnitude.max()) if magnitude.size else 0.0
            scale = 4095.0 / peak if peak > 0 else 0.0
            data: np.ndarray = np.round(magnitude * scale).astype(np.uint16)
            window = (2048.0, 4096.0)
        else:
            data = magnitude
            peak = float(magnitude.max()) if magnitude.size else 0.0
            window = (peak / 2, peak)
        # MRD images are (y, x) in memory with x the readout: our (H readout, W phase) transposed.
        array = np.ascontiguousarray(data.T)
        head = item.head if item.head is not None else m.AcquisitionHeader()
        mrd = m.Image.from_array(array, acquisition=head, transpose=False)
        mrd.image_type = m.IMTYPE_MAGNITUDE
        mrd.image_series_index = int(series_index)
        mrd.image_index = int(first_index + offset)
        mrd.field_of_view = tuple(float(v) for v in encoding.fov_mm)
        for name in _SLICE_FIELDS:
            setattr(mrd, name, int(getattr(item.key, name)))
        attributes = {
            "DataRole": "Image",
            "ImageProcessingHistory": ["FASTRECON"],
            "WindowCenter": f"{window[0]:.6g}",
            "WindowWidth": f"{window[1]:.6g}",
            "Keep_image_geometry": 1,
        }
        attributes.update({k: v for k, v in (meta or {}).items() if v is not None})
        mrd.meta = m.Meta(attributes)
        out.append(mrd)
    return out


def write_mrd_images(
    path: str | Path,
    images: Iterable[Any],
    *,
    header: Any = None,
    group: str = "dataset",
    image_group: str = "image_0",
    inputs: Sequence[str | Path] = (),
    overwrite: bool = False,
) -> Path:
    """Write ``ismrmrd.Image`` objects to an MRD file (``/<group>/<image_group>``), with the header when
    given. Written to a temporary file beside ``path`` and renamed; never over one of ``inputs``; an
    existing file only with ``overwrite``. Returns the path."""
    m = _ismrmrd()
    path = check_output(path, inputs=inputs, overwrite=overwrite)
    images = list(images)
    if not images:
        raise InputError("no images to write; expected at least one ismrmrd.Image.")
    with (
        atomic_write(path, overwrite=overwrite) as temp,
        m.Dataset(str(temp), group, create_if_needed=True) as dataset,
    ):
        if header is not None:
            dataset.write_xml_header(header_xml(header).encode("utf-8"))
        for image in images:
            dataset.append_image(image_group, image)
    return path


def read_mrd_images(path: str | Path, *, group: str = "dataset", image_group: str = "image_0") -> list[Any]:
    """The ``ismrmrd.Image`` objects of an MRD image file (as written by :func:`write_mrd_images`)."""
    m = _ismrmrd()
    with m.Dataset(str(path), group, create_if_needed=False, mode="r") as dataset:
        return [dataset.read_image(image_group, i) for i in range(dataset.number_of_images(image_group))]


def image_array(image: Any) -> np.ndarray:
    """An MRD image's pixels as fastrecon's ``(H readout, W phase)`` (the inverse of the transpose
    :func:`to_mrd_images` applies)."""
    data = np.asarray(image.data)
    return np.ascontiguousarray(data[0, 0].T)


__all__ = [
    "DEFAULT_MAX_PENDING_BYTES",
    "Encoding",
    "KSpaceAssembler",
    "MRDSlice",
    "MRDVolume",
    "SliceKey",
    "build_header",
    "crop_readout",
    "crop_to_recon",
    "encoding_of",
    "header_xml",
    "image_array",
    "is_mrd_file",
    "pad_readout",
    "parse_header",
    "read_mrd",
    "read_mrd_images",
    "to_mrd_images",
    "write_mrd_images",
]
