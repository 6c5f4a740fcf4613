"""Where reconstructed images lie in space: voxel size, slice positions and directions.

Conventions (those of ISMRMRD/MRD and DICOM): patient coordinates in millimetres, LPS (x to the
patient's left, y to the posterior, z to the head). A reconstruction ``(N, H, W)`` has its axis H
(the readout, fastrecon's k-space ``H``) along ``read_dir``, its axis W (phase encode) along
``phase_dir`` and its slices along ``slice_dir``. ``positions[n]`` is the centre of slice ``n``, as in
an MRD acquisition or image header: with centred FFTs the centre is pixel ``(H // 2, W // 2)``.

fastMRI files carry no position, only the header's field of view and matrix sizes: their geometry
has the voxel size and the default (identity) directions. MRD data give the full geometry from the
acquisitions (``position``, ``read_dir``, ``phase_dir``, ``slice_dir``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastrecon.errors import DataFormatError, InputError

Vector = tuple[float, float, float]


def _vector(value: Sequence[float] | np.ndarray, name: str) -> Vector:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.shape != (3,) or not np.isfinite(array).all():
        raise InputError(f"{name} is {value!r}; expected 3 finite numbers.")
    norm = float(np.linalg.norm(array))
    if norm < 1e-6:
        raise InputError(f"{name} is {value!r}, a zero vector; expected a direction.")
    return (float(array[0] / norm), float(array[1] / norm), float(array[2] / norm))


@dataclass(frozen=True)
class ImageGeometry:
    """Geometry of a reconstruction ``(N, H, W)`` (see the module docstring for the conventions).

    Attributes:
        voxel_size_mm: ``(along H, along W, between slices)`` in mm; all > 0.
        positions: ``(N, 3)`` centre of each slice in LPS mm, or None (unknown: slice ``n`` is then
            centred at ``(n - (N - 1) / 2) * voxel_size_mm[2] * slice_dir``).
        read_dir: unit vector of axis H (LPS).
        phase_dir: unit vector of axis W.
        slice_dir: unit vector from one slice to the next.
    """

    voxel_size_mm: Vector = (1.0, 1.0, 1.0)
    positions: np.ndarray | None = field(default=None, compare=False)
    read_dir: Vector = (1.0, 0.0, 0.0)
    phase_dir: Vector = (0.0, 1.0, 0.0)
    slice_dir: Vector = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        size = np.asarray(self.voxel_size_mm, dtype=np.float64).reshape(-1)
        if size.shape != (3,) or not (np.isfinite(size).all() and (size > 0).all()):
            raise InputError(f"voxel_size_mm is {self.voxel_size_mm!r}; expected 3 positive sizes in mm.")
        object.__setattr__(self, "voxel_size_mm", (float(size[0]), float(size[1]), float(size[2])))
        for name in ("read_dir", "phase_dir", "slice_dir"):
            object.__setattr__(self, name, _vector(getattr(self, name), name))
        if abs(float(np.dot(self.read_dir, self.phase_dir))) > 1e-3:
            raise InputError(
                f"read_dir {self.read_dir} and phase_dir {self.phase_dir} are not perpendicular; expected the "
                "orthogonal in-plane directions of an image."
            )
        if self.positions is not None:
            positions = np.asarray(self.positions, dtype=np.float64)
            if positions.ndim != 2 or positions.shape[1] != 3 or not np.isfinite(positions).all():
                raise InputError(
                    f"positions has shape {positions.shape}; expected (N, 3) finite slice centres in mm."
                )
            object.__setattr__(self, "positions", positions)

    def slice_centres(self, num_slices: int) -> np.ndarray:
        """``(N, 3)`` centre of each slice (LPS mm): ``positions``, or slices stacked around the origin."""
        if self.positions is not None:
            if self.positions.shape[0] != num_slices:
                raise InputError(
                    f"the geometry has {self.positions.shape[0]} slice positions for {num_slices} slices."
                )
            return self.positions
        steps = (np.arange(num_slices) - (num_slices - 1) / 2) * self.voxel_size_mm[2]
        return steps[:, None] * np.asarray(self.slice_dir)[None, :]

    def corners(self, shape: tuple[int, int, int]) -> np.ndarray:
        """``(N, 3)`` LPS position of pixel ``(0, 0)`` of each slice of an ``(N, H, W)`` image (the DICOM
        ``ImagePositionPatient``): the centre minus ``H // 2`` rows and ``W // 2`` columns."""
        num, height, width = shape
        read = np.asarray(self.read_dir) * self.voxel_size_mm[0]
        phase = np.asarray(self.phase_dir) * self.voxel_size_mm[1]
        return self.slice_centres(num) - (height // 2) * read - (width // 2) * phase

    def slice_step(self, num_slices: int) -> np.ndarray:
        """The LPS vector from one slice to the next: the mean step of ``positions`` when it has
        several, else ``voxel_size_mm[2] * slice_dir``."""
        if self.positions is not None and num_slices > 1:
            step = (self.positions[-1] - self.positions[0]) / (num_slices - 1)
            if np.linalg.norm(step) > 1e-6:
                return step
        return np.asarray(self.slice_dir) * self.voxel_size_mm[2]

    def affine_lps(self, shape: tuple[int, int, int]) -> np.ndarray:
        """4 x 4 matrix from voxel ``(i, j, n)`` (row along H, column along W, slice) to LPS mm."""
        num = shape[0]
        affine = np.eye(4)
        affine[:3, 0] = np.asarray(self.read_dir) * self.voxel_size_mm[0]
        affine[:3, 1] = np.asarray(self.phase_dir) * self.voxel_size_mm[1]
        affine[:3, 2] = self.slice_step(num)
        affine[:3, 3] = self.corners(shape)[0]
        return affine

    def affine_ras(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The same in RAS mm (NIfTI's convention): x and y of :meth:`affine_lps` negated."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps(shape)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element | None, *names: str) -> ET.Element | None:
    for name in names:
        if node is None:
            return None
        node = next((child for child in node if _local(child.tag) == name), None)
    return node


def _triple(node: ET.Element | None) -> tuple[float, float, float] | None:
    values = []
    for axis in ("x", "y", "z"):
        found = _child(node, axis)
        if found is None or found.text is None:
            return None
        try:
            values.append(float(found.text.strip()))
        except ValueError:
            return None
    return (values[0], values[1], values[2])


def geometry_from_ismrmrd_header(xml: bytes | str) -> ImageGeometry | None:
    """Voxel size from an ISMRMRD header: ``reconSpace`` ``fieldOfView_mm / matrixSize`` (x along H,
    y along W, z the slice thickness), else ``encodedSpace``'s; None when neither is complete.

    The header has no position: directions are the defaults.
    """
    try:
        root = ET.fromstring(xml)  # noqa: S314 - a local data file's header, parsed by expat with its entity limits
    except ET.ParseError as exc:
        raise DataFormatError(f"ismrmrd_header is not valid XML: {exc}") from exc
    encoding = _child(root, "encoding")
    for space in ("reconSpace", "encodedSpace"):
        fov = _triple(_child(encoding, space, "fieldOfView_mm"))
        matrix = _triple(_child(encoding, space, "matrixSize"))
        if fov is None or matrix is None or not all(0 < v < float("inf") for v in (*fov, *matrix)):
            continue  # incomplete, or nonsense such as nan/inf/0 (not worth failing the file over)
        return ImageGeometry(voxel_size_mm=(fov[0] / matrix[0], fov[1] / matrix[1], fov[2] / matrix[2]))
    return None


def fastmri_geometry(path: str | Path) -> ImageGeometry | None:
    """:func:`geometry_from_ismrmrd_header` of a fastMRI file's ``ismrmrd_header``; None without one."""
    from fastrecon.data._h5 import open_h5, read_dataset

    path = Path(path)
    with open_h5(path, "fastMRI .h5") as handle:
        if "ismrmrd_header" not in handle:
            return None
        raw = read_dataset(handle, "ismrmrd_header")
    value = raw.item() if raw.ndim == 0 else raw.tobytes()
    try:
        return geometry_from_ismrmrd_header(value)
    except DataFormatError as exc:
        raise DataFormatError(f"{path}: {exc}") from exc
