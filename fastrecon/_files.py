"""Writing output files safely: never over an input, never half-written, never an old file lost.

Every file fastrecon writes (reconstructions, checkpoints, pictures, reports) goes through
:func:`atomic_write`: the writer fills a temporary file in the target's folder, which is then renamed
onto the target (``os.replace``, atomic on POSIX and Windows). A crash or an exception leaves the old
file, if any, untouched and removes the temporary one. :func:`check_output` refuses, before any work
is done, an output that is one of the inputs (same file, also through symbolic or hard links), a
folder, or an existing file the caller did not agree to replace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fastrecon.errors import OutputExistsError

PathArg = str | os.PathLike[str]


def same_file(a: PathArg, b: PathArg) -> bool:
    """True when ``a`` and ``b`` name the same file: same resolved path, or same inode (hard links)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): it cannot be the other
        return False


def check_output(out: PathArg, *, inputs: Iterable[PathArg] = (), overwrite: bool = False) -> Path:
    """Refuse ``out`` before any work is done; returns it as a Path.

    Raises :class:`~fastrecon.errors.OutputExistsError` when ``out`` is one of ``inputs`` (whatever
    ``overwrite`` says), is a folder, or already exists and ``overwrite`` is false.
    """
    out = Path(out)
    for source in inputs:
        if same_file(out, source):
            raise OutputExistsError(
                f"output {str(out)!r} is the input file {str(source)!r}; refusing to write over an input. "
                "Give another output path."
            )
    if out.is_dir():
        raise OutputExistsError(f"output {str(out)!r} is a folder; expected the path of a file to write.")
    if not overwrite and (out.exists() or out.is_symlink()):
        raise OutputExistsError(
            f"output {str(out)!r} already exists; refusing to replace it. Pass --overwrite (overwrite=True) "
            "to replace it, or give another path."
        )
    return out


@contextlib.contextmanager
def atomic_write(out: PathArg, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` for a writer to fill; on success rename it onto ``out``.

    The temporary name keeps ``out``'s suffix (writers such as matplotlib pick the format from it).
    Parent folders are created. On an exception the temporary file is removed and ``out`` is left as it
    was. With ``overwrite=False`` an ``out`` that appeared meanwhile is not replaced
    (:class:`~fastrecon.errors.OutputExistsError`). Data are flushed to disk before the rename.
    """
    out = Path(out)
    if out.is_dir():
        raise OutputExistsError(f"output {str(out)!r} is a folder; expected the path of a file to write.")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp{out.suffix}")
    try:
        yield temp
        if not temp.is_file():
            raise FileNotFoundError(f"the writer did not create {temp}")
        _fsync(temp)
        if overwrite:
            os.replace(temp, out)
        else:
            _link_new(temp, out)
        _fsync_dir(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


@contextlib.contextmanager
def atomic_folder(
    out: PathArg, *, overwrite: bool = False, check_old: Callable[[Path], object] | None = None
) -> Iterator[Path]:
    """Yield a new temporary folder beside ``out`` for a writer to fill (e.g. a DICOM series); on
    success rename it onto ``out``.

    An existing ``out`` is replaced only with ``overwrite`` (otherwise
    :class:`~fastrecon.errors.OutputExistsError`), after ``check_old(out)`` has accepted it: it is
    renamed aside, the new folder renamed into place, then the old one removed, so ``out`` is always
    the old or the new folder, never a mixture. On an exception the temporary folder is removed and
    ``out`` left as it was. Files are flushed to disk before the rename.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    temp.mkdir()
    try:
        yield temp
        for file in temp.rglob("*"):
            if file.is_file():
                _fsync(file)
        old = None
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise OutputExistsError(
                    f"output {str(out)!r} appeared while it was being written; it was left as it is."
                )
            if check_old is not None:
                check_old(out)
            old = out.with_name(f".{out.name}.{secrets.token_hex(6)}.old")
            os.rename(out, old)
        try:
            os.rename(temp, out)
        except OSError:
            if old is not None:
                with contextlib.suppress(OSError):
                    os.rename(old, out)
            raise
        _fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _link_new(temp: Path, out: Path) -> None:
    """Move ``temp`` to ``out`` unless ``out`` exists (no-clobber, atomic where hard links exist)."""
    try:
        os.link(temp, out)
    except FileExistsError:
        raise OutputExistsError(
            f"output {str(out)!r} appeared while it was being written; it was left as it is."
        ) from None
    except OSError:  # file systems without hard links: check, then rename
        if out.exists() or out.is_symlink():
            raise OutputExistsError(
                f"output {str(out)!r} appeared while it was being written; it was left as it is."
            ) from None
        os.replace(temp, out)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); folders cannot be opened for fsync on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
