"""Folder mode of ``fastrecon reconstruct``: every file once, sharded over ranks, resumable, robust to bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fastrecon import reconstruct_folder as folder_mod
from fastrecon._distributed import DistInfo
from fastrecon.cli import main
from fastrecon.data.simulate import simulate_multicoil
from fastrecon.errors import InputError, OutputExistsError
from fastrecon.reconstruct_folder import Job, find_inputs, plan_folder, shard
from tests.data._files import fastmri_header, write_fastmri_file, write_mat73
from tests.helpers import tiny_varnet_config

MASK = ["--accel", "4", "--center-fraction", "0.125", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VarNet with seeded random weights (milliseconds per slice, unlike the ViT of demo-x8)."""
    from fastrecon.models import build_model
    from fastrecon.weights import save_checkpoint

    torch.manual_seed(0)
    config = tiny_varnet_config()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(build_model(config), config, path)
    return path


@pytest.fixture
def MODEL(checkpoint: Path) -> list[str]:
    return ["--model", str(checkpoint), *MASK]


def _kspace(slices: int, seed: int, size: tuple[int, int] = (32, 24), coils: int = 4) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(slices, *size, generator=gen) + 0.2
    kspace, _ = simulate_multicoil(image, coils, seed=seed)
    return kspace.numpy()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Three good files (two fastMRI .h5 in nested folders, one CMRxRecon .mat), one corrupt .h5, and
    things folder mode must not read: a hidden file, a text file."""
    root = tmp_path / "data"
    (root / "knee" / "a").mkdir(parents=True)
    (root / "cine").mkdir()
    for name, slices, seed in (("knee/a/file1.h5", 1, 1), ("knee/file2.h5", 2, 2)):
        kspace = _kspace(slices, seed)
        write_fastmri_file(root / name, kspace, recon_size=(32, 24))
        with h5py.File(root / name, "r+") as handle:  # header with a field of view: 140/32 x 140/24 x 3 mm
            del handle["ismrmrd_header"]
            handle["ismrmrd_header"] = fastmri_header(4, (32, 24), (32, 24), 23, 12, slices)
    mat = _kspace(2, 3).transpose(2, 3, 1, 0)[..., None]  # (kx, ky, kc, kz, t): 2 slices, 1 frame
    write_mat73(root / "cine" / "sax.mat", {"kspace_full": mat})
    (root / "knee" / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"truncated")
    write_mat73(root / "cine" / "sax_mask.mat", {"mask08": np.ones((24, 32), bool)})  # a mask, not an input
    (root / ".hidden.h5").write_bytes(b"not read")
    (root / "notes.txt").write_text("not an input")
    return root


GOOD = ["cine/sax.h5", "knee/a/file1.h5", "knee/file2.h5"]


def outputs(out: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(out.rglob("*.h5")):
        if path.name.startswith("."):
            continue
        with h5py.File(path, "r") as handle:
            found[path.relative_to(out).as_posix()] = handle["reconstruction"][()]
    return found


def summary(out: Path) -> dict:
    return json.loads((out / "reconstruct-summary.json").read_text())


def test_folder_single_process(
    dataset: Path, MODEL: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL]) == 1  # one file failed
    printed = capsys.readouterr().out
    assert "4 files" in printed and "3 done, 0 skipped" in printed and "1 failed" in printed
    assert "FAILED knee/broken.h5" in printed
    found = outputs(out)
    assert sorted(found) == GOOD
    report = summary(out)
    assert (report["files"], report["done"], report["skipped"], report["failed"]) == (4, 3, 0, 1)
    assert report["slices"] == 5 and report["ranks"][0]["slices_per_s"] > 0
    assert report["failures"][0]["file"] == "knee/broken.h5"
    assert "DataFormatError" in report["failures"][0]["reason"]
    # Each output equals the single-file command on that input.
    for relative in GOOD:
        source = next(dataset.glob(relative.replace(".h5", ".*")))
        single = tmp_path / "single" / relative
        assert main(["reconstruct", str(source), "--out", str(single), *MODEL]) == 0
        with h5py.File(single, "r") as handle:
            np.testing.assert_array_equal(found[relative], handle["reconstruction"][()])
    with h5py.File(out / "knee/a/file1.h5", "r") as handle:  # geometry from the header
        np.testing.assert_allclose(handle.attrs["voxel_size_mm"], [140 / 32, 140 / 24, 3.0])
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_resume_after_a_crash_does_only_the_rest(
    dataset: Path, MODEL: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its first output (simulated: the second file raises KeyboardInterrupt, which
    nothing catches, and leaves a temporary file as a SIGKILL would); the rerun does only the rest."""
    import fastrecon.reconstruct_file as rf

    out = tmp_path / "out"
    real = rf.reconstruct_file
    calls: list[str] = []

    def crashing(recon, path, target, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(Path(path).name)
        if len(calls) == 2:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).with_name(f".{Path(target).name}.0123456789ab.tmp.h5").write_bytes(b"half")
            raise KeyboardInterrupt
        return real(recon, path, target, **kwargs)

    monkeypatch.setattr(rf, "reconstruct_file", crashing)
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL]) == 130
    assert sorted(outputs(out)) == ["cine/sax.h5"]
    first = (out / "cine/sax.h5").stat()
    calls.clear()
    monkeypatch.setattr(
        rf, "reconstruct_file", lambda *a, **k: (calls.append(Path(a[1]).name), real(*a, **k))[1]
    )
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL]) == 1
    assert sorted(calls) == ["broken.h5", "file1.h5", "file2.h5"]  # not sax.mat again
    assert sorted(outputs(out)) == GOOD
    assert (out / "cine/sax.h5").stat().st_mtime_ns == first.st_mtime_ns
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # the killed run's temporary file is gone
    report = summary(out)
    assert (report["done"], report["skipped"], report["failed"]) == (2, 1, 1)
    # A third run: everything done is skipped, only the broken file is tried again.
    calls.clear()
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL]) == 1
    assert calls == ["broken.h5"]


