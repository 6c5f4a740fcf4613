"""On-disk cache of built engines, keyed by everything an engine is tied to (DESIGN.md section 4).

A TensorRT engine only runs on the GPU model, TensorRT and CUDA versions it was built with, and it
embeds the weights: :class:`EngineKey` names all of them, and :meth:`EngineKey.digest` turns the key
into a stable file name. Each entry is two files in the cache folder::

    <digest>.ep     the engine, written by the caller's ``writer`` (format-agnostic)
    <digest>.json   the manifest: the full key and the sha256 of the engine file

An entry is loaded only when its manifest holds exactly the requested key and the engine file's
sha256 matches; anything else (missing or unreadable manifest, another key, changed bytes) is a
miss, and the entry is deleted so that the caller rebuilds it. Writes go to a temporary file in
the same folder and are renamed into place with ``os.replace``, so a crash leaves either the old
entry or no entry, never a half-written engine under the final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from fastrecon.errors import InputError
from fastrecon.weights import fastrecon_home

T = TypeVar("T")

MANIFEST_FORMAT = 1
"""Version of the manifest layout; part of every digest, so a layout change invalidates old entries."""

_TEMP_MARK = ".tmp-"


def default_engine_dir() -> Path:
    """``$FASTRECON_HOME/engines`` (``FASTRECON_HOME`` defaults to ``~/.cache/fastrecon``)."""
    return fastrecon_home() / "engines"


def state_dict_sha256(module: nn.Module) -> str:
    """Hex sha256 over a module's state dict: names, dtypes, shapes and bytes, in sorted-name order.

    Deterministic across runs and devices (tensors are read on the CPU, contiguous); any change of
    a value, dtype, shape or parameter name changes the digest.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        header = f"{name}\0{data.dtype}\0{tuple(tensor.shape)}\0{data.numel() * data.element_size()}\n"
        digest.update(header.encode("utf-8"))
        if data.numel():
            # View as bytes: works for every dtype numpy lacks (bfloat16, float8).
            digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class EngineKey:
    """Everything a built engine depends on. Two engines are interchangeable iff their keys are equal.

    Fields:
        gpu_name: ``torch.cuda.get_device_name`` of the build GPU, e.g. ``"NVIDIA H200"``.
        sm: compute capability ``(major, minor)`` from ``torch.cuda.get_device_capability``.
        tensorrt_version: ``tensorrt.__version__``.
        cuda_version: ``torch.version.cuda``.
        torch_version: ``torch.__version__``.
        torch_tensorrt_version: ``torch_tensorrt.__version__``.
        precision: engine precision name, e.g. ``"fp16"``.
        batch: ``(min, opt, max)`` batch sizes of the engine's input profile.
        img_size: ``S`` of the ``(B, 3, S, S)`` input.
        weights_sha256: :func:`state_dict_sha256` of the encoder.
        architecture: the encoder's architecture (library, arch, blocks, options), since equal
            weights shapes do not pin the graph (e.g. the number of attention heads).
        settings: the compile settings the engine was built with (canonical text), so a change of
            recipe (e.g. which ops autocast keeps in fp32) does not reuse old engines.
    """

    gpu_name: str
    sm: tuple[int, int]
    tensorrt_version: str
    cuda_version: str
    torch_version: str
    torch_tensorrt_version: str
    precision: str
    batch: tuple[int, int, int]
    img_size: int
    weights_sha256: str
    architecture: str = ""
    settings: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineKey:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on missing or unknown fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise InputError(
                f"engine key fields {sorted(data)} do not match the expected fields {sorted(names)}."
            )
        values = dict(data)
        values["sm"] = tuple(values["sm"])
        values["batch"] = tuple(values["batch"])
        return cls(**values)

    def digest(self) -> str:
        """Stable hex sha256 of the key (canonical JSON, sorted keys); used as the file name."""
        payload = {"manifest_format": MANIFEST_FORMAT, **self.to_dict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class EngineCache:
    """A folder of engines keyed by :class:`EngineKey` (format-agnostic: callers pass loader/writer).

    ``root`` defaults to :func:`default_engine_dir`. ``suffix`` is the engine file's extension.
    ``last_miss_reason`` says why the latest :meth:`load` returned ``None`` (``None`` after a hit).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, suffix: str = ".ep") -> None:
        self.root = Path(root).expanduser() if root is not None else default_engine_dir()
        if not suffix.startswith(".") or "/" in suffix or os.sep in suffix:
            raise InputError(f"suffix={suffix!r}: expected a file extension starting with '.', e.g. '.ep'.")
        self.suffix = suffix
        self.last_miss_reason: str | None = None

    def __repr__(self) -> str:
        return f"EngineCache(root={str(self.root)!r})"

    def path_for(self, key: EngineKey) -> Path:
        """Where the engine for ``key`` lives (whether or not it exists)."""
        return self.root / f"{key.digest()}{self.suffix}"

    def manifest_path(self, key: EngineKey) -> Path:
        """The manifest beside :meth:`path_for`."""
        return self.root / f"{key.digest()}.json"

    def read_manifest(self, key: EngineKey) -> dict[str, Any] | None:
        """The manifest for ``key`` as stored, or ``None`` when absent or not valid JSON."""
        try:
            data = json.loads(self.manifest_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def load(self, key: EngineKey, loader: Callable[[Path], T]) -> T | None:
        """``loader(engine_path)`` for a valid entry, else ``None`` (a miss).

        A present but invalid entry (manifest missing, unreadable or for another key; engine bytes
        not matching the manifest's sha256; ``loader`` raising) is deleted, reported with a
        ``RuntimeWarning``, and treated as a miss: it is never handed to ``loader`` unverified.
        """
        engine, manifest_file = self.path_for(key), self.manifest_path(key)
        if not engine.exists() and not manifest_file.exists():
            self.last_miss_reason = "no entry"
            return None
        reason = self._invalid_reason(key, engine)
        if reason is None:
            try:
                result = loader(engine)
            except Exception as exc:  # noqa: BLE001 - a failing load means rebuild, reported below
                reason = f"the loader failed on a verified file ({type(exc).__name__}: {exc})"
            else:
                self.last_miss_reason = None
                return result
        self.last_miss_reason = reason
        warnings.warn(
            f"engine cache entry {engine.name} in {self.root} is invalid ({reason}); deleting it so it is rebuilt.",
            RuntimeWarning,
            stacklevel=2,
        )
        self.remove(key)
        return None

    def _invalid_reason(self, key: EngineKey, engine: Path) -> str | None:
        manifest = self.read_manifest(key)
        if manifest is None:
            return "manifest missing or not valid JSON"
        if manifest.get("key") != key.to_dict():
            return "manifest is for another key"
        if not engine.is_file():
            return "engine file missing"
        actual = _sha256_file(engine)
        if manifest.get("engine_sha256") != actual:
            return f"engine sha256 {actual} does not match the manifest's {manifest.get('engine_sha256')!r}"
        return None

    def store(
        self, key: EngineKey, writer: Callable[[Path], object], *, info: Mapping[str, Any] | None = None
    ) -> Path:
        """Write an entry atomically: ``writer(temp_path)`` writes the engine, then both files are renamed.

        ``info`` (JSON-serialisable) is kept in the manifest for reporting, e.g. build time.
        Returns the engine path. On any failure the temporary files are removed and the error
        propagates; an existing entry for ``key`` is then left as it was.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        digest = key.digest()
        temps: list[Path] = []
        try:
            temp_engine = self._temp_file(digest, self.suffix)
            temps.append(temp_engine)
            writer(temp_engine)
            if not temp_engine.is_file() or temp_engine.stat().st_size == 0:
                raise InputError(
                    f"engine writer produced no data at {temp_engine}; expected the engine file."
                )
            _fsync(temp_engine)
            manifest = {
                "manifest_format": MANIFEST_FORMAT,
                "digest": digest,
                "key": key.to_dict(),
                "engine_file": self.path_for(key).name,
                "engine_sha256": _sha256_file(temp_engine),
                "engine_bytes": temp_engine.stat().st_size,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "info": dict(info or {}),
            }
            temp_manifest = self._temp_file(digest, ".json")
            temps.append(temp_manifest)
            with open(temp_manifest, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            # Engine first, manifest last: between the two renames an old manifest no longer
            # matches the new engine's sha256, so a crash there reads as a miss, never a bad load.
            os.replace(temp_engine, self.path_for(key))
            os.replace(temp_manifest, self.manifest_path(key))
        finally:
            for temp in temps:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
        return self.path_for(key)

    def _temp_file(self, digest: str, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(dir=self.root, prefix=f".{digest[:16]}{_TEMP_MARK}", suffix=suffix)
        os.close(handle)
        return Path(name)

    def remove(self, key: EngineKey) -> None:
        """Delete the entry for ``key`` (both files), if present."""
        for path in (self.manifest_path(key), self.path_for(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def temp_files(self) -> list[Path]:
        """Leftover temporary files in the cache folder (a crashed writer's); normally empty."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if _TEMP_MARK in p.name)
