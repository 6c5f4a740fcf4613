"""Reconstruct every file of a folder, on one process or sharded over the ranks of ``torchrun``.

Built on :func:`fastrecon.reconstruct_file.reconstruct_file`: whatever one file can be, a folder can
hold. The unit of work is the file (a large file is never split between ranks).

* Inputs: files ending in ``.h5`` or ``.mat`` under the input folder, recursively, in sorted order;
  hidden files and folders (names starting with ``.``, which includes fastrecon's temporary files),
  CMRxRecon mask files (``*_mask*.mat``, ``mask*.mat``) and anything inside the output folder are
  skipped, so an output folder inside the input folder is never read as input (one that already holds
  data files is refused). The output folder may not be the input folder itself, and a data file
  (k-space) where an output would go is never skipped as done nor replaced.
* Outputs: ``OUT/<relative path>`` with the input's stem (``scan.mrd.h5`` -> ``scan``) and the format's
  suffix (``.h5``, ``.nii.gz``, ``.mrd.h5``, or a DICOM folder without suffix), each written atomically.
* Resume: an output that exists is skipped (a rerun after a crash or preemption does only the rest;
  atomic writes mean an existing output is complete); ``overwrite`` redoes every file.
* Sharding: rank 0 lists the folder and broadcasts the plan; files still to do are dealt to ranks by
  size, largest first, each to the rank with the fewest bytes so far (ties: lowest rank). The plan
  depends only on the listing, so it is deterministic.
* One bad file is recorded with its reason and the run goes on; the summary (printed by rank 0 and
  written to ``OUT/reconstruct-summary.json``) lists files done / skipped / failed, slices, and slices
  per second per rank.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastrecon._distributed import DistInfo, all_gather, broadcast, distributed, env_int
from fastrecon._files import atomic_write
from fastrecon.data.dataset import _is_mask_file
from fastrecon.data.outputs import FORMATS, suffix_for
from fastrecon.errors import InputError, OutputExistsError

INPUT_SUFFIXES = (".h5", ".mat")
SUMMARY_NAME = "reconstruct-summary.json"


@dataclass(frozen=True)
class Job:
    """One input file and its output."""

    source: str
    out: str
    relative: str
    size: int


@dataclass
class Plan:
    """What a run does: the jobs still to do and the number already done (skipped)."""

    root: str
    out: str
    format: str
    todo: list[Job]
    skipped: int
    total: int


@dataclass
class RankSummary:
    """What one rank did."""

    rank: int
    host: str
    device: str
    model: str = ""
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    slices: int = 0
    seconds: float = 0.0

    @property
    def slices_per_s(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0


def output_path(out: Path, relative: Path, format: str) -> Path:
    """``out/relative`` with the input's suffix replaced by the format's (a DICOM series: a folder). An
    MRD input's double suffix ``.mrd.h5`` goes whole: ``scan.mrd.h5`` gives ``scan.h5`` (not ``scan.mrd.h5``,
    a name that says MRD images) or ``scan.mrd.h5`` with ``--format mrd``."""
    stem = relative.stem
    if relative.name.lower().endswith(".mrd.h5"):
        stem = relative.name[: -len(".mrd.h5")]
    return out / relative.parent / (stem + suffix_for(format))


def _is_done(path: Path, format: str) -> bool:
    """An output counts as done when it is what the format writes: a file, or (DICOM) a folder holding
    ``.dcm`` files and nothing else (a folder that merely has the name, e.g. a user's, is not)."""
    if format != "dicom":
        return path.is_file()
    if path.is_symlink() or not path.is_dir():
        return False
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]  # a viewer's .DS_Store is no matter
    return bool(entries) and all(e.is_file() and e.suffix == ".dcm" for e in entries)


