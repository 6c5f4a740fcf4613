"""Writers of test files in the real on-disk formats, independent of fastrecon's own writers.

* fastMRI ``.h5``: ``kspace`` complex64, ``reconstruction_rss`` float32, ``ismrmrd_header`` XML bytes
  (namespace and surrounding fields as in the released files), attributes.
* MATLAB v7.3 ``.mat`` as MATLAB writes it: an HDF5 file with a 512-byte user block whose first
  128 bytes are the MAT-file header (``MATLAB 7.3 MAT-file, Platform: ..., Created on: ... HDF5
  schema 1.00 .`` padded with spaces, 8 bytes of subsystem offset, version 0x0200 and the endian
  mark ``IM``), every variable stored with its axes reversed (column-major), complex values as a
  compound ``{real, imag}`` and a ``MATLAB_class`` attribute (``single``, ``double``, ``logical``
  with ``MATLAB_int_decode``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

MATLAB_HEADER_TEXT = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  8 10:00:00 2024 HDF5 schema 1.00 ."
)

ISMRMRD_XML = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
   <studyInformation><studyTime>14:50:45</studyTime></studyInformation>
   <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
   <experimentalConditions><H1resonanceFrequency_Hz>127766645</H1resonanceFrequency_Hz></experimentalConditions>
   <encoding>
      <encodedSpace>
         <matrixSize><x>{enc_x}</x><y>{enc_y}</y><z>1</z></matrixSize>
         <fieldOfView_mm><x>280</x><y>161</y><z>4.5</z></fieldOfView_mm>
      </encodedSpace>
      <reconSpace>
         <matrixSize><x>{rec_x}</x><y>{rec_y}</y><z>1</z></matrixSize>
         <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
      </reconSpace>
      <trajectory>cartesian</trajectory>
      <encodingLimits>
         <kspace_encoding_step_1><minimum>0</minimum><maximum>{lim_max}</maximum><center>{lim_center}</center></kspace_encoding_step_1>
         <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
         <slice><minimum>0</minimum><maximum>{slices_max}</maximum><center>0</center></slice>
      </encodingLimits>
   </encoding>
</ismrmrdHeader>
"""


def fastmri_header(
    num_coils: int, enc: tuple[int, int], rec: tuple[int, int], lim_max: int, lim_center: int, num_slices: int
) -> bytes:
    return ISMRMRD_XML.format(
        coils=num_coils,
        enc_x=enc[0],
        enc_y=enc[1],
        rec_x=rec[0],
        rec_y=rec[1],
        lim_max=lim_max,
        lim_center=lim_center,
        slices_max=num_slices - 1,
    ).encode()


def write_fastmri_file(
    path: Path,
    kspace: np.ndarray,
    *,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    recon_size: tuple[int, int] = (320, 320),
    lim: tuple[int, int] | None = None,
    attrs: dict | None = None,
) -> Path:
    """A fastMRI file: multicoil ``(N, C, H, W)`` or single-coil ``(N, H, W)`` k-space."""
    num_slices, height, width = kspace.shape[0], kspace.shape[-2], kspace.shape[-1]
    coils = kspace.shape[1] if kspace.ndim == 4 else 1
    lim_max, lim_center = lim if lim is not None else (width - 1, width // 2)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace.astype(np.complex64))
        if target is not None:
            handle.create_dataset("reconstruction_rss", data=target.astype(np.float32))
            handle.attrs["max"] = float(target.max())
            handle.attrs["norm"] = float(np.linalg.norm(target))
        if mask is not None:
            handle.create_dataset("mask", data=mask.astype(bool))
        handle.create_dataset(
            "ismrmrd_header",
            data=fastmri_header(coils, (height, width), recon_size, lim_max, lim_center, num_slices),
        )
        handle.attrs["acquisition"] = "CORPD_FBK"
        handle.attrs["patient_id"] = "abc123"
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
    return path


def _matlab_class(array: np.ndarray) -> tuple[bytes, np.ndarray]:
    if array.dtype == bool:
        return b"logical", array.astype(np.uint8)
    if array.dtype in (np.float32, np.complex64):
        return b"single", array
    if array.dtype in (np.float64, np.complex128):
        return b"double", array
    raise TypeError(array.dtype)


def write_mat73(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A MATLAB v7.3 MAT-file with MATLAB's layout, written with h5py alone.

    ``variables`` are given in MATLAB axis order (e.g. ``(kx, ky, kc, kz, t)``).
    """
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as handle:
        for name, value in variables.items():
            matlab_class, data = _matlab_class(np.asarray(value))
            data = np.ascontiguousarray(data.transpose())  # column-major: axes reversed in HDF5
            if np.iscomplexobj(data):
                part = data.real.dtype
                compound = np.empty(data.shape, dtype=[("real", part), ("imag", part)])
                compound["real"], compound["imag"] = data.real, data.imag
                data = compound
            dataset = handle.create_dataset(name, data=data)
            dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
            if matlab_class == b"logical":
                dataset.attrs["MATLAB_int_decode"] = np.int32(1)
    header = MATLAB_HEADER_TEXT.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with path.open("r+b") as raw:
        raw.write(header)
    return path


def complex_random(shape: tuple[int, ...], seed: int, dtype: type = np.complex64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
