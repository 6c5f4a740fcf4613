"""The model zoo: one frozen config dataclass per registered name.

A config carries everything needed to rebuild a model without its weights file: architecture,
input contract, encoder source and weights provenance. Checkpoints embed ``config.to_dict()`` as
JSON in their safetensors metadata, so a checkpoint can always be rebuilt on its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from fastrecon import _checks as C
from fastrecon.errors import ConfigError, InputTypeError, UnknownNameError, WeightsError, close_matches

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    """A frozen ViT encoder of which only blocks ``0 .. num_blocks-1`` ever run.

    ``source`` picks the library: ``open_clip`` builds ``arch`` with ``open_clip.create_model``;
    ``timm`` builds ``arch`` with ``timm.create_model`` (``timm_kwargs`` override its defaults).
    ``pretrained`` is the library's own tag for the published weights (needs network once) or
    ``None``; a local file can always be given at build time instead.
    """

    kind: Literal["clip", "dinov2", "biomedclip", "tiny"]
    source: Literal["open_clip", "timm"]
    arch: str
    pretrained: str | None
    embed_dim: int = 768
    patch_size: int = 16
    img_size: int = 224
    num_blocks: int = 6
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    licence: str = ""


@dataclass(frozen=True)
class DecoderConfig:
    """The per-cascade denoiser around the shared encoder (DESIGN.md section 1).

    ``channels`` are the widths of the four upsampling stages (at img_size/8, /4, /2, /1);
    ``skip_layers`` are the encoder blocks whose features join stages 1..3; ``percentile`` scales
    the magnitude image into [0, 1] before the encoder.
    """

    # Wide first stage, where the grid is 28x28 and parameters are cheap in MACs: ~4.63 M trainable
    # parameters per cascade for ViT-B (56.0 M for 12 cascades + sensitivity net; paper: ~56 M).
    channels: tuple[int, int, int, int] = (1280, 320, 160, 64)
    skip_layers: tuple[int, int, int] = (5, 4, 3)
    input_channels: int = 32
    percentile: float = 99.5


@dataclass(frozen=True)
class VarNetConfig:
    """E2E-VarNet's per-cascade NormUnet (fastMRI defaults)."""

    chans: int = 18
    pools: int = 4


@dataclass(frozen=True)
class SensConfig:
    """E2E-VarNet's sensitivity-estimation NormUnet on the ACS lines."""

    chans: int = 8
    pools: int = 4
    eps: float = 1e-12


@dataclass(frozen=True)
class InputContract:
    """What data a model was trained for. Coil counts outside it and too few ACS lines are refused; other
    departures (another acceleration or mask type) run, at the caller's judgement."""

    acceleration: int
    mask_type: str = "cmrxrecon-uniform"  # every R-th phase-encode line + ACS block
    acs_lines: int = 24
    min_acs_lines: int = 2  # fewer cannot feed the sensitivity network
    min_coils: int = 1
    max_coils: int = 64


