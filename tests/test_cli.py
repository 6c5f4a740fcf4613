"""The command line answers user errors with one line and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import pytest

from fastrecon import cli
from fastrecon.cli import build_parser, main


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastrecon: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def group_h5(tmp_path: Path) -> Path:
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("kspace")
    return path


def test_kspace_that_is_a_group(group_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "reconstruct",
        str(group_h5),
        "--out",
        str(tmp_path / "o.h5"),
        "--model",
        "demo-x8",
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    assert "'kspace' is an HDF5 group" in one_error_line(capsys)


def test_out_is_a_folder(group_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconstruct", str(group_h5), "--out", str(tmp_path), "--model", "demo-x8"]) == 2
    assert "is a folder" in one_error_line(capsys)
    assert (
        main(["reconstruct", str(group_h5), "--out", str(tmp_path), "--model", "demo-x8", "--overwrite"]) == 2
    )
    assert "is a folder" in one_error_line(capsys)


@pytest.mark.parametrize("device", ["tpu", pytest.param("gpu", id="gpu-string"), "", "meta", "cuda:x"])
def test_bad_device(device: str, group_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o.h5")
    assert main(["reconstruct", str(group_h5), "--out", out, "--model", "demo-x8", "--device", device]) == 2
    assert f"--device {device!r}" in one_error_line(capsys)


def test_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o.h5")
    assert main(["reconstruct", str(tmp_path / "missing.h5"), "--out", out, "--model", "demo-x8"]) == 2
    assert "not found" in one_error_line(capsys)
    data = tmp_path / "data.h5"
    data.write_bytes(b"")
    assert (
        main(["reconstruct", str(data), "--out", out, "--model", str(tmp_path / "missing.safetensors")]) == 2
    )
    assert "does not exist" in one_error_line(capsys)
    assert main(["info", "CLIP-X8"]) == 2
    assert "Did you mean 'clip-x8'" in one_error_line(capsys)


def test_train_refuses_an_existing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"a trained model")
    assert main(["train", "--model", "demo-x8", "--data", "simulated", "--out", str(out)]) == 2
    assert "already exists" in one_error_line(capsys) and out.read_bytes() == b"a trained model"
    assert main(["train", "--model", "demo-x8", "--data", "simulated", "--out", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys)
    data = tmp_path / "data"
    data.mkdir()
    (data / "vol.h5").write_bytes(b"input data")
    args = ["train", "--model", "demo-x8", "--data", str(data), "--out", str(data / "vol.h5"), "--overwrite"]
    assert main(args) == 2
    assert "is the input file" in one_error_line(capsys) and (data / "vol.h5").read_bytes() == b"input data"


def test_demo_replaces_only_its_own_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    assert main(["demo", "--out", str(other)]) == 2
    assert "expected a path ending in .png" in one_error_line(capsys)
    fake = tmp_path / "picture.png"
    fake.write_text("not a picture")
    assert main(["demo", "--out", str(fake)]) == 2
    assert "is not a PNG" in one_error_line(capsys) and fake.read_text() == "not a picture"
    assert other.read_text() == "mine"
    demo_help = build_parser()._subparsers._group_actions[0].choices["demo"].format_help()  # type: ignore[union-attr]
    assert "previous PNG there is replaced" in " ".join(demo_help.split())


def test_overwrite_flags_are_documented() -> None:
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in ("reconstruct", "train"):
        assert "--overwrite" in choices[command].format_help()


def test_main_keeps_the_callers_warning_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs with warnings as errors; main() must not switch that off for the commands it runs."""

    def warns(args: object) -> int:
        warnings.warn("probe warning from a command", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "_cmd_list", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="probe warning"):
            main(["list"])


def test_console_entry_point_shows_warnings_once_and_exits_with_the_status() -> None:
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"  # run() must replace this for the command line
        "from fastrecon import cli\n"
        "def warns(args):\n"
        "    warnings.warn('probe warning', UserWarning); return 0\n"
        "cli._cmd_list = warns\n"
        "sys.argv = ['fastrecon', 'list']\n"
        "cli.run()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "UserWarning: probe warning" in result.stderr


def test_max_memory_is_checked_and_reaches_load(
    group_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o.h5")
    args = ["reconstruct", str(group_h5), "--out", out, "--model", "demo-x8", "--device", "cpu"]
    assert main([*args, "--max-memory", "lots"]) == 2
    assert "max_memory is 'lots'" in one_error_line(capsys)
    # A valid size loads the model; the file (kspace is a group) is what is refused then.
    assert main([*args, "--max-memory", "64MiB"]) == 2
    assert "is an array" in one_error_line(capsys)
