"""A checkpoint's embedded config is untrusted: every field is checked before anything is built from it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import fastrecon
from fastrecon.errors import ConfigError, FastreconError, UnknownNameError, close_matches
from fastrecon.registry import _REGISTRY, TIMM_KWARGS, ModelConfig
from fastrecon.weights import CONFIG_KEY
from tests.helpers import tiny_varnet_config, tiny_vit_config

REPO = Path(__file__).resolve().parents[1]


def craft(path: Path, config: Any, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A safetensors file whose metadata carries ``config`` (any JSON value) as its fastrecon config."""
    from safetensors.torch import save_file

    save_file(
        tensors or {"x": torch.zeros(1)}, str(path), metadata={CONFIG_KEY: json.dumps(config), "format": "pt"}
    )
    return path


def mutated(base: str, keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The tiny ViT or VarNet config as a dict, with ``keys`` (a path into it) set to ``value``."""
    data = (tiny_vit_config() if base == "vit" else tiny_varnet_config()).to_dict()
    data = json.loads(json.dumps(data))  # tuples -> lists, as a file holds them
    node = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


def test_every_registered_config_passes_the_checks() -> None:
    for name, config in _REGISTRY.items():
        assert ModelConfig.from_json(config.to_json()) == config, name
        assert config.validated() == config


CRAFTED = [
    ("varnet", ("varnet", "pools"), 100, "varnet.pools"),
    ("varnet", ("num_cascades",), 10**9, "num_cascades"),
    ("varnet", ("varnet", "chans"), 10**6, "varnet.chans"),
    ("varnet", ("varnet",), {"chans": 256, "pools": 6}, "deepest U-Net level"),  # 8192 channels
    ("vit", ("encoder", "img_size"), 1e5, "encoder.img_size"),
    ("vit", ("encoder", "img_size"), 100_000, "encoder.img_size"),
    ("varnet", ("num_cascades",), "12", "num_cascades"),  # a number written as a string
    ("varnet", ("num_cascades",), True, "num_cascades"),
    ("varnet", ("num_cascades",), 2.0, "num_cascades"),
    ("varnet", ("contract", "max_coils"), "64", "contract.max_coils"),
    ("varnet", ("family",), "transformer", "family"),
    ("varnet", ("contract",), [4, "x"], "contract"),
    ("varnet", ("contract",), "x4", "contract"),
    ("varnet", ("contract", "min_coils"), 8, "min_coils"),  # > max_coils of... see below
    ("vit", ("encoder", "timm_kwargs", "checkpoint_path"), "/etc/passwd", "checkpoint_path"),
    (
        "vit",
        ("encoder", "timm_kwargs", "pretrained_cfg_overlay"),
        {"file": "/etc/passwd"},
        "pretrained_cfg_overlay",
    ),
    ("vit", ("encoder", "timm_kwargs"), ["img_size"], "encoder.timm_kwargs"),
    ("vit", ("encoder", "timm_kwargs", "depth"), 10**6, "encoder.timm_kwargs.depth"),
    ("vit", ("encoder", "timm_kwargs", "embed_dim"), 192, "disagrees"),
    ("vit", ("encoder", "arch"), "hf-hub:someone/model", "encoder.arch"),
    ("vit", ("encoder", "arch"), "../../model", "encoder.arch"),
    ("vit", ("encoder", "source"), "torch.hub", "encoder.source"),
    ("vit", ("encoder", "kind"), "resnet", "encoder.kind"),
    ("vit", ("encoder", "embed_dim"), 10**6, "encoder.embed_dim"),
    ("vit", ("encoder", "patch_size"), 256, "encoder.patch_size"),
    ("vit", ("encoder", "num_blocks"), 0, "encoder.num_blocks"),
    ("vit", ("encoder", "std"), [0.2, 0.0, 0.2], "encoder.std[1]"),
    ("vit", ("encoder", "mean"), [0.5, 0.5], "encoder.mean"),
    ("vit", ("encoder",), None, "vit_unrolled"),
    ("vit", ("decoder", "channels"), [10**6, 16, 16, 8], "decoder.channels[0]"),
    ("vit", ("decoder", "skip_layers"), [5, 4, 99], "decoder.skip_layers[2]"),
    ("vit", ("decoder", "percentile"), float("nan"), "decoder.percentile"),
    ("vit", ("decoder", "percentile"), float("inf"), "decoder.percentile"),
    ("varnet", ("sens", "eps"), -1.0, "sens.eps"),
    ("varnet", ("sens", "pools"), 30, "sens.pools"),
    ("varnet", ("weights", "filename"), "../../etc/passwd", "weights.filename"),
    ("varnet", ("weights", "sha256"), "abc", "weights.sha256"),
    ("varnet", ("weights", "bundled"), "yes", "weights.bundled"),
    ("varnet", ("name",), 5, "name"),
    ("varnet", ("name",), "x" * 10_000, "name"),
]


@pytest.mark.parametrize(
    ("base", "keys", "value", "match"), CRAFTED, ids=[f"{c[3]}={c[2]!r:.20}" for c in CRAFTED]
)
def test_crafted_config_is_refused_naming_the_field(
    base: str, keys: tuple[str, ...], value: Any, match: str, tmp_path: Path
) -> None:
    data = mutated(base, keys, value)
    if keys == ("contract", "min_coils"):
        data["contract"]["max_coils"] = 4
    path = craft(tmp_path / "crafted.safetensors", data)
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("]", r"\]")) as info:
        fastrecon.load(path, device="cpu")
    assert isinstance(info.value, FastreconError) and isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert len(str(info.value)) < 1000  # a crafted megabyte string is not echoed back whole


@pytest.mark.parametrize("config", [[1, 2], "clip-x8", 7, None, {"name": "x"}])
def test_config_that_is_not_a_full_object_is_refused(config: Any, tmp_path: Path) -> None:
    path = craft(tmp_path / "crafted.safetensors", config)
    with pytest.raises(ConfigError):
        fastrecon.load(path, device="cpu")


def test_config_json_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "bad-json.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={CONFIG_KEY: "{not json", "format": "pt"})
    with pytest.raises(ConfigError, match="not valid JSON"):
        fastrecon.load(path, device="cpu")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    data = mutated("vit", ("encoder", "future_option"), {"anything": [1, 2]})
    data["future_top_level"] = "x"
    assert ModelConfig.from_dict(data) == tiny_vit_config()


def test_timm_kwargs_injection_never_reaches_timm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``checkpoint_path`` made timm open any file the checkpoint named; nothing may be built now."""
    import timm

    calls: list[tuple[Any, ...]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise AssertionError("timm.create_model must not be called for a refused config")

    monkeypatch.setattr(timm, "create_model", spy)
    secret = tmp_path / "secret.pth"
    secret.write_bytes(b"not for timm")
    data = mutated("vit", ("encoder", "timm_kwargs", "checkpoint_path"), str(secret))
    path = craft(tmp_path / "crafted.safetensors", data)
    with pytest.raises(ConfigError, match="checkpoint_path") as info:
        fastrecon.load(path, device="cpu")
    assert "allowed:" in str(info.value) and "img_size" in str(info.value)
    assert calls == []


def test_timm_kwargs_allow_list_covers_the_registered_configs() -> None:
    used = {key for config in _REGISTRY.values() if config.encoder for key in config.encoder.timm_kwargs}
    assert used and used <= set(TIMM_KWARGS)
    assert not {"checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"} & set(TIMM_KWARGS)


# Run in a fresh interpreter: peak RSS (ru_maxrss) only grows, so it must start low, and the address
# space is capped so that a regression fails this test instead of taking the machine down.
_MEMORY_PROBE = r"""
import json, resource, sys
import torch, fastrecon, timm
from safetensors.torch import save_file
from fastrecon.errors import FastreconError
from fastrecon.weights import CONFIG_KEY
from tests.helpers import tiny_varnet_config, tiny_vit_config

cases = json.loads(sys.argv[1])
folder = sys.argv[2]
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
torch.set_num_threads(1)
fastrecon.load(fastrecon.weights.ZOO_DIR / "demo-x8.safetensors", device="cpu")  # warm up: imports, allocator
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
results = []
for i, data in enumerate(cases):
    path = f"{folder}/case{i}.safetensors"
    save_file({"x": torch.zeros(1)}, path, metadata={CONFIG_KEY: json.dumps(data), "format": "pt"})
    try:
        fastrecon.load(path, device="cpu")
        results.append(["loaded", ""])
    except FastreconError as exc:
        results.append([type(exc).__name__, str(exc)[:300]])
    except BaseException as exc:  # a regression: report it rather than crash
        results.append(["not-fastrecon:" + type(exc).__name__, str(exc)[:300]])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"grew": after - before, "results": results}))
"""


def _oversize_cases() -> list[tuple[dict[str, Any], str]]:
    """(config, expected error): outside the limits (ConfigError), or inside them but far larger than the
    file's tensors (WeightsError from the meta-device shape check; built for real they take > 100 GB)."""
    big_varnet = mutated("varnet", ("num_cascades",), 64)
    big_varnet["varnet"] = {"chans": 256, "pools": 5}  # 4096 channels at the deepest level
    big_vit = mutated("vit", ("num_cascades",), 64)
    big_vit["decoder"]["channels"] = [4096, 4096, 4096, 4096]
    big_vit["encoder"].update(embed_dim=2048, img_size=1024, num_blocks=48)
    big_vit["encoder"]["timm_kwargs"] = {
        "img_size": 1024,
        "embed_dim": 2048,
        "depth": 48,
        "num_heads": 16,
        "num_classes": 0,
    }
    return [
        (mutated("varnet", ("varnet", "pools"), 100), "ConfigError"),
        (mutated("varnet", ("num_cascades",), 10**9), "ConfigError"),
        (mutated("varnet", ("varnet", "chans"), 10**6), "ConfigError"),
        (mutated("vit", ("encoder", "img_size"), 1e5), "ConfigError"),
        (big_varnet, "WeightsError"),
        (big_vit, "WeightsError"),
    ]


def test_oversize_configs_are_refused_without_allocating(tmp_path: Path) -> None:
    cases = _oversize_cases()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, json.dumps([c for c, _ in cases]), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for (_, expected), (kind, message) in zip(cases, report["results"], strict=True):
        assert kind == expected, (kind, message)
        if expected == "WeightsError":
            assert "does not hold the tensors" in message, message
    # Peak resident memory may grow by a few MB of Python objects (64 cascades of meta modules), not by the
    # 100+ GB these configs describe, nor by the 1+ GB the smallest of them would take.
    assert report["grew"] < 200 * 2**20, f"peak RSS grew by {report['grew'] / 2**20:.0f} MiB"


def test_get_config_answers_names_paths_and_wrong_types() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'clip-x8'"):
        fastrecon.get_config("CLIP-X8")
    with pytest.raises(fastrecon.FastreconError, match=r"'missing\.safetensors' does not exist"):
        fastrecon.get_config("missing.safetensors")
    with pytest.raises(fastrecon.FastreconError, match=r"does not exist"):
        fastrecon.load("missing.safetensors")
    for bad in (None, 8, b"clip-x8"):
        with pytest.raises(fastrecon.FastreconError, match="expected a registered name") as info:
            fastrecon.get_config(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)


def test_close_matches_ignores_case() -> None:
    assert "Did you mean 'clip-x8'" in close_matches("CLIP-X8", ["clip-x4", "clip-x8", "varnet-x8"])
    assert close_matches("zzz", ["clip-x8"]).endswith("Available: clip-x8.")


def test_config_dicts_are_not_mutated_by_parsing() -> None:
    data = mutated("vit", ("num_cascades",), 3)
    snapshot = copy.deepcopy(data)
    ModelConfig.from_dict(data)
    assert data == snapshot