def check_folders(root: str | Path, out: str | Path, format: str | None) -> tuple[Path, Path, str]:
    """Refuse, before any work, a missing input folder, an output that is the input folder or an
    existing file; returns ``(root, out, format)``."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    fmt = format or "h5"
    if fmt not in FORMATS:
        raise InputError(f"output format {fmt!r} is unknown; expected one of {', '.join(FORMATS)}.")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(
            f"--out {str(out)!r} is a file; reconstructing a folder writes into an output folder."
        )
    if out.resolve() == root.resolve():
        raise OutputExistsError(
            f"--out {str(out)!r} is the input folder; outputs would mix with (and could replace) the inputs. "
            "Give another folder (one inside the input folder is fine: it is not read as input)."
        )
    return root, out, fmt


def find_inputs(root: Path, out: Path) -> list[Path]:
    """Input files under ``root`` (sorted by relative path), without hidden ones and without ``out``'s."""
    out_resolved = out.resolve()
    # Only an output folder inside the input folder is left out (one holding the input folder is not).
    out_inside = out_resolved.is_relative_to(root.resolve())
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in INPUT_SUFFIXES or not path.is_file() or _is_mask_file(path):
            continue
        if out_inside and path.resolve().is_relative_to(out_resolved):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def holds_raw_data(path: Path) -> bool:
    """True when ``path`` is a data file (what a reconstruction is made from), never a reconstruction: a
    ``.mat`` file, an HDF5 file with a ``kspace`` dataset (fastMRI) or MRD raw data. An unreadable file
    is not (it is no one's data, and no complete output either)."""
    if path.suffix.lower() == ".mat":
        return True
    if path.suffix.lower() != ".h5" or not path.is_file():
        return False
    import h5py

    from fastrecon.data.mrd import is_mrd_file

    try:
        with h5py.File(path, "r") as handle:
            if "kspace" in handle:
                return True
    except (OSError, ValueError):
        return False
    return is_mrd_file(path)


def _refuse_data_in_output(root: Path, out: Path) -> None:
    """An output folder inside the input folder is not read as input: refuse one that already holds data
    files (they would be skipped silently, or taken for finished outputs)."""
    if not out.is_dir() or not out.resolve().is_relative_to(root.resolve()):
        return
    for path in sorted(out.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(out).parts):
            continue
        if path.suffix.lower() in INPUT_SUFFIXES and not _is_mask_file(path) and holds_raw_data(path):
            raise OutputExistsError(
                f"the output folder {str(out)!r} is inside the input folder and holds the data file {str(path)!r}, "
                "which would not be reconstructed (the output folder is not read as input) and could be taken for "
                "an output. Give an output folder that holds no data files."
            )


def plan_folder(root: Path, out: Path, format: str, overwrite: bool) -> Plan:
    """List the inputs, map each to its output, refuse collisions, and split done from to-do."""
    _refuse_data_in_output(root, out)
    inputs = find_inputs(root, out)
    if not inputs:
        raise InputError(
            f"input folder {str(root)!r} holds no {' or '.join(INPUT_SUFFIXES)} files (hidden files are skipped)."
        )
    by_output: dict[Path, Path] = {}
    input_set = {p.resolve() for p in inputs}
    jobs, skipped = [], 0
    for source in inputs:
        relative = source.relative_to(root)
        target = output_path(out, relative, format)
        if target in by_output:
            raise InputError(
                f"{str(by_output[target])!r} and {str(source)!r} would both be written to {str(target)!r}; "
                "rename one of them."
            )
        by_output[target] = source
        if target.resolve() in input_set:
            raise OutputExistsError(
                f"the output for {str(source)!r} would be {str(target)!r}, which is an input; refusing to write over "
                "an input. Give another output folder."
            )
        if holds_raw_data(target):
            raise OutputExistsError(
                f"the output for {str(source)!r} would be {str(target)!r}, which holds raw data (k-space), not a "
                "reconstruction; refusing to skip or replace it. Give another output folder."
            )
        if not overwrite and _is_done(target, format):
            skipped += 1
            continue
        jobs.append(Job(str(source), str(target), relative.as_posix(), source.stat().st_size))
    _refuse_nested_outputs(by_output)
    return Plan(str(root), str(out), format, jobs, skipped, len(inputs))


def _refuse_nested_outputs(by_output: dict[Path, Path]) -> None:
    """Refuse an output that would lie inside another one: ``a.h5`` beside a folder ``a/`` gives, in
    DICOM, a series folder ``OUT/a`` that would also hold ``a/x.h5``'s series ``OUT/a/x``."""
    targets = set(by_output)
    for target, source in by_output.items():
        for parent in target.parents:
            if parent in targets:
                raise InputError(
                    f"the output of {str(source)!r}, {str(target)!r}, would lie inside the output of "
                    f"{str(by_output[parent])!r}, {str(parent)!r}; rename one of them (or choose another --format)."
                )


