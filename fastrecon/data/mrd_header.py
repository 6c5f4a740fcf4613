"""MRD (ISMRMRD) XML headers: parse and validate with ``ismrmrd.xsd`` types, build schema-valid ones, and
read what fastrecon needs from the single Cartesian 2-D encoding it accepts (:class:`Encoding`).

The ``ismrmrd`` package is imported when first needed (``import fastrecon`` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrecon.errors import DataFormatError, MissingDependencyError

# Largest accepted matrix side: far above any scanner's, small enough that a corrupt header cannot ask
# for terabytes.
MAX_MATRIX = 4096


def _ismrmrd() -> Any:
    try:
        import ismrmrd
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            "MRD (ISMRMRD) data needs the 'ismrmrd' package: pip install 'ismrmrd>=1.14'."
        ) from exc
    return ismrmrd


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
        height: H of the assembled k-space: the readout samples left once oversampling is removed
            (``encoded`` x scaled by the ratio of the recon to the encoded field of view x when that is
            below 1, else the smaller of the two matrices' x).
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
        return self.height < self.encoded[0]


def _fov(space: Any) -> tuple[float, float, float]:
    f = space.fieldOfView_mm
    return (float(f.x), float(f.y), float(f.z))


def _readout_height(encoded_x: int, recon_x: int, encoded_fov_x: float, recon_fov_x: float) -> int:
    """Readout samples kept once oversampling is removed. The oversampling factor is the ratio of the
    fields of view (as Gadgetron's RemoveROOversamplingGadget reads it), so a header whose recon matrix
    equals the oversampled one (scanner interpolation) still loses its oversampled margins; without a
    usable ratio the matrices decide. Never more than ``encoded_x`` (nothing is interpolated)."""
    if encoded_fov_x > 0 and recon_fov_x > 0 and encoded_fov_x > recon_fov_x:
        return max(1, int(encoded_x * recon_fov_x / encoded_fov_x))
    return min(recon_x, encoded_x)


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
    e1 = limits.kspace_encoding_step_1
    e1_center = int(e1.center) if e1 is not None else encoded[1] // 2
    system = header.acquisitionSystemInformation
    channels = getattr(system, "receiverChannels", None) if system is not None else None
    return Encoding(
        encoded=encoded,
        recon=recon,
        height=_readout_height(encoded[0], recon[0], _fov(enc.encodedSpace)[0], _fov(enc.reconSpace)[0]),
        width=encoded[1],
        e1_center=e1_center,
        e2_minimum=int(e2.minimum) if e2 is not None else 0,
        fov_mm=_fov(enc.reconSpace),
        encoded_fov_mm=_fov(enc.encodedSpace),
        receiver_channels=int(channels) if channels is not None else None,
    )
