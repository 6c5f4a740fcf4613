"""Opening HDF5 files (fastMRI ``.h5``, MATLAB v7.3 ``.mat``) with errors that say what went wrong."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fastrecon.errors import DataFormatError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAT_V5_MARK = b"MATLAB 5.0 MAT-file"
_MAT_V73_MARK = b"MATLAB 7.3 MAT-file"

CONVERT_HINT = (
    "Convert it to v7.3 (HDF5): in MATLAB `data = load('in.mat'); save('out.mat', '-struct', 'data', '-v7.3')`; "
    "in Python `hdf5storage.savemat('out.mat', scipy.io.loadmat('in.mat'), format='7.3', matlab_compatible=True)`."
)


def _head(path: Path, size: int = 128) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def describe(path: Path) -> str:
    """A short description of what the file looks like, from its first bytes."""
    head = _head(path, 1024)
    if head.startswith(_MAT_V5_MARK):
        text = head[:116].split(b"\x00")[0].decode("latin-1", "replace").strip()
        return f"a MATLAB v5/v7 MAT-file (header {text!r})"
    if head.startswith(_MAT_V73_MARK):
        return "a MATLAB v7.3 MAT-file (HDF5)"
    if _HDF5_SIGNATURE in head[:1024]:
        return "an HDF5 file"
    if not head:
        return "an empty file"
    return f"not an HDF5 file (first bytes {head[:16]!r})"


@contextlib.contextmanager
def open_h5(path: str | Path, what: str) -> Iterator[h5py.File]:
    """Open ``path`` read-only as HDF5, or raise :class:`DataFormatError` naming the file and the problem.

    ``what`` names the expected format in messages (e.g. ``"fastMRI .h5"``). A MATLAB v5/v7 file
    (``'MATLAB 5.0 MAT-file'`` in its first 128 bytes) gets an explanation and a conversion recipe.
    The file is closed when the block ends, whatever happens inside it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if _head(path).startswith(_MAT_V5_MARK):
        raise DataFormatError(
            f"{path} is {describe(path)}, not a MATLAB v7.3 (HDF5) MAT-file; fastrecon reads {what} files "
            f"with h5py, which cannot open v5/v7 MAT-files. {CONVERT_HINT}"
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        size = path.stat().st_size
        reason = "is truncated" if "truncated" in str(exc) else f"is {describe(path)} and could not be opened"
        raise DataFormatError(
            f"{path} ({size} bytes) {reason}; expected a complete {what} file. HDF5 said: {exc}"
        ) from exc
    with handle:
        yield handle


def read_dataset(handle: h5py.File, key: str, selection: Any = ()) -> np.ndarray:
    """``handle[key][selection]`` with read errors (corrupt or truncated data) as :class:`DataFormatError`."""
    if not isinstance(handle.get(key), h5py.Dataset):
        kind = "missing" if key not in handle else "an HDF5 group, not a dataset"
        raise DataFormatError(f"{handle.filename}: {key!r} is {kind}; expected an array.")
    try:
        return np.asarray(handle[key][selection])
    except (OSError, RuntimeError) as exc:
        raise DataFormatError(
            f"{handle.filename}: reading {key!r} failed, the file is corrupt or truncated. HDF5 said: {exc}"
        ) from exc


def to_complex64(array: np.ndarray, where: str) -> np.ndarray:
    """Complex64 copy of a native complex array, a MATLAB ``{real, imag}`` compound array, or a real array."""
    names = array.dtype.names
    if names is not None:
        if "real" not in names or "imag" not in names:
            raise DataFormatError(
                f"{where}: compound dtype with fields {names}; expected MATLAB's complex fields ('real', 'imag')."
            )
        out = np.empty(array.shape, dtype=np.complex64)
        out.real = array["real"]
        out.imag = array["imag"]
        return out
    if np.iscomplexobj(array) or np.issubdtype(array.dtype, np.number):
        return array.astype(np.complex64, copy=False)
    raise DataFormatError(f"{where}: dtype {array.dtype} is not numeric k-space (a MATLAB cell or struct?).")


def attr_value(value: Any) -> Any:
    """Plain Python value of an HDF5 attribute (bytes -> str, numpy scalar -> int/float/bool)."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value