@dataclass(frozen=True)
class WeightsInfo:
    """Where the model's weights come from. ``sha256`` is checked when set."""

    filename: str
    sha256: str | None = None
    licence: str = "unreleased"
    provenance: str = "not trained yet: train with `fastrecon train` or load with weights=None"
    bundled: bool = False  # shipped inside the package (fastrecon/zoo/)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines one registered model."""

    name: str
    family: Literal["vit_unrolled", "varnet"]
    contract: InputContract
    weights: WeightsInfo
    num_cascades: int = 12
    encoder: EncoderConfig | None = None
    decoder: DecoderConfig | None = None
    varnet: VarNetConfig | None = None
    sens: SensConfig = field(default_factory=SensConfig)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """Parse and validate a config dict (e.g. a checkpoint's embedded JSON).

        Every field is checked for type and range before anything is built from it (see
        :data:`LIMITS`); a bad field raises :class:`~fastrecon.errors.ConfigError` naming it. Fields
        this version does not know are ignored (forward compatibility); encoder keyword arguments
        for timm must be in :data:`TIMM_KWARGS`.
        """
        return _parse_model_config(data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse and validate a config written by :meth:`to_json`; bad JSON or fields raise ConfigError."""
        if not isinstance(text, str) or len(text) > _MAX_CONFIG_CHARS:
            raise ConfigError(
                f"config JSON is {type(text).__name__} of {len(text) if isinstance(text, str) else '?'} characters; "
                f"expected a JSON string of at most {_MAX_CONFIG_CHARS} characters."
            )
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"config is not valid JSON ({exc}).") from None
        return cls.from_dict(data)

    def validated(self) -> ModelConfig:
        """This config after the checks :meth:`from_dict` applies (raises ConfigError when a field is bad)."""
        return ModelConfig.from_dict(self.to_dict())


# --- parsing untrusted configs -------------------------------------------------------------------
# A checkpoint's config decides what gets built, so every field is checked before anything is.
# Upper bounds are generous for real ViT/VarNet variants (ViT-L/g, 64 cascades) and far below what
# would exhaust memory; a file whose tensors do not match the config is refused before building
# anything big (see fastrecon.weights.build_from_checkpoint).

LIMITS: dict[str, tuple[float, float]] = {
    "num_cascades": (1, 64),
    "embed_dim": (1, 2048),
    "patch_size": (1, 64),
    "img_size": (1, 1024),
    "num_blocks": (1, 48),
    "num_heads": (1, 64),
    "decoder_channels": (1, 4096),
    "input_channels": (1, 1024),
    "unet_chans": (1, 256),
    "unet_pools": (1, 8),
    "unet_widest": (1, 4096),  # chans * 2**(pools-1): the deepest U-Net level's width
    "acceleration": (1, 64),
    "acs_lines": (1, 4096),
    "coils": (1, 1024),
    "num_classes": (0, 32768),
    "reg_tokens": (0, 16),
}
"""Inclusive ranges of the numeric config fields checked by :meth:`ModelConfig.from_dict`."""

_MAX_CONFIG_CHARS = 1 << 20
_NAME = (
    r"[A-Za-z0-9][A-Za-z0-9_.+\-]*"  # model names, library architectures, file names: no paths, no "hf-hub:"
)
_FAMILIES = ("vit_unrolled", "varnet")
_ENCODER_KINDS = ("clip", "dinov2", "biomedclip", "tiny")
_ENCODER_SOURCES = ("open_clip", "timm")
_SHA256 = r"[0-9a-f]{64}"


def _limited(key: str) -> Any:
    low, high = LIMITS[key]
    return lambda where, value: C.whole(where, value, int(low), int(high))


def _global_pool(where: str, value: Any) -> str:
    return C.choice(where, value, ("", "avg", "token", "map", "avgmax", "max"))


TIMM_KWARGS: dict[str, Any] = {
    "img_size": _limited("img_size"),
    "patch_size": _limited("patch_size"),
    "embed_dim": _limited("embed_dim"),
    "depth": _limited("num_blocks"),
    "num_heads": _limited("num_heads"),
    "mlp_ratio": lambda where, value: C.real(where, value, 0.0, 16.0, low_open=True),
    "num_classes": _limited("num_classes"),
    "dynamic_img_size": C.flag,
    "class_token": C.flag,
    "reg_tokens": _limited("reg_tokens"),
    "no_embed_class": C.flag,
    "global_pool": _global_pool,
    "init_values": C.optional(lambda where, value: C.real(where, value, 0.0, 10.0, low_open=True)),
    "qkv_bias": C.flag,
}
"""The keyword arguments a config may pass to ``timm.create_model``, each with its check; any other is refused
(``pretrained_cfg``, ``checkpoint_path``... must never come from a file)."""


def _fields(where: str, data: dict[str, Any], kind: type, checks: dict[str, Any]) -> Any:
    """Build dataclass ``kind`` from ``data``: known fields checked, unknown ones ignored, defaults kept."""
    known = {f.name for f in dataclasses.fields(kind)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            continue  # forward compatibility: ignore fields this version does not know
        kwargs[key] = checks[key](f"{where}.{key}" if where else key, value)
    try:
        return kind(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"config section {where or 'top level'!r} is incomplete ({exc}).") from None


def _unet_width(where: str, chans: int, pools: int) -> None:
    widest = chans * 2 ** (pools - 1)
    if widest > LIMITS["unet_widest"][1]:
        raise ConfigError(
            f"config fields {where}.chans={chans} and {where}.pools={pools} give a deepest U-Net level of "
            f"{widest} channels; expected at most {int(LIMITS['unet_widest'][1])}."
        )


def _parse_timm_kwargs(where: str, value: Any) -> dict[str, Any]:
    data = C.section(where, value)
    unknown = sorted(set(data) - set(TIMM_KWARGS))
    if unknown:
        raise ConfigError(
            f"config field {where!r} has keyword arguments {unknown} that fastrecon does not pass to timm; "
            f"allowed: {', '.join(sorted(TIMM_KWARGS))}."
        )
    return {key: TIMM_KWARGS[key](f"{where}.{key}", val) for key, val in data.items()}


def _mean_std(low: float, low_open: bool) -> Any:
    def check(where: str, value: Any) -> tuple[float, ...]:
        return C.fixed_tuple(where, value, 3, lambda w, v: C.real(w, v, low, 1000.0, low_open=low_open))

    return check


def _parse_encoder(where: str, value: Any) -> EncoderConfig:
    data = C.section(where, value)
    encoder: EncoderConfig = _fields(
        where,
        data,
        EncoderConfig,
        {
            "kind": lambda w, v: C.choice(w, v, _ENCODER_KINDS),
            "source": lambda w, v: C.choice(w, v, _ENCODER_SOURCES),
            "arch": lambda w, v: C.text(
                w,
                v,
                max_len=100,
                pattern=_NAME,
                what="a library architecture name (letters, digits, _ . + -)",
            ),
            "pretrained": C.optional(lambda w, v: C.text(w, v, max_len=200)),
            "embed_dim": _limited("embed_dim"),
            "patch_size": _limited("patch_size"),
            "img_size": _limited("img_size"),
            "num_blocks": _limited("num_blocks"),
            "mean": _mean_std(-1000.0, low_open=False),
            "std": _mean_std(0.0, low_open=True),
            "timm_kwargs": _parse_timm_kwargs,
            "licence": lambda w, v: C.text(w, v, max_len=2000),
        },
    )
    if encoder.img_size < encoder.patch_size:
        raise ConfigError(
            f"config field {where}.img_size={encoder.img_size} is smaller than {where}.patch_size="
            f"{encoder.patch_size}; expected at least one patch."
        )
    for key in ("img_size", "patch_size", "embed_dim"):
        given = encoder.timm_kwargs.get(key)
        if given is not None and given != getattr(encoder, key):
            raise ConfigError(
                f"config field {where}.timm_kwargs.{key}={given} disagrees with {where}.{key}="
                f"{getattr(encoder, key)}; expected the same value."
            )
    return encoder


def _parse_decoder(where: str, value: Any, num_blocks: int | None) -> DecoderConfig:
    data = C.section(where, value)
    layers_high = (num_blocks or int(LIMITS["num_blocks"][1])) - 1
    return _fields(  # type: ignore[no-any-return]
        where,
        data,
        DecoderConfig,
        {
            "channels": lambda w, v: C.fixed_tuple(w, v, 4, _limited("decoder_channels")),
            "skip_layers": lambda w, v: C.fixed_tuple(
                w, v, 3, lambda w2, v2: C.whole(w2, v2, 0, layers_high)
            ),
            "input_channels": _limited("input_channels"),
            "percentile": lambda w, v: C.real(w, v, 0.0, 100.0, low_open=True),
        },
    )


def _parse_unet(where: str, value: Any, kind: type) -> Any:
    data = C.section(where, value)
    checks: dict[str, Any] = {"chans": _limited("unet_chans"), "pools": _limited("unet_pools")}
    if kind is SensConfig:
        checks["eps"] = lambda w, v: C.real(w, v, 0.0, 1e-3, low_open=True)
    parsed = _fields(where, data, kind, checks)
    _unet_width(where, parsed.chans, parsed.pools)
    return parsed


def _parse_contract(where: str, value: Any) -> InputContract:
    data = C.section(where, value)
    contract: InputContract = _fields(
        where,
        data,
        InputContract,
        {
            "acceleration": _limited("acceleration"),
            "mask_type": lambda w, v: C.text(w, v, max_len=64, pattern=_NAME, what="a mask type name"),
            "acs_lines": _limited("acs_lines"),
            "min_acs_lines": _limited("acs_lines"),
            "min_coils": _limited("coils"),
            "max_coils": _limited("coils"),
        },
    )
    if contract.min_coils > contract.max_coils:
        raise ConfigError(
            f"config fields {where}.min_coils={contract.min_coils} > {where}.max_coils={contract.max_coils}; "
            "expected min_coils <= max_coils."
        )
    return contract


def _parse_weights_info(where: str, value: Any) -> WeightsInfo:
    data = C.section(where, value)
    return _fields(  # type: ignore[no-any-return]
        where,
        data,
        WeightsInfo,
        {
            "filename": lambda w, v: C.text(
                w, v, max_len=200, pattern=_NAME, what="a bare file name (no folders)"
            ),
            "sha256": C.optional(
                lambda w, v: C.text(w, v, max_len=64, pattern=_SHA256, what="64 lowercase hex digits")
            ),
            "licence": lambda w, v: C.text(w, v, max_len=2000),
            "provenance": lambda w, v: C.text(w, v, max_len=10000),
            "bundled": C.flag,
        },
    )


def _parse_model_config(data: Any) -> ModelConfig:
    data = C.section("(config)", data)
    for key in ("name", "family", "contract", "weights"):
        if key not in data:
            raise ConfigError(f"config has no {key!r} field; expected name, family, contract and weights.")
    family = C.choice("family", data["family"], _FAMILIES)
    encoder = None
    decoder = None
    if data.get("encoder") is not None:
        encoder = _parse_encoder("encoder", data["encoder"])
    if data.get("decoder") is not None:
        decoder = _parse_decoder("decoder", data["decoder"], encoder.num_blocks if encoder else None)
    if family == "vit_unrolled" and (encoder is None or decoder is None):
        raise ConfigError(
            f"config of family 'vit_unrolled' has encoder={shown_or_none(data.get('encoder'))} and "
            f"decoder={shown_or_none(data.get('decoder'))}; expected both sections."
        )
    varnet = _parse_unet("varnet", data["varnet"], VarNetConfig) if data.get("varnet") is not None else None
    sens = _parse_unet("sens", data.get("sens", {}), SensConfig)
    return ModelConfig(
        name=C.text(
            "name", data["name"], max_len=128, pattern=_NAME, what="a model name (letters, digits, _ . + -)"
        ),
        family=family,  # type: ignore[arg-type]
        contract=_parse_contract("contract", data["contract"]),
        weights=_parse_weights_info("weights", data["weights"]),
        num_cascades=_limited("num_cascades")("num_cascades", data.get("num_cascades", 12)),
        encoder=encoder,
        decoder=decoder,
        varnet=varnet,
        sens=sens,
        description=C.text("description", data.get("description", ""), max_len=10000),
    )


def shown_or_none(value: Any) -> str:
    return "missing" if value is None else C.shown(value)


_REGISTRY: dict[str, ModelConfig] = {}


def register(config: ModelConfig, *, overwrite: bool = False) -> ModelConfig:
    """Add a config to the zoo. Registering an existing name needs ``overwrite=True``."""
    if config.name in _REGISTRY and not overwrite:
        raise ValueError(f"model {config.name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[config.name] = config
    return config


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


def get_config(name: str) -> ModelConfig:
    """The config registered under ``name``; unknown names list what exists, closest first.

    A name that looks like a file (a checkpoint suffix, or a folder in it) and is not registered is
    answered as a missing file (:class:`~fastrecon.errors.WeightsError`), not as an unknown model.
    """
    if not isinstance(name, str):
        raise InputTypeError(
            f"model name is {name!r} ({type(name).__name__}); expected a registered name (str, see "
            "fastrecon.list_models()) or the path of a .safetensors checkpoint."
        )
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    if name.lower().endswith(_CHECKPOINT_SUFFIXES) or "/" in name or os.sep in name:
        raise WeightsError(
            f"checkpoint file {name!r} does not exist (and it is not a registered model name). "
            "Give the path of an existing .safetensors checkpoint, or one of fastrecon.list_models()."
        )
    raise UnknownNameError(f"unknown model {name!r}. {close_matches(name, list(_REGISTRY))}")


# --- encoders -------------------------------------------------------------------------------------

CLIP_B16 = EncoderConfig(
    kind="clip",
    source="open_clip",
    arch="ViT-B-16-quickgelu",  # OpenAI CLIP weights were trained with QuickGELU
    pretrained="openai",
    patch_size=16,
    licence="MIT (OpenAI CLIP)",
)
DINOV2_B14 = EncoderConfig(
    kind="dinov2",
    source="timm",
    arch="vit_base_patch14_dinov2",
    pretrained="lvd142m",
    patch_size=14,
    timm_kwargs={"img_size": 224},
    licence="Apache-2.0 (Meta DINOv2)",
)
BIOMEDCLIP_B16 = EncoderConfig(
    kind="biomedclip",
    source="timm",
    arch="vit_base_patch16_224",
    # open_clip's BiomedCLIP config builds this timm trunk; its visual weights load into it.
    pretrained="hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
    patch_size=16,
    timm_kwargs={"num_classes": 0},
    licence="MIT (Microsoft BiomedCLIP)",
)
TINY_DEMO_ENCODER = EncoderConfig(
    kind="tiny",
    source="timm",
    arch="vit_tiny_patch16_224",
    pretrained=None,
    embed_dim=96,
    patch_size=16,
    img_size=128,
    timm_kwargs={"img_size": 128, "embed_dim": 96, "depth": 6, "num_heads": 3, "num_classes": 0},
    licence="none: random initialisation, not pretrained",
)

_ENCODERS = {"clip": CLIP_B16, "dinov2": DINOV2_B14, "biomedclip": BIOMEDCLIP_B16}
_ACCELERATIONS = (4, 8, 10)


def _register_zoo() -> None:
    for kind, encoder in _ENCODERS.items():
        for accel in _ACCELERATIONS:
            name = f"{kind}-x{accel}"
            register(
                ModelConfig(
                    name=name,
                    family="vit_unrolled",
                    contract=InputContract(acceleration=accel),
                    weights=WeightsInfo(filename=f"{name}.safetensors"),
                    encoder=encoder,
                    decoder=DecoderConfig(),
                    description=f"12-cascade unrolled network with a frozen {kind} ViT-B prior (blocks 0..5), x{accel}",
                )
            )
    for accel in _ACCELERATIONS:
        name = f"varnet-x{accel}"
        register(
            ModelConfig(
                name=name,
                family="varnet",
                contract=InputContract(acceleration=accel),
                weights=WeightsInfo(filename=f"{name}.safetensors"),
                varnet=VarNetConfig(),
                description=f"E2E-VarNet baseline (fastMRI defaults, 29,936,966 parameters), x{accel}",
            )
        )


_register_zoo()


# --- the built-in demo -----------------------------------------------------------------------------
# Small, CPU-friendly, trained here on varied simulated data (its encoder is NOT pretrained): random
# phantoms, scikit-image photographs, MNI152 T1 slices (nilearn's wheel) and cardiac phantoms, with random
# birdcage/Gaussian coils (4-16), matrix sizes, noise and masks (x4-x10). Held out: the demo's cardiac
# slice, pydicom's MR image, nibabel's EPI volume. Reproduce the bundled checkpoint with DEMO_TRAIN_COMMAND.
DEMO_TRAIN_COMMAND = (
    "fastrecon train --model demo-x8 --data varied --sim-train 1000 --sim-val 48 --epochs 3 "
    "--lr-step-epochs 2 --patience 2 --batch-size 4 --storage-dtype float16 --seed 0 --out fastrecon/zoo/demo-x8.safetensors"
)
DEMO_SHA256: str | None = "e0e8bbe2779da07ae1d4307e0285a40ca365c76e66ce83033d862b1e775e9231"

register(
    ModelConfig(
        name="demo-x8",
        family="vit_unrolled",
        contract=InputContract(acceleration=8, mask_type="equispaced_fraction", acs_lines=10, max_coils=32),
        weights=WeightsInfo(
            filename="demo-x8.safetensors",
            sha256=DEMO_SHA256,
            licence="MIT (fastrecon)",
            provenance="trained by fastrecon on varied simulated slices (random phantoms, scikit-image photographs, "
            "MNI152 T1 template slices, cardiac phantoms; 96-128 matrices, 4-16 birdcage or Gaussian coils, "
            "equispaced and random masks x4-x10 with 8-24 ACS lines); encoder randomly initialised (not pretrained). "
            "Command: " + DEMO_TRAIN_COMMAND,
            bundled=True,
        ),
        num_cascades=6,
        encoder=TINY_DEMO_ENCODER,
        decoder=DecoderConfig(channels=(64, 48, 32, 16), input_channels=16),
        sens=SensConfig(chans=8, pools=3),
        description="small demo model (6 cascades, tiny random-init ViT), trained here on varied simulated x4-x10 data",
    )
)
