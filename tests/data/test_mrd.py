"""MRD raw files: k-space assembly from flagged acquisitions, refusals, reading files, the CLI."""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.cli import main
from fastrecon.data.fastmri import write_fastmri
from fastrecon.data.mrd import KSpaceAssembler, crop_readout, is_mrd_file, pad_readout, read_mrd
from fastrecon.data.mrd_header import build_header
from fastrecon.data.mrd_images import image_array, read_mrd_images
from fastrecon.errors import DataFormatError
from tests.data._mrd import raw_case, write_raw


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    return raw_case()


@pytest.fixture(scope="module")
def demo() -> fastrecon.Reconstructor:
    return fastrecon.load("demo-x8", device="cpu")


def test_pad_and_crop_readout_are_inverse() -> None:
    rng = np.random.default_rng(0)
    lines = (rng.standard_normal((3, 33)) + 1j * rng.standard_normal((3, 33))).astype(np.complex64)
    np.testing.assert_allclose(crop_readout(pad_readout(lines, 66), 33), lines, atol=1e-5)


def test_assembled_kspace_equals_the_source(case) -> None:  # type: ignore[no-untyped-def]
    assembler = KSpaceAssembler(case.header)
    completed = []
    for acq in case.acquisitions:
        completed += assembler.add(acq)
    assert assembler.pending == 0 and assembler.skipped == 2  # the noise scans
    assert [s.key.slice for s in completed] == [0, 1]
    for n, item in enumerate(completed):
        expected = case.kspace[n] * case.mask
        assert item.kspace.shape == expected.shape and item.kspace.dtype == np.complex64
        scale = np.abs(expected).max()
        np.testing.assert_allclose(item.kspace, expected, atol=1e-5 * scale)
        np.testing.assert_array_equal(item.mask, case.mask)  # calibration-only lines are not imaging
        assert item.calibration is not None and item.calibration_mask is not None
        assert list(np.flatnonzero(item.calibration_mask)) == case.calibration_columns
        cal = case.calibration_columns
        np.testing.assert_allclose(item.calibration[:, :, cal], case.kspace[n][:, :, cal], atol=1e-5 * scale)
        assert tuple(item.head.position) == (0.0, 0.0, 5.0 * n)
        assert item.head.idx.kspace_encode_step_1 + case.left == 32  # the centre line's header


def test_flush_completes_slices_without_last_flag(case) -> None:  # type: ignore[no-untyped-def]
    assembler = KSpaceAssembler(case.header)
    for acq in case.acquisitions:
        acq = ismrmrd.Acquisition(acq.getHead(), acq.data.copy())
        acq.clear_flag(ismrmrd.ACQ_LAST_IN_SLICE)
        assert assembler.add(acq) == []
    assert [s.key.slice for s in assembler.flush()] == [0, 1]