def test_overwrite_redoes_finished_files(dataset: Path, MODEL: list[str], tmp_path: Path) -> None:
    (dataset / "knee" / "broken.h5").unlink()
    out = tmp_path / "out"
    (out / "knee").mkdir(parents=True)
    (out / "knee" / "file2.h5").write_bytes(b"an older result")
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL]) == 0
    assert (out / "knee" / "file2.h5").read_bytes() == b"an older result"  # skipped: treated as done
    assert summary(out)["skipped"] == 1
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL, "--overwrite"]) == 0
    assert sorted(outputs(out)) == GOOD
    report = summary(out)
    assert (report["done"], report["skipped"], report["failed"]) == (3, 0, 0)


def test_out_is_or_is_inside_the_input_folder(
    dataset: Path, MODEL: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset / "knee" / "broken.h5").unlink()
    before = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*"))
    assert main(["reconstruct", str(dataset), "--out", str(dataset), *MODEL]) == 2
    err = capsys.readouterr().err
    assert "is the input folder" in err and err.count("\n") == 1
    assert main(["reconstruct", str(dataset), "--out", str(dataset / "."), *MODEL, "--overwrite"]) == 2
    assert sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*")) == before
    inside = dataset / "recon"
    assert main(["reconstruct", str(dataset), "--out", str(inside), *MODEL]) == 0
    assert sorted(outputs(inside)) == GOOD
    # The rerun does not read the outputs as inputs: the same three files, all skipped.
    assert main(["reconstruct", str(dataset), "--out", str(inside), *MODEL]) == 0
    report = summary(inside)
    assert (report["files"], report["done"], report["skipped"]) == (3, 0, 3)
    assert report["model"] == ""  # nothing to do: the model was not even loaded
    assert not (inside / "recon").exists()


def test_refusals(
    dataset: Path, MODEL: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset / "knee" / "file2.mat").write_bytes(b"")  # same output name as knee/file2.h5
    assert main(["reconstruct", str(dataset), "--out", str(tmp_path / "o"), *MODEL]) == 2
    err = capsys.readouterr().err
    assert "would both be written to" in err and err.count("\n") == 1
    a_file = tmp_path / "file.h5"
    a_file.write_bytes(b"mine")
    assert main(["reconstruct", str(dataset), "--out", str(a_file), *MODEL]) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_bytes() == b"mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reconstruct", str(empty), "--out", str(tmp_path / "o"), *MODEL]) == 2
    assert "holds no .h5 or .mat files" in capsys.readouterr().err


def test_find_inputs_skips_hidden_and_output(dataset: Path) -> None:
    (dataset / ".cache").mkdir()
    (dataset / ".cache" / "x.h5").write_bytes(b"")
    (dataset / "out").mkdir()
    (dataset / "out" / "y.h5").write_bytes(b"")
    found = [p.relative_to(dataset).as_posix() for p in find_inputs(dataset, dataset / "out")]
    assert found == ["cine/sax.mat", "knee/a/file1.h5", "knee/broken.h5", "knee/file2.h5"]