def shard(jobs: list[Job], world: int) -> list[list[Job]]:
    """Deal jobs to ``world`` ranks: largest first to the least loaded rank (bytes; ties: lowest rank).
    Each shard comes back in relative-path order."""
    if world < 1:
        raise InputError(f"world size must be >= 1, got {world}.")
    loads = [0] * world
    shards: list[list[Job]] = [[] for _ in range(world)]
    for job in sorted(jobs, key=lambda j: (-j.size, j.relative)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        shards[rank].append(job)
        loads[rank] += job.size
    return [sorted(s, key=lambda j: j.relative) for s in shards]


class _CountingReconstructor:
    """A reconstructor that counts the slices it returns (for the summary); everything else passes through."""

    def __init__(self, recon: Any) -> None:
        self._recon = recon
        self.slices = 0

    def reconstruct(self, kspace: Any, mask: Any = None, **kwargs: Any) -> Any:
        image = self._recon.reconstruct(kspace, mask, **kwargs)
        self.slices += int(image.shape[0]) if image.ndim == 3 else 1
        return image

    __call__ = reconstruct

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recon, name)


def _remove_stale_temps(target: Path) -> None:
    """Temporary files (or folders) of ``target`` left by a killed run: ``.<name>.<hex>.tmp*``, and a
    replaced DICOM series not yet removed, ``.<name>.<hex>.old``."""
    if not target.parent.is_dir():
        return
    import glob
    import shutil

    # The random part is exactly 12 hex digits (_files): ".scan.*.tmp" would also match the temporary of
    # "scan.1", which another rank may be writing right now.
    name, token = glob.escape(target.name), "[0-9a-f]" * 12
    stale_paths = [*target.parent.glob(f".{name}.{token}.tmp*"), *target.parent.glob(f".{name}.{token}.old")]
    for stale in stale_paths:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def run_shard(
    recon: Any,
    jobs: list[Job],
    *,
    rank: int = 0,
    world: int = 1,
    device: str = "",
    overwrite: bool = False,
    format: str = "h5",
    progress: bool | None = None,
    position: int | None = None,
    **options: Any,
) -> RankSummary:
    """Reconstruct this rank's jobs; failures are recorded, not raised. ``options`` go to
    :func:`~fastrecon.reconstruct_file.reconstruct_file` (acceleration, center_fraction, mask_type, key)."""
    from tqdm import tqdm

    from fastrecon.reconstruct_file import reconstruct_file

    model = str(getattr(getattr(recon, "config", None), "name", "")) if recon is not None else ""
    summary = RankSummary(rank=rank, host=socket.gethostname(), device=device, model=model)
    counting = _CountingReconstructor(recon)
    start = time.perf_counter()
    bar = tqdm(
        jobs,
        desc=f"rank {rank}/{world}" if world > 1 else "reconstruct",
        unit="file",
        position=position,
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    for job in bar:
        target = Path(job.out)
        try:
            _remove_stale_temps(target)
            reconstruct_file(counting, job.source, target, overwrite=overwrite, format=format, **options)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run; the reason is reported
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            summary.failed.append((job.relative, reason))
        else:
            summary.done += 1
        summary.slices = counting.slices
        bar.set_postfix(slices=summary.slices, failed=len(summary.failed))
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


class _OverallProgress:
    """Rank 0's bar over every rank's files, when there are several ranks and progress is shown: a
    thread looks every few seconds which outputs have been (re)written since the start (the ranks
    share the output folder; an output counts when its inode or modification time changed)."""

    def __init__(self, jobs: list[Job], info: DistInfo, progress: bool | None, interval: float = 3.0) -> None:
        import sys
        import threading

        self._thread: threading.Thread | None = None
        shown = progress if progress is not None else sys.stderr.isatty()
        if info.rank != 0 or info.world == 1 or not shown or not jobs:
            return
        from tqdm import tqdm

        self._pending = {Path(job.out): self._stamp(Path(job.out)) for job in jobs}
        self._bar = tqdm(
            total=len(jobs),
            desc="all ranks",
            unit="file",
            position=env_int("LOCAL_WORLD_SIZE", info.world),
            dynamic_ncols=True,
        )
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._poll, name="fastrecon-overall-progress", daemon=True)
        self._thread.start()

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns)

    def _poll(self) -> None:
        while True:
            written = [p for p, before in self._pending.items() if (now := self._stamp(p)) and now != before]
            for path in written:
                del self._pending[path]
            if written:
                self._bar.update(len(written))
            if not self._pending or self._interval == 0.0 or self._stop.wait(self._interval):
                return

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._stop.clear()
            self._interval = 0.0
            self._poll()  # the last files
            self._bar.close()