def test_read_mrd_file(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    assert is_mrd_file(path)
    volume = read_mrd(path)
    assert volume.kspace.shape == case.kspace.shape
    assert volume.mask.shape == (2, 1, 1, 64)
    np.testing.assert_allclose(volume.kspace, case.kspace * case.mask, atol=1e-5 * np.abs(case.kspace).max())


def test_is_mrd_file_by_content(tmp_path: Path) -> None:
    fastmri = write_fastmri(tmp_path / "knee.h5", np.ones((1, 2, 8, 8), np.complex64))
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert not is_mrd_file(fastmri)
    assert not is_mrd_file(text)
    assert not is_mrd_file(tmp_path / "missing.h5")


def _line(samples: int, channels: int = 4, e1: int = 0, **fields: int) -> ismrmrd.Acquisition:
    acq = ismrmrd.Acquisition.from_array(np.ones((channels, samples), np.complex64))
    acq.idx.kspace_encode_step_1 = e1
    for name, value in fields.items():
        setattr(acq.idx, name, value)
    acq.center_sample = samples // 2
    return acq


def test_acquisitions_that_do_not_fit_are_refused() -> None:
    header = build_header(encoded_size=(64, 32), recon_size=(32, 32))
    with pytest.raises(DataFormatError, match="96 samples .* encodedSpace x = 64"):
        KSpaceAssembler(header).add(_line(96))
    with pytest.raises(DataFormatError, match="kspace_encode_step_1 = 40, column 40 .* 32 lines wide"):
        KSpaceAssembler(header).add(_line(64, e1=40))
    with pytest.raises(DataFormatError, match="kspace_encode_step_2 = 3"):
        KSpaceAssembler(header).add(_line(64, kspace_encode_step_2=3))
    assembler = KSpaceAssembler(header)
    assembler.add(_line(64, channels=4))
    with pytest.raises(DataFormatError, match="has 8 active channels; earlier ones had 4"):
        assembler.add(_line(64, channels=8, e1=1))


def test_partial_echo_is_placed_by_centre_sample() -> None:
    header = build_header(encoded_size=(32, 8), recon_size=(32, 8))
    acq = _line(24, channels=1, e1=4)
    acq.center_sample = 8  # 16 - 8 = sample 8 of the readout is the first one acquired
    acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    (item,) = KSpaceAssembler(header).add(acq)
    line = item.kspace[0, :, 4]
    assert (line[8:32] == 1).all() and (line[:8] == 0).all()


def test_pending_memory_is_bounded() -> None:
    header = build_header(encoded_size=(64, 32), recon_size=(64, 32), slices=4)
    assembler = KSpaceAssembler(header, max_pending_bytes=3 * 4 * 64 * 32 * 8)
    for n in range(3):
        assembler.add(_line(64, slice=n))
    with pytest.raises(DataFormatError, match="incomplete slices"):
        assembler.add(_line(64, slice=3))


def test_cli_reconstructs_mrd_file(case, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    before = raw.read_bytes()
    volume = read_mrd(raw)
    expected = demo.reconstruct(torch.from_numpy(volume.kspace), torch.from_numpy(volume.mask)).numpy()
    assert main(["reconstruct", str(raw), "--out", str(tmp_path / "out.mrd.h5"), "--model", "demo-x8", "--device", "cpu"]) == 0  # fmt: skip
    images = read_mrd_images(tmp_path / "out.mrd.h5")
    assert len(images) == 2
    got = np.stack([image_array(image) for image in images])
    np.testing.assert_array_equal(got, expected)
    assert images[0].meta["FastreconModel"] == "demo-x8"
    # The fastMRI-style .h5 output, from the same file.
    assert main(["reconstruct", str(raw), "--out", str(tmp_path / "out.h5"), "--model", "demo-x8", "--device", "cpu"]) == 0  # fmt: skip
    with h5py.File(tmp_path / "out.h5") as handle:
        np.testing.assert_array_equal(handle["reconstruction"][()], expected)
    assert raw.read_bytes() == before
    # The same k-space given directly to reconstruct(): equal to the assembly's round-off.
    direct = demo.reconstruct(torch.from_numpy(case.kspace * case.mask), torch.from_numpy(case.mask)).numpy()
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-4 * np.abs(direct).max())


def test_cli_refuses_spiral_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = build_header(encoded_size=(64, 32), recon_size=(64, 32), trajectory="spiral")
    raw = write_raw(tmp_path / "spiral.h5", header, [_line(64)])
    assert main(["reconstruct", str(raw), "--out", str(tmp_path / "o.mrd"), "--model", "demo-x8", "--device", "cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-Cartesian trajectory 'spiral'" in err[0]
    assert not (tmp_path / "o.mrd").exists()


def test_cli_accel_draws_inside_the_acquired_lines(case, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fastrecon.physics.masks import create_mask_for_mask_type, seed_from_name

    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    args = ["reconstruct", str(raw), "--out", str(tmp_path / "x.h5"), "--model", "demo-x8", "--device", "cpu"]
    assert main([*args, "--accel", "2", "--center-fraction", "0.2"]) == 0
    volume = read_mrd(raw)
    drawn = create_mask_for_mask_type("equispaced_fraction", [0.2], [2])(64, seed=seed_from_name("raw.h5"))
    mask = torch.from_numpy(volume.mask) & drawn.reshape(1, 1, 1, -1)
    assert 0 < int(mask[0].sum()) < int(volume.mask[0].sum())  # fewer lines than acquired
    expected = demo.reconstruct(torch.from_numpy(volume.kspace), mask).numpy()
    with h5py.File(tmp_path / "x.h5") as handle:
        np.testing.assert_array_equal(handle["reconstruction"][()], expected)
        assert handle.attrs["acceleration"] == 2
        # The drawn centre block (13 lines at 26..38) was not all acquired: no count is passed.
        assert "num_low_frequencies" not in handle.attrs


def test_cli_accel_passes_the_mask_functions_acs_count(case, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fastrecon.physics.masks import create_mask_for_mask_type, seed_from_name

    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    out = tmp_path / "x.h5"
    # 0.1875 x 64 = 12 centre lines at 26..37: exactly the acquired ACS block.
    args = ["reconstruct", str(raw), "--out", str(out), "--model", "demo-x8", "--device", "cpu"]
    assert main([*args, "--accel", "2", "--center-fraction", "0.1875"]) == 0
    volume = read_mrd(raw)
    sampled = create_mask_for_mask_type("equispaced_fraction", [0.1875], [2]).sample(
        64, seed=seed_from_name("raw.h5")
    )
    assert sampled.num_low_frequencies == 12
    mask = torch.from_numpy(volume.mask) & sampled.mask.reshape(1, 1, 1, -1)
    expected = demo.reconstruct(torch.from_numpy(volume.kspace), mask, num_low_frequencies=12).numpy()
    with h5py.File(out) as handle:
        np.testing.assert_array_equal(handle["reconstruction"][()], expected)
        assert handle.attrs["num_low_frequencies"] == 12


def test_cli_mrd_file_to_nifti_keeps_the_acquisition_geometry(case, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import nibabel

    from fastrecon.data.mrd_images import crop_to_recon

    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    volume = read_mrd(raw)
    expected = demo.reconstruct(torch.from_numpy(volume.kspace), torch.from_numpy(volume.mask)).numpy()
    expected = crop_to_recon(expected, volume.encoding)
    out = tmp_path / "x.nii.gz"
    assert main(["reconstruct", str(raw), "--out", str(out), "--model", "demo-x8", "--device", "cpu"]) == 0
    image = nibabel.load(out)
    np.testing.assert_allclose(np.moveaxis(np.asarray(image.dataobj), -1, 0), expected, rtol=1e-6)
    np.testing.assert_allclose(image.header.get_zooms(), (1.0, 1.0, 5.0))  # reconSpace 1 mm, 5 mm slices
    # Slice n's acquisitions sit at z = 5 n mm (LPS = RAS in z): the volume's slices step by +5 mm.
    affine = image.affine
    np.testing.assert_allclose(affine[:3, 2], [0.0, 0.0, 5.0], atol=1e-6)


def test_cli_mrd_dicom_positions_match_the_nifti_affine(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import nibabel
    import pydicom

    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    base = ["reconstruct", str(raw), "--model", "demo-x8", "--device", "cpu", "--out"]
    assert main([*base, str(tmp_path / "x.nii.gz")]) == 0
    assert main([*base, str(tmp_path / "series"), "--format", "dicom"]) == 0
    affine = nibabel.load(tmp_path / "x.nii.gz").affine
    series = sorted(
        (pydicom.dcmread(p) for p in (tmp_path / "series").iterdir()), key=lambda d: int(d.InstanceNumber)
    )
    for n, ds in enumerate(series):  # DICOM pixel (0, 0) of slice n is NIfTI voxel (0, 0, n), LPS vs RAS
        corner = affine @ np.array([0.0, 0.0, n, 1.0])
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], corner[:3] * [-1, -1, 1], atol=1e-4
        )


def test_cli_mrd_cine_phases_are_refused_as_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = raw_case(slices=4, size=32, noise_scans=0)
    for acq in case.acquisitions:  # 2 slice positions x 2 cine phases
        n = acq.idx.slice
        acq.idx.slice, acq.idx.phase = n // 2, n % 2
        acq.position = (0.0, 0.0, 5.0 * (n // 2))
    raw = write_raw(tmp_path / "cine.h5", case.header, case.acquisitions)
    out = tmp_path / "cine.nii.gz"
    assert main(["reconstruct", str(raw), "--out", str(out), "--model", "demo-x8", "--device", "cpu"]) == 2
    assert "not 4 evenly spaced slices" in capsys.readouterr().err
    assert not out.exists()


def test_mrd_images_are_refused_for_a_fastmri_input(
    demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    kspace = np.ones((1, 4, 32, 32), np.complex64)
    write_fastmri(tmp_path / "f.h5", kspace)
    assert main(["reconstruct", str(tmp_path / "f.h5"), "--out", str(tmp_path / "o.mrd.h5"), "--model", "demo-x8"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "MRD images are written from MRD raw input only" in err
    assert not (tmp_path / "o.mrd.h5").exists()


def test_interleaved_slices_come_out_in_slice_order(tmp_path: Path) -> None:
    case = raw_case(slices=3, noise_scans=0)  # slice n is the phantom scaled by 1 + 0.25 n
    per_slice = len(case.acquisitions) // 3
    groups = [case.acquisitions[n * per_slice : (n + 1) * per_slice] for n in range(3)]
    assert all({a.idx.slice for a in group} == {n} for n, group in enumerate(groups))
    raw = write_raw(tmp_path / "interleaved.h5", case.header, [*groups[2], *groups[0], *groups[1]])
    volume = read_mrd(raw)
    assert [s.key.slice for s in volume.slices] == [0, 1, 2]
    assert volume.indices[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(volume.kspace, case.kspace * case.mask, atol=1e-5 * np.abs(case.kspace).max())
    out = tmp_path / "out.h5"
    assert main(["reconstruct", str(raw), "--out", str(out), "--model", "demo-x8", "--device", "cpu"]) == 0
    with h5py.File(out) as handle:
        means = handle["reconstruction"][()].mean(axis=(1, 2))
        assert means[0] < means[1] < means[2]  # rows in slice order, not acquisition order (2, 0, 1)
        assert list(handle.attrs["mrd_index_fields"])[0] == "slice"
        assert handle.attrs["mrd_indices"][:, 0].tolist() == [0, 1, 2]


def test_last_in_slice_ends_every_phase_of_that_slice() -> None:
    """Cine: phases are interleaved inside a slice and only the slice's very last readout is flagged."""
    header = build_header(encoded_size=(16, 8), slices=2, phases=3, num_coils=4)
    assembler = KSpaceAssembler(header)
    completed = []
    for n in (0, 1):
        for e1 in range(8):
            for phase in range(3):
                acq = _line(16, e1=e1, slice=n, phase=phase)
                if e1 == 7 and phase == 2:
                    acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                done = assembler.add(acq)
                assert done == [] or (e1, phase) == (7, 2)
                completed += done
        assert assembler.pending == 0  # nothing of slice n is left waiting
    assert [(s.key.slice, s.key.phase) for s in completed] == [(n, p) for n in (0, 1) for p in range(3)]
    assert all(s.mask.all() for s in completed)


@pytest.mark.parametrize("broken", ["scalar_xml", "foreign_data"])
def test_cli_refuses_a_broken_mrd_layout_with_one_line(
    broken: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastrecon.data.mrd_header import header_xml

    raw = tmp_path / "broken.h5"
    xml = header_xml(build_header(encoded_size=(16, 8), num_coils=2)).encode()
    with h5py.File(raw, "w") as handle:
        group = handle.create_group("dataset")
        if broken == "scalar_xml":  # MRD writers store a 1-element string array
            group["xml"] = xml
            group.create_dataset("data", data=np.zeros(3, dtype=[("head", "i4"), ("data", "f4")]))
        else:
            group.create_dataset("xml", data=np.array([xml], dtype=h5py.special_dtype(vlen=bytes)))
            group.create_dataset("data", data=np.zeros(3, dtype=[("head", "i4"), ("data", "f4")]))
    assert main(["reconstruct", str(raw), "--out", str(tmp_path / "o.h5"), "--model", "demo-x8", "--device", "cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read" in err[0] and "broken.h5" in err[0], err
    assert not (tmp_path / "o.h5").exists()


def test_oversampling_removed_when_the_recon_matrix_is_interpolated(case) -> None:  # type: ignore[no-untyped-def]
    """A scanner that interpolates the image writes reconSpace x = encodedSpace x; the fields of view still say
    the readout is 2x oversampled (Gadgetron removes it by that ratio), so the margins must go."""
    header = build_header(
        encoded_size=(128, 64),
        recon_size=(128, 128),
        fov_mm=(256.0, 128.0, 5.0),
        recon_fov_mm=(128.0, 128.0, 5.0),
        e1_limits=(0, 64 - 1 - case.left, 32 - case.left),
        slices=2,
        num_coils=4,
    )
    assembler = KSpaceAssembler(header)
    completed = []
    for acq in case.acquisitions:
        completed += assembler.add(acq)
    assert [s.kspace.shape for s in completed] == [(4, 64, 64)] * 2
    np.testing.assert_allclose(
        completed[1].kspace, case.kspace[1] * case.mask, atol=1e-5 * np.abs(case.kspace).max()
    )


def test_pending_budget_shared_by_assemblers() -> None:
    from fastrecon.data.mrd import PendingBudget

    header = build_header(encoded_size=(16, 8), slices=4, num_coils=4)
    one_slice = 4 * 16 * 8 * 8
    budget = PendingBudget(3 * one_slice)
    first, second = KSpaceAssembler(header, budget=budget), KSpaceAssembler(header, budget=budget)
    first.add(_line(16, slice=0))
    first.add(_line(16, slice=1))
    second.add(_line(16, slice=0))
    assert budget.used == 3 * one_slice
    with pytest.raises(DataFormatError, match="already holds 0 MiB of incomplete slices for its clients"):
        second.add(_line(16, slice=1))  # each is under its own limit; together they are not
    done = _line(16, e1=1, slice=0)
    done.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    assert (
        len(first.add(done)) == 1 and budget.used == 2 * one_slice
    )  # a completed slice gives its bytes back
    second.add(_line(16, slice=1))
    first.close()  # a stream that ended early gives back what it held
    second.close()
    assert budget.used == 0 and first.pending == 0


def test_cli_passes_acs_count_and_coil_compression_to_mrd_input(
    demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    case = raw_case(slices=1, coils=36, size=32, noise_scans=0)  # more coils than demo-x8's 32
    raw = write_raw(tmp_path / "raw.h5", case.header, case.acquisitions)
    volume = read_mrd(raw)
    kspace, mask = torch.from_numpy(volume.kspace), torch.from_numpy(volume.mask)
    base = ["reconstruct", str(raw), "--model", "demo-x8", "--device", "cpu", "--out"]
    assert main([*base, str(tmp_path / "refused.h5")]) == 2
    assert "--coil-compress" in capsys.readouterr().err and not (tmp_path / "refused.h5").exists()
    out = tmp_path / "x.h5"
    assert main([*base, str(out), "--coil-compress", "--num-low-frequencies", "6"]) == 0
    expected = demo.reconstruct(kspace, mask, num_low_frequencies=6, coil_compress=True).numpy()
    default = demo.reconstruct(kspace, mask, coil_compress=True).numpy()
    with h5py.File(out) as handle:
        written = handle["reconstruction"][()]
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
    assert np.abs(written - default).max() > 1e-3 * float(
        np.abs(default).max()
    )  # the count made a difference
