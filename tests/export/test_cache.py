"""The on-disk engine cache: stable keys, hits, misses, corrupt or foreign entries, atomic writes.

The cache is format-agnostic, so a ``torch.save``'d dict stands in for an engine here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import fastrecon.export.cache as cache_module
from fastrecon.errors import InputError
from fastrecon.export.cache import EngineCache, EngineKey, default_engine_dir, state_dict_sha256

KEY = EngineKey(
    gpu_name="NVIDIA H200",
    sm=(9, 0),
    tensorrt_version="10.14.1",
    cuda_version="13.0",
    torch_version="2.14.1+cu130",
    torch_tensorrt_version="2.14.0",
    precision="fp16",
    batch=(1, 8, 32),
    img_size=224,
    weights_sha256="ab" * 32,
    architecture="timm:vit_base_patch16_224:blocks=6",
    settings='{"min_block_size":1,"require_full_compilation":true}',
)
# Pinned: a change of the canonical form (field names, JSON layout, manifest format) must be deliberate,
# since it orphans every engine already cached on users' machines.
KEY_DIGEST = "4052beec1a174eb17eb7b0a752affc297f1f2299d0be96336e8df550b0aed490"

# One changed value per field.
CHANGED = {
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "sm": (9, 1),
    "tensorrt_version": "10.13.0",
    "cuda_version": "12.8",
    "torch_version": "2.13.0",
    "torch_tensorrt_version": "2.13.0",
    "precision": "fp32",
    "batch": (1, 8, 64),
    "img_size": 256,
    "weights_sha256": "cd" * 32,
    "architecture": "open_clip:ViT-B-16:blocks=6",
    "settings": '{"disable_tf32":true,"min_block_size":1,"require_full_compilation":true}',
}

ENGINE: dict[str, Any] = {"weights": torch.arange(6.0), "name": "stand-in engine"}


def _write(path: Path) -> None:
    torch.save(ENGINE, path)


class Loader:
    """Counts its calls, so tests can prove an invalid entry is never handed to it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> Any:
        self.calls += 1
        return torch.load(path, weights_only=True)


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_digest_is_stable() -> None:
    copy = EngineKey(**{f.name: getattr(KEY, f.name) for f in dataclasses.fields(KEY)})
    assert copy.digest() == KEY.digest() == KEY_DIGEST


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_digest_changes_with_each_field(field: str) -> None:
    other = dataclasses.replace(KEY, **{field: CHANGED[field]})
    assert other.digest() != KEY.digest()


def test_changed_values_cover_every_field() -> None:
    assert set(CHANGED) == {f.name for f in dataclasses.fields(EngineKey)}


def test_key_round_trips_through_json() -> None:
    assert EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY
    with pytest.raises(InputError, match="fields"):
        EngineKey.from_dict({**KEY.to_dict(), "extra": 1})


def test_state_dict_sha256_is_deterministic_and_sensitive() -> None:
    def build() -> nn.Sequential:
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))

    a, b = build(), build()
    assert state_dict_sha256(a) == state_dict_sha256(b)
    assert len(state_dict_sha256(a)) == 64
    with torch.no_grad():
        b.get_parameter("0.weight")[1, 2] += 1e-6
    assert state_dict_sha256(b) != state_dict_sha256(a)
    # Same bytes under another name, or another dtype, is another model.
    renamed = nn.Sequential(nn.Identity(), *build())
    assert state_dict_sha256(renamed) != state_dict_sha256(a)
    assert state_dict_sha256(build().to(torch.bfloat16)) != state_dict_sha256(a)


def test_miss_on_empty_cache(tmp_path: Path) -> None:
    cache, loader = EngineCache(tmp_path / "engines"), Loader()
    assert cache.load(KEY, loader) is None
    assert loader.calls == 0
    assert cache.last_miss_reason == "no entry"


def test_store_then_hit(tmp_path: Path) -> None:
    cache, loader = EngineCache(tmp_path), Loader()
    path = cache.store(KEY, _write, info={"build_seconds": 1.5})
    assert path == cache.path_for(KEY) == tmp_path / f"{KEY_DIGEST}.ep"
    assert _files(tmp_path) == {f"{KEY_DIGEST}.ep", f"{KEY_DIGEST}.json"}
    loaded = cache.load(KEY, loader)
    assert loader.calls == 1 and cache.last_miss_reason is None
    assert loaded["name"] == ENGINE["name"] and torch.equal(loaded["weights"], ENGINE["weights"])
    manifest = cache.read_manifest(KEY)
    assert manifest is not None
    assert manifest["key"] == KEY.to_dict()
    assert manifest["info"] == {"build_seconds": 1.5}
    assert manifest["engine_bytes"] == path.stat().st_size
    # Another key does not see this entry.
    assert cache.load(dataclasses.replace(KEY, precision="fp32"), loader) is None
    assert loader.calls == 1