def test_shard_is_deterministic_balanced_and_complete() -> None:
    sizes = [100, 90, 50, 40, 30, 30, 10, 5, 1]
    jobs = [Job(f"in/{i}", f"out/{i}", f"f{i:02d}", size) for i, size in enumerate(sizes)]
    shards = shard(jobs, 3)
    assert shards == shard(list(reversed(jobs)), 3)  # order of the listing does not matter
    assert sorted(j.relative for s in shards for j in s) == sorted(j.relative for j in jobs)
    loads = [sum(j.size for j in s) for s in shards]
    assert max(loads) - min(loads) <= max(sizes) and max(loads) <= 130
    assert all(s == sorted(s, key=lambda j: j.relative) for s in shards)
    assert shard(jobs[:1], 4)[1:] == [[], [], []]  # more ranks than files: the others idle


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fastrecon.cli", "reconstruct", *args,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_torchrun_two_processes_equal_one_process(dataset: Path, MODEL: list[str], tmp_path: Path) -> None:
    """2 gloo ranks on CPU: the same outputs, file by file, as one process; each rank did a share;
    the failure is gathered to rank 0, which alone prints the summary; the exit status says it."""
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks (OMP_NUM_THREADS=1): float32 sums then agree bit for bit
    try:
        assert main(["reconstruct", str(dataset), "--out", str(single), *MODEL]) == 1
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ddp"
    result = _torchrun([str(dataset), "--out", str(out), *MODEL], tmp_path)
    assert result.returncode != 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("files: 3 done") == 1, result.stdout + result.stderr[-3000:]
    expected, found = outputs(single), outputs(out)
    assert sorted(found) == GOOD
    for relative in GOOD:
        np.testing.assert_array_equal(found[relative], expected[relative])
    report = summary(out)
    assert report["world_size"] == 2 and (report["done"], report["failed"]) == (3, 1)
    assert [r["rank"] for r in report["ranks"]] == [0, 1]
    assert all(r["done"] + r["failed"] >= 1 for r in report["ranks"])
    assert report["failures"][0]["file"] == "knee/broken.h5"


def test_summary_names_every_rank() -> None:
    plan = folder_mod.Plan("in", "out", "h5", [], 2, 5)
    ranks = [folder_mod.RankSummary(0, "h", "cpu", "", 2, [("x.h5", "DataFormatError: bad")], 10, 2.0)]
    ranks.append(folder_mod.RankSummary(1, "h", "cpu", "demo-x8", 1, [], 4, 4.0))
    report = folder_mod.summary_dict(plan, ranks)
    assert report["model"] == "demo-x8"
    assert (report["done"], report["failed"], report["skipped"], report["slices"]) == (3, 1, 2, 14)
    assert [r["slices_per_s"] for r in report["ranks"]] == [5.0, 1.0]
    text = folder_mod.format_summary(report)
    assert "rank 1" in text and "FAILED x.h5 (rank 0): DataFormatError: bad" in text


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_folder_in_other_formats(dataset: Path, MODEL: list[str], tmp_path: Path, fmt: str) -> None:
    (dataset / "knee" / "broken.h5").unlink()
    out = tmp_path / "out"
    assert main(["reconstruct", str(dataset), "--out", str(out), "--format", fmt, *MODEL]) == 0
    if fmt == "nifti":
        names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
        assert names == ["cine/sax.nii.gz", "knee/a/file1.nii.gz", "knee/file2.nii.gz"]
    else:
        names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dcm"))
        assert names == ["cine/sax/IM_0001.dcm", "cine/sax/IM_0002.dcm", "knee/a/file1/IM_0001.dcm"] + [
            "knee/file2/IM_0001.dcm",
            "knee/file2/IM_0002.dcm",
        ]
    assert main(["reconstruct", str(dataset), "--out", str(out), "--format", fmt, *MODEL]) == 0
    assert summary(out)["skipped"] == 3


KILL_AFTER_FIRST = """
import os, signal, sys
import fastrecon.reconstruct_file as rf
from fastrecon._files import atomic_write
from fastrecon.cli import main

real, calls = rf.write_images, []
def write_or_die(out, *args, **kwargs):
    calls.append(out)
    if len(calls) == 2:  # the first output is written: die in the middle of the second
        with atomic_write(out) as temp:
            temp.write_bytes(b"half an output")
            os.kill(os.getpid(), signal.SIGKILL)
    return real(out, *args, **kwargs)
rf.write_images = write_or_die
sys.exit(main(sys.argv[1:]))
"""


