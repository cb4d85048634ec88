"""Architecture configurations of the change-aware denoiser: ``tiny``, ``small`` and ``paper``.

A config is a frozen dataclass that round-trips through JSON (it is stored in every checkpoint's spec).
Sizes are measured by ``scripts/model_stats.py`` and listed in ``docs/model-card.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from geosr.errors import OptionError


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# each field's kind (its annotation, as text: `from __future__ import annotations`): a test and its name in words
_KINDS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_whole, "a whole number"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "tuple[int, ...]": (lambda v: isinstance(v, (list, tuple)) and all(map(_whole, v)), "a list of whole numbers"),
}


@dataclass(frozen=True, kw_only=True)
class ArchConfig:
    """Every hyper-parameter that changes the network's weights or its forward pass.

    Levels are numbered from 0 down; level ``l`` runs at ``1 / (patch * 2**l)`` of the window and
    has ``base_channels * channel_mult[l]`` channels. A window's sides must be divisible by
    :attr:`downsampling` (the super-resolver pads internally when they are not).
    """

    name: str = "custom"
    n_bands: int = 3
    n_change_classes: int = 2
    n_map_classes: int = 0
    patch: int = 1  # space-to-depth factor of the input (2: level 0 runs at half resolution)
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attn_levels: tuple[int, ...] = (2,)  # levels with self-attention (only the low resolutions)
    head_channels: int = 64  # channels per attention head
    attn_tile: int = 64  # attention runs over tiles of at most attn_tile x attn_tile tokens
    dropout: float = 0.0
    noise_channels: int = 0  # Fourier features of c_noise; 0: base_channels
    emb_channels: int = 0  # width of the noise embedding; 0: 4 * base_channels
    sft_hidden: int = 32  # hidden width of each SFT gamma / beta branch
    spade_hidden: int = 32  # hidden width of the SPADE shared convolution
    guidance_channels: int = 16  # width of the semantic and texture guidance pyramids
    style: bool = False  # SGDM style path (style encoder + AdaIN + flow)
    flow_layers: int = 8  # affine couplings of the style flow
    flow_hidden: int = 64  # hidden width of each coupling's MLP
    residual: bool = False  # denoise HR - bicubic(LR) instead of HR (SRDiff-style residual diffusion)
    sigma_data: float = 0.5  # EDM's sigma_data: the std of what is denoised (smaller for residuals)
    upsampler_channels: int = 0  # width of the learned LR upsampler (models/upsampler.py); 0: plain bicubic
    upsampler_blocks: int = 8  # its residual blocks at LR resolution

    def __post_init__(self) -> None:
        wrong = [f"{f.name} must be {_KINDS[str(f.type)][1]}, not {getattr(self, f.name)!r}"
                 for f in dataclasses.fields(self) if not _KINDS[str(f.type)][0](getattr(self, f.name))]
        if wrong:  # before the values are compared with numbers (a TypeError, an internal error, was the answer)
            raise OptionError(f"bad architecture config {self.name!r}: " + "; ".join(wrong))
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attn_levels", tuple(int(a) for a in self.attn_levels))
        problems = []
        if self.n_bands < 1:
            problems.append(f"n_bands must be at least 1, not {self.n_bands}")
        if self.n_change_classes < 1:
            problems.append(f"n_change_classes must be at least 1, not {self.n_change_classes}")
        if self.n_map_classes < 0:
            problems.append(f"n_map_classes cannot be negative ({self.n_map_classes})")
        if not self.channel_mult or min(self.channel_mult) < 1:
            problems.append(f"channel_mult must be a non-empty list of positive integers, not {self.channel_mult}")
        if self.patch not in (1, 2, 4):
            problems.append(f"patch must be 1, 2 or 4, not {self.patch}")
        if self.base_channels < 4 or self.blocks_per_level < 1:
            problems.append("base_channels must be at least 4 and blocks_per_level at least 1")
        if any(not 0 <= a < len(self.channel_mult) for a in self.attn_levels):
            problems.append(f"attn_levels {self.attn_levels} name levels that do not exist")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), not {self.dropout}")
        if not self.sigma_data > 0:
            problems.append(f"sigma_data must be positive, not {self.sigma_data}")
        if self.upsampler_channels < 0 or self.upsampler_blocks < 0:
            problems.append("upsampler_channels and upsampler_blocks cannot be negative")
        if min(self.sft_hidden, self.spade_hidden, self.guidance_channels, self.head_channels, self.attn_tile) < 1:
            problems.append("widths must be positive")
        if problems:
            raise OptionError(f"bad architecture config {self.name!r}: " + "; ".join(problems))

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def downsampling(self) -> int:
        """Window sides must be multiples of this."""
        return self.patch * 2 ** (self.levels - 1)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def noise_dim(self) -> int:
        return self.noise_channels or self.base_channels

    @property
    def emb_dim(self) -> int:
        return self.emb_channels or 4 * self.base_channels

    @property
    def in_channels(self) -> int:
        """Encoder input: [c_in x, LR up, Ref, change one-hot, map one-hot, ref validity]."""
        return 3 * self.n_bands + self.n_change_classes + self.n_map_classes + 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attn_levels"] = list(self.attn_levels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ArchConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionError(f"unknown architecture keys: {', '.join(unknown)}")
        return cls(**dict(d))


# tiny: trains and samples on 2 CPU cores (the tests use it). Space-to-depth 2 keeps level 0 at half
# resolution: about 35 GFLOP and 0.4 s per 256x256 forward on 2 CPU cores.
TINY = ArchConfig(
    name="tiny",
    patch=2,
    base_channels=32,
    channel_mult=(1, 2, 3),
    blocks_per_level=1,
    attn_levels=(2,),
    head_channels=32,
    dropout=0.1,
    sft_hidden=32,
    spade_hidden=32,
    guidance_channels=16,
    style=True,
    flow_layers=8,
    flow_hidden=64,
)

# small: a mid-size model for a GPU (or a patient CPU).
SMALL = ArchConfig(
    name="small",
    patch=2,
    base_channels=48,
    channel_mult=(1, 2, 3, 4),
    blocks_per_level=2,
    attn_levels=(2, 3),
    head_channels=48,
    dropout=0.1,
    sft_hidden=48,
    spade_hidden=48,
    guidance_channels=32,
    style=True,
    flow_layers=8,
    flow_hidden=128,
)

# paper: the published Ref-Diff network (128 base channels, multipliers [2, 2, 2], 4 blocks per level,
# full resolution, self-attention only in the first bottleneck block at 64x64, dropout 0.2, 128-wide SFT
# branches). No map and no style path (SGDM's parts are off, as in Ref-Diff). The guidance pyramids are
# narrow (8 channels) so the SFT inputs stay close to the official raw-pixel ones.
PAPER = ArchConfig(
    name="paper",
    n_change_classes=7,
    patch=1,
    base_channels=128,
    channel_mult=(2, 2, 2),
    blocks_per_level=4,
    attn_levels=(),
    head_channels=64,
    dropout=0.2,
    noise_channels=128,
    emb_channels=512,
    sft_hidden=128,
    spade_hidden=128,
    guidance_channels=8,
    style=False,
)

CONFIGS: dict[str, ArchConfig] = {c.name: c for c in (TINY, SMALL, PAPER)}

# The architecture of geosr's bundled default model: it must train and sample on a laptop CPU.
DEFAULT_CONFIG = "tiny"


def get_config(config: str | ArchConfig | Mapping[str, Any], **overrides: Any) -> ArchConfig:
    """A config by name, as is, or from a dict (a checkpoint's ``arch``); ``overrides`` replace fields."""
    if isinstance(config, ArchConfig):
        base = config
    elif isinstance(config, str):
        if config not in CONFIGS:
            raise OptionError(f"unknown architecture {config!r}: use one of {', '.join(CONFIGS)}")
        base = CONFIGS[config]
    elif isinstance(config, Mapping):
        base = ArchConfig.from_dict(config)
    else:
        raise OptionError(f"an architecture is a name, a dict or an ArchConfig, not {type(config).__name__}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ArchConfig)})
    if unknown:
        raise OptionError(f"unknown architecture keys: {', '.join(unknown)}")
    return dataclasses.replace(base, **overrides) if overrides else base


__all__ = ["ArchConfig", "CONFIGS", "DEFAULT_CONFIG", "get_config", "TINY", "SMALL", "PAPER"]