# --- the command -------------------------------------------------------------------------------------


def summary_dict(plan: Plan, summaries: list[RankSummary]) -> dict[str, Any]:
    failures = [
        {"file": file, "rank": s.rank, "reason": reason} for s in summaries for file, reason in s.failed
    ]
    return {
        "input": plan.root,
        "output": plan.out,
        "format": plan.format,
        "model": next((s.model for s in summaries if s.model), ""),
        "world_size": len(summaries),
        "files": plan.total,
        "done": sum(s.done for s in summaries),
        "skipped": plan.skipped,
        "failed": len(failures),
        "slices": sum(s.slices for s in summaries),
        "seconds": max((s.seconds for s in summaries), default=0.0),
        "ranks": [{**asdict(s), "failed": len(s.failed), "slices_per_s": s.slices_per_s} for s in summaries],
        "failures": failures,
    }


def format_summary(report: dict[str, Any]) -> str:
    lines = [
        f"{report['files']} files: {report['done']} done, {report['skipped']} skipped (already done), "
        f"{report['failed']} failed; {report['slices']} slices in {report['seconds']:.1f} s "
        f"on {report['world_size']} rank(s)"
    ]
    for r in report["ranks"]:
        lines.append(
            f"  rank {r['rank']} ({r['host']}, {r['device'] or 'default device'}): {r['done']} done, "
            f"{r['failed']} failed, {r['slices']} slices, {r['slices_per_s']:.2f} slices/s"
        )
    for failure in report["failures"]:
        lines.append(f"  FAILED {failure['file']} (rank {failure['rank']}): {failure['reason']}")
    return "\n".join(lines)


def reconstruct_folder(
    load: Callable[[str | None], Any],
    root: str | Path,
    out: str | Path,
    *,
    format: str | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    print_fn: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """Reconstruct every input file under ``root`` into ``out`` (see the module docstring), sharded over
    the ranks of ``torchrun`` when ``WORLD_SIZE`` > 1. ``load(device)`` returns the reconstructor of a
    rank. Returns the summary (the same on every rank); rank 0 prints it and writes it to
    ``out/reconstruct-summary.json``. Failures are in the summary, not raised; folder problems (missing
    input folder, ``out`` is the input folder, two inputs with one output name) are raised before work.
    """
    root, out, fmt = check_folders(root, out, format)
    with distributed(device) as info:
        plan: Plan | str
        if info.rank == 0:
            try:
                plan = plan_folder(root, out, fmt, overwrite)
            except (InputError, OutputExistsError) as exc:
                plan = f"{type(exc).__name__}:{exc}"
        else:
            plan = ""
        plan = broadcast(plan, info)
        if isinstance(plan, str):  # rank 0 refused the folder: every rank raises the same error
            kind, _, message = plan.partition(":")
            raise (OutputExistsError if kind == "OutputExistsError" else InputError)(message)
        mine = shard(plan.todo, info.world)[info.rank]
        if info.rank == 0:
            print_fn(
                f"{plan.total} files in {root}: {len(plan.todo)} to reconstruct on {info.world} rank(s), "
                f"{plan.skipped} already done (skipped; --overwrite redoes them)"
            )
        overall = _OverallProgress(plan.todo, info, progress)
        # A rank with nothing to do (all done, or more ranks than files) does not load the model.
        recon = load(info.device) if mine else None
        summary = run_shard(
            recon,
            mine,
            rank=info.rank,
            world=info.world,
            device=str(getattr(recon, "device", info.device or "")),
            overwrite=overwrite,
            format=fmt,
            progress=progress,
            position=info.local_rank if info.world > 1 else None,
            **options,
        )
        summaries = all_gather(summary, info)
        overall.close()
    report = summary_dict(plan, summaries)
    if info.rank == 0:
        print_fn(format_summary(report))
        target = out / SUMMARY_NAME
        with atomic_write(target, overwrite=True) as temp:
            temp.write_text(json.dumps(report, indent=2) + "\n")
        print_fn(f"wrote {target}")
    return report