def test_sigkilled_run_resumes(dataset: Path, MODEL: list[str], tmp_path: Path) -> None:
    """A process killed (SIGKILL, nothing cleans up) while writing its second output: the first output is
    complete, the second only a temporary file; the rerun removes that and does only the other files."""
    (dataset / "knee" / "broken.h5").unlink()
    out = tmp_path / "out"
    command = [sys.executable, "-c", KILL_AFTER_FIRST, "reconstruct", str(dataset), "--out", str(out), *MODEL]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == -9, result.stderr[-3000:]
    assert sorted(outputs(out)) == ["cine/sax.h5"]
    temps = [p.relative_to(out).as_posix() for p in out.rglob("*") if ".tmp" in p.name]
    assert len(temps) == 1 and temps[0].startswith("knee/a/.file1.h5."), temps
    first = (out / "cine" / "sax.h5").stat().st_mtime_ns
    assert main(["reconstruct", str(dataset), "--out", str(out), *MODEL]) == 0
    assert sorted(outputs(out)) == GOOD and (out / "cine" / "sax.h5").stat().st_mtime_ns == first
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    report = summary(out)
    assert (report["done"], report["skipped"], report["failed"]) == (2, 1, 0)


def test_an_output_that_would_be_an_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input folder tmp/r inside the output folder tmp: r/r/x.h5's output tmp/r/x.h5 is the input r/x.h5."""
    root = tmp_path / "r"
    (root / "r").mkdir(parents=True)
    (root / "x.h5").write_bytes(b"input one")
    (root / "r" / "x.h5").write_bytes(b"input two")
    assert [p.relative_to(root).as_posix() for p in find_inputs(root, tmp_path)] == ["r/x.h5", "x.h5"]
    assert main(["reconstruct", str(root), "--out", str(tmp_path), "--model", "demo-x8", "--overwrite"]) == 2
    assert "which is an input" in capsys.readouterr().err
    assert (root / "x.h5").read_bytes() == b"input one"


def test_overall_progress_counts_outputs_written_since_the_start(tmp_path: Path) -> None:
    """Rank 0's "all ranks" bar: an output counts once it is written, an old one (--overwrite) only once
    it has been replaced."""
    jobs = [Job(f"in/{i}", str(tmp_path / f"{i}.h5"), f"{i}.h5", 1) for i in range(3)]
    (tmp_path / "2.h5").write_bytes(b"old")
    info = DistInfo(rank=0, world=2, local_rank=0, device="cpu")
    overall = folder_mod._OverallProgress(jobs, info, progress=True, interval=0.01)
    (tmp_path / "0.h5").write_bytes(b"new")
    replacement = tmp_path / "new.h5"
    replacement.write_bytes(b"new")
    os.replace(replacement, tmp_path / "2.h5")
    overall.close()
    assert overall._bar.n == 2
    assert folder_mod._OverallProgress(jobs, DistInfo(1, 2, 1, "cpu"), True)._thread is None


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "scan[1]"  # glob characters in the name
    (tmp_path / ".scan[1].0123456789ab.tmp").mkdir()  # a DICOM series being written
    (tmp_path / ".scan[1].0123456789ab.tmp" / "IM_0001.dcm").write_bytes(b"")
    (tmp_path / ".scan[1].ba9876543210.old").mkdir()  # a replaced series not yet removed
    keep = [tmp_path / ".scan[2].0123456789ab.tmp", tmp_path / ".notes", tmp_path / "scan[1].h5"]
    keep.append(
        tmp_path / ".scan[1].2.0123456789ab.tmp"
    )  # "scan[1].2"'s, maybe being written by another rank
    for path in keep:
        path.write_bytes(b"keep")
    folder_mod._remove_stale_temps(target)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


