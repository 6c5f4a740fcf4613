"""The model zoo: one frozen config dataclass per registered name.

A config carries everything needed to rebuild a model without its weights file: architecture,
input contract, encoder source and weights provenance. Checkpoints embed ``config.to_dict()`` as
JSON in their safetensors metadata, so a checkpoint can always be rebuilt on its own.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from fastrecon.errors import UnknownNameError, close_matches

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
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        def build(kind: type, value: Any) -> Any:
            if value is None:
                return None
            fields = {f.name: f for f in dataclasses.fields(kind)}
            kwargs = {}
            for key, val in value.items():
                if key not in fields:
                    continue  # forward compatibility: ignore fields this version does not know
                kwargs[key] = tuple(val) if isinstance(val, list) else val
            return kind(**kwargs)

        return cls(
            name=data["name"],
            family=data["family"],
            contract=build(InputContract, data["contract"]),
            weights=build(WeightsInfo, data["weights"]),
            num_cascades=data.get("num_cascades", 12),
            encoder=build(EncoderConfig, data.get("encoder")),
            decoder=build(DecoderConfig, data.get("decoder")),
            varnet=build(VarNetConfig, data.get("varnet")),
            sens=build(SensConfig, data.get("sens", {})),
            description=data.get("description", ""),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


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


def get_config(name: str) -> ModelConfig:
    """The config registered under ``name``; unknown names list what exists, closest first."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}. {close_matches(name, list(_REGISTRY))}") from None


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