def test_changed_engine_bytes_are_rebuilt_not_loaded(tmp_path: Path) -> None:
    cache, loader = EngineCache(tmp_path), Loader()
    path = cache.store(KEY, _write)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="sha256"):
        assert cache.load(KEY, loader) is None
    assert loader.calls == 0
    assert _files(tmp_path) == set()  # the bad entry is gone
    cache.store(KEY, _write)  # the rebuild
    assert cache.load(KEY, loader) is not None and loader.calls == 1


def test_manifest_of_another_key_is_a_miss(tmp_path: Path) -> None:
    cache, loader = EngineCache(tmp_path), Loader()
    other = dataclasses.replace(KEY, gpu_name="NVIDIA A100-SXM4-80GB")
    cache.store(KEY, _write)
    cache.store(other, _write)
    # Put the other key's (self-consistent) manifest beside this key's engine.
    cache.manifest_path(KEY).write_text(cache.manifest_path(other).read_text())
    with pytest.warns(RuntimeWarning, match="another key"):
        assert cache.load(KEY, loader) is None
    assert loader.calls == 0
    assert not cache.path_for(KEY).exists() and not cache.manifest_path(KEY).exists()
    assert cache.load(other, loader) is not None  # the other entry is untouched


@pytest.mark.parametrize("damage", ["delete", "garbage", "empty"])
def test_missing_or_unreadable_manifest_is_a_miss(tmp_path: Path, damage: str) -> None:
    cache, loader = EngineCache(tmp_path), Loader()
    cache.store(KEY, _write)
    manifest = cache.manifest_path(KEY)
    if damage == "delete":
        manifest.unlink()
    else:
        manifest.write_text("{not json" if damage == "garbage" else "")
    with pytest.warns(RuntimeWarning, match="manifest missing"):
        assert cache.load(KEY, loader) is None
    assert loader.calls == 0 and _files(tmp_path) == set()


def test_engine_missing_beside_its_manifest_is_a_miss(tmp_path: Path) -> None:
    cache, loader = EngineCache(tmp_path), Loader()
    cache.store(KEY, _write)
    cache.path_for(KEY).unlink()
    with pytest.warns(RuntimeWarning, match="engine file missing"):
        assert cache.load(KEY, loader) is None
    assert _files(tmp_path) == set()


def test_failing_loader_is_a_miss_and_the_entry_is_deleted(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(KEY, _write)

    def broken(path: Path) -> None:
        raise RuntimeError("deserialisation failed")

    with pytest.warns(RuntimeWarning, match="deserialisation failed"):
        assert cache.load(KEY, broken) is None
    assert _files(tmp_path) == set()


def test_failed_write_leaves_no_files_and_keeps_the_old_entry(tmp_path: Path) -> None:
    cache, loader = EngineCache(tmp_path), Loader()

    def crash(path: Path) -> None:
        path.write_bytes(b"half an engine")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.store(KEY, crash)
    assert _files(tmp_path) == set()

    cache.store(KEY, _write)
    with pytest.raises(OSError, match="disk full"):
        cache.store(KEY, crash)
    assert cache.temp_files() == []
    assert _files(tmp_path) == {f"{KEY_DIGEST}.ep", f"{KEY_DIGEST}.json"}
    assert cache.load(KEY, loader)["name"] == ENGINE["name"]


def test_writer_that_writes_nothing_is_refused(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    with pytest.raises(InputError, match="no data"):
        cache.store(KEY, lambda path: None)
    assert _files(tmp_path) == set()


def test_writes_go_through_a_temp_file_in_the_cache_folder(tmp_path: Path) -> None:
    cache, seen = EngineCache(tmp_path), []

    def writer(path: Path) -> None:
        seen.append(path)
        assert not cache.path_for(KEY).exists()  # nothing under the final name while writing
        _write(path)

    cache.store(KEY, writer)
    (temp,) = seen
    assert temp.parent == tmp_path and temp != cache.path_for(KEY)
    assert not temp.exists() and cache.temp_files() == []


def test_crash_between_the_two_renames_reads_as_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, loader = EngineCache(tmp_path), Loader()
    cache.store(KEY, _write)
    real_replace, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:  # the manifest rename: the process "dies" here
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(cache_module.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        cache.store(KEY, lambda path: torch.save({"name": "new engine"}, path))
    monkeypatch.undo()
    assert cache.temp_files() == []
    # New engine bytes under the old manifest: never loaded.
    with pytest.warns(RuntimeWarning, match="sha256"):
        assert cache.load(KEY, loader) is None
    assert loader.calls == 0


def test_default_root_follows_fastrecon_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTRECON_HOME", str(tmp_path / "home"))
    assert default_engine_dir() == tmp_path / "home" / "engines"
    assert EngineCache().root == tmp_path / "home" / "engines"
    monkeypatch.delenv("FASTRECON_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert EngineCache().root == tmp_path / ".cache" / "fastrecon" / "engines"


def test_bad_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'ep'"):
        EngineCache(tmp_path, suffix="ep")