def test_torchrun_with_one_file_is_refused(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "one.h5"
    assert (
        main(["reconstruct", str(dataset / "knee" / "file2.h5"), "--out", str(out), "--model", "demo-x8"])
        == 2
    )
    assert "Give a folder" in capsys.readouterr().err and not out.exists()


def test_outputs_that_would_lie_inside_another_output_are_refused(tmp_path: Path) -> None:
    """``a.h5`` beside a folder ``a/``: in DICOM the series ``OUT/a`` would also hold ``a/x.h5``'s series."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub.h5").write_bytes(b"")
    (root / "sub" / "x.h5").write_bytes(b"")
    with pytest.raises(InputError, match="would lie inside the output of"):
        plan_folder(root, tmp_path / "out", "dicom", overwrite=False)
    assert len(plan_folder(root, tmp_path / "out", "h5", overwrite=False).todo) == 2  # files: no nesting


def test_a_dicom_output_is_done_only_when_it_is_a_series(tmp_path: Path) -> None:
    root, out = tmp_path / "data", tmp_path / "out"
    root.mkdir()
    for name in ("empty", "notes", "series"):
        (root / f"{name}.h5").write_bytes(b"")
        (out / name).mkdir(parents=True)
    (out / "notes" / "notes.txt").write_text("a user's folder of the same name")
    (out / "series" / "IM_0001.dcm").write_bytes(b"")
    (out / "series" / ".DS_Store").write_bytes(b"")  # left by a file browser: still a finished series
    plan = plan_folder(root, out, "dicom", overwrite=False)
    assert [job.relative for job in plan.todo] == ["empty.h5", "notes.h5"] and plan.skipped == 1


def _kspace_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_fastmri_file(path, np.ones((1, 2, 4, 4), np.complex64), recon_size=(4, 4))


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_data_file_where_an_output_goes_is_never_skipped_or_replaced(
    tmp_path: Path, overwrite: bool
) -> None:
    """--out pointing at another dataset with the same file names: its k-space is not a finished output
    (skipped) and not an output to replace (--overwrite)."""
    root, other = tmp_path / "val", tmp_path / "train"
    _kspace_file(root / "x.h5")
    data = _kspace_file(other / "x.h5").read_bytes()
    with pytest.raises(OutputExistsError, match="holds raw data"):
        plan_folder(root, other, "h5", overwrite=overwrite)
    assert (other / "x.h5").read_bytes() == data
    (other / "x.h5").unlink()
    with h5py.File(other / "x.h5", "w") as handle:  # a finished output is still skipped
        handle["reconstruction"] = np.zeros((1, 4, 4), np.float32)
    assert plan_folder(root, other, "h5", overwrite=False).skipped == 1


def test_an_output_folder_inside_the_input_that_holds_data_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out data/sub`` where data/sub/x.h5 is k-space: it would be skipped as input and, being the
    output name of data/x.h5, taken for its output (or replaced with --overwrite)."""
    root = tmp_path / "data"
    _kspace_file(root / "x.h5")
    data = _kspace_file(root / "sub" / "x.h5").read_bytes()
    assert (
        main(["reconstruct", str(root), "--out", str(root / "sub"), "--model", "demo-x8", "--overwrite"]) == 2
    )
    err = capsys.readouterr().err
    assert "holds the data file" in err and err.count("\n") == 1
    assert (root / "sub" / "x.h5").read_bytes() == data


def test_folder_of_mrd_files_in_mrd_and_h5(tmp_path: Path) -> None:
    from fastrecon.data.mrd_images import read_mrd_images
    from tests.data._mrd import raw_case, write_raw

    root = tmp_path / "in"
    root.mkdir()
    case = raw_case(slices=1, size=32, noise_scans=0)
    write_raw(root / "scan.mrd.h5", case.header, case.acquisitions)
    write_raw(root / "plain.h5", case.header, case.acquisitions)
    write_fastmri_file(root / "knee.h5", np.ones((1, 4, 32, 32), np.complex64), recon_size=(32, 32))
    model = ["--model", "demo-x8", "--device", "cpu"]
    out = tmp_path / "out"
    assert main(["reconstruct", str(root), "--out", str(out), "--format", "mrd", *model]) == 1
    assert sorted(p.name for p in out.glob("*.h5")) == ["plain.mrd.h5", "scan.mrd.h5"]  # not scan.mrd.mrd.h5
    assert len(read_mrd_images(out / "scan.mrd.h5")) == 1
    [failure] = summary(out)["failures"]
    assert (
        failure["file"] == "knee.h5" and "MRD images are written from MRD raw input only" in failure["reason"]
    )
    assert not (out / "knee.mrd.h5").exists()
    # The default format names an MRD input's reconstruction scan.h5, not scan.mrd.h5 (a name that says MRD images).
    assert main(["reconstruct", str(root), "--out", str(tmp_path / "h5"), *model]) == 0
    assert sorted(p.name for p in (tmp_path / "h5").glob("*.h5")) == ["knee.h5", "plain.h5", "scan.h5"]
    with h5py.File(tmp_path / "h5" / "scan.h5") as handle:
        assert handle["reconstruction"].shape[0] == 1
