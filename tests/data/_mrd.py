"""Simulated MRD raw data for tests: acquisitions with noise scans, calibration lines, reverse readouts
and readout oversampling, from known multicoil k-space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ismrmrd
import numpy as np
import torch

from fastrecon.data.mrd import pad_readout
from fastrecon.data.mrd_header import build_header, header_xml
from fastrecon.data.simulate import shepp_logan_image, simulate_multicoil


@dataclass
class RawCase:
    """Known k-space and the acquisitions that carry it.

    Attributes:
        kspace: ``(N, C, H, W)`` complex64 source (fully sampled; acquisitions carry ``kspace * mask``).
        mask: ``(W,)`` bool imaging lines (ACS lines flagged calibration-and-imaging included).
        calibration_columns: columns sent as calibration-only lines (not imaging).
        header: the ismrmrdHeader; acquisitions: in stream order.
        left: the k-space column of ``kspace_encode_step_1 = 0`` (encoding centre offset).
    """

    kspace: np.ndarray
    mask: np.ndarray
    calibration_columns: list[int]
    header: Any
    acquisitions: list[Any]
    left: int


def simulated_kspace(slices: int = 2, coils: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
    image = shepp_logan_image((size, size)).to(torch.complex64)
    images = torch.stack([image * (1.0 + 0.25 * n) for n in range(slices)])
    kspace, _ = simulate_multicoil(images, coils, snr_db=40, seed=seed)
    return kspace.numpy()


def column_mask(width: int, accel: int = 4, acs: int = 12, left: int = 0) -> np.ndarray:
    mask = np.zeros(width, bool)
    mask[left::accel] = True
    start = (width - acs + 1) // 2
    mask[start : start + acs] = True
    return mask


def raw_case(
    slices: int = 2,
    coils: int = 4,
    size: int = 64,
    *,
    oversampling: int = 2,
    left: int = 4,
    noise_scans: int = 2,
    seed: int = 0,
) -> RawCase:
    """MRD acquisitions of ``slices`` simulated slices, ``size`` x ``size``, x4 + 12 ACS lines.

    Readouts are oversampled ``oversampling`` times (header: encodedSpace x = oversampling * size,
    reconSpace x = size); every other line is sent reversed (ACQ_IS_REVERSE); the encoding centre is
    ``size // 2 - left`` so column = e1 + left; noise scans come first; three columns outside the
    imaging mask are sent as calibration-only lines; ACS lines are flagged calibration-and-imaging.
    """
    kspace = simulated_kspace(slices, coils, size, seed)
    width = size
    mask = column_mask(width, left=left)
    mask[:left] = False
    acs = np.zeros(width, bool)
    acs[(width - 12 + 1) // 2 : (width - 12 + 1) // 2 + 12] = True
    calibration_columns = [c for c in range(width // 2 - 9, width // 2 + 9) if not mask[c]][:3]
    enc_x = size * oversampling
    header = build_header(
        encoded_size=(enc_x, width),
        recon_size=(size, width),
        e1_limits=(0, width - 1 - left, width // 2 - left),
        slices=slices,
        num_coils=coils,
    )
    rng = np.random.default_rng(seed + 7)
    acquisitions = []

    def acquisition(data: np.ndarray, column: int, n: int, *flags: int) -> Any:
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
        acq.idx.kspace_encode_step_1 = column - left
        acq.idx.slice = n
        acq.center_sample = enc_x // 2
        acq.position = (0.0, 0.0, 5.0 * n)
        acq.read_dir = (1.0, 0.0, 0.0)
        acq.phase_dir = (0.0, 1.0, 0.0)
        acq.slice_dir = (0.0, 0.0, 1.0)
        acq.patient_table_position = (0.0, 0.0, -100.0)
        for flag in flags:
            acq.set_flag(flag)
        return acq

    for _ in range(noise_scans):
        noise = (rng.standard_normal((coils, enc_x)) + 1j * rng.standard_normal((coils, enc_x))) * 1e3
        acquisitions.append(acquisition(noise, left, 0, ismrmrd.ACQ_IS_NOISE_MEASUREMENT))
    for n in range(slices):
        for column in calibration_columns:
            line = pad_readout(kspace[n, :, :, column], enc_x)
            acquisitions.append(acquisition(line, column, n, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION))
        columns = np.flatnonzero(mask)
        for i, column in enumerate(columns):
            line = pad_readout(kspace[n, :, :, column], enc_x)
            flags = []
            if i % 2:
                line = line[:, ::-1]
                flags.append(ismrmrd.ACQ_IS_REVERSE)
            if acs[column]:
                flags.append(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            if i == len(columns) - 1:
                flags.append(ismrmrd.ACQ_LAST_IN_SLICE)
            acquisitions.append(acquisition(line, int(column), n, *flags))
    return RawCase(kspace, mask, calibration_columns, header, acquisitions, left)


def write_raw(path: Path, header: Any, acquisitions: list[Any]) -> Path:
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dataset:
        dataset.write_xml_header(header_xml(header).encode("utf-8"))
        for acq in acquisitions:
            dataset.append_acquisition(acq)
    return path
