"""The typed configuration of one run: model, data, training, evaluation.

Every knob an experiment can turn is a field here, so a variant's delta, an experiment's overrides and a CLI
`key=value` all name the same dotted keys (`model.connector.kind`, `train.lr`, ...). The defaults are the Lynx
baseline's design at the `tiny` scale; scale presets (`harness/scales/*.yaml`) set the sizes for other scales.
Values are validated once, when the layers are merged (`harness.config.resolve`), and trusted afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class VisionConfig:
    """The vision encoder: any timm model name, optionally resized, with local weights or random init."""

    model: str = "vit_tiny_patch16_224"  # timm model name (architecture only; never downloaded)
    weights: str | None = None  # local weight file (timm-loadable); None = random init
    image_size: int = 32  # input resolution in pixels
    patch_size: int = 8
    width: int = 64  # embed dim
    depth: int = 2  # transformer blocks
    heads: int = 2
    feature_layer: Literal["last", "penultimate"] = "last"
    trainable: bool = False


@dataclass
class ConnectorConfig:
    """Maps vision tokens to LLM-width visual tokens (registry: `harness.model.connectors.CONNECTORS`)."""

    kind: str = "resampler"  # resampler | linear | mlp
    num_queries: int = 8  # resampler: number of visual tokens (Lynx: 32)
    depth: int = 1  # resampler layers (Lynx: 3)
    heads: int = 2  # resampler cross-attention heads (Lynx: 8)
    head_dim: int = 32  # per-head width (Lynx: 64)
    ffn_mult: int = 4
    trainable: bool = True


@dataclass
class LLMConfig:
    """The language model: a transformers causal LM from a local folder or built from the sizes below."""

    role: Literal["instruct", "base"] = "instruct"  # instruction-tuned (Vicuna) or base (LLaMA) backbone
    path: str | None = None  # local `save_pretrained` folder; None = build from this config (random init)
    arch: str = "llama"  # transformers model_type used when `path` is None
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 128
    trainable: bool = False


@dataclass
class AdapterConfig:
    """Bottleneck adapters inside the LLM (registry: `harness.model.adapters.ADAPTERS`)."""

    kind: str = "bottleneck"  # bottleneck | none
    every: int = 1  # insert after every M-th decoder block (paper: 1, released config: 2)
    reduction: int = 2  # bottleneck width = hidden_size / reduction (Lynx: 4096 -> 2048)
    init_scale: float = 1.0  # learnable output scale, initial value
    trainable: bool = True


@dataclass
class ModelConfig:
    """Encoder -> connector -> fusion -> LLM (with adapters)."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    fusion: Literal["prefix"] = "prefix"  # how visual tokens enter the LLM
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass
class DataConfig:
    """Where training and evaluation samples come from and how they are turned into tokens."""

    shards: str | None = None  # brace/glob pattern of real webdataset shards; None = the generated world
    world_seed: int = 0  # the generated world's seed (part of its content hash)
    num_train: int = 2000  # generated training samples
    num_eval: int = 96  # generated evaluation samples
    render_size: int = 32  # generated images' side in pixels
    samples_per_shard: int = 500
    prompts: Literal["diverse", "fixed"] = "diverse"  # phrasings per task in training
    max_text_len: int = 48  # tokens per sample (prompt + answer), longer ones are cut


@dataclass
class TrainConfig:
    """Optimisation: AdamW with linear warmup then linear decay, as in the paper."""

    max_steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    precision: Literal["bf16-mixed", "32-true", "16-mixed"] = "bf16-mixed"
    accelerator: str = "cpu"  # Lightning accelerator: cpu | gpu | auto
    log_every: int = 10  # steps between logged training metrics


@dataclass
class EvalConfig:
    """Generation and scoring on the held-out split."""

    max_new_tokens: int = 6
    num_beams: int = 1
    batch_size: int = 32
    metric: Literal["exact_match"] = "exact_match"


@dataclass
class RunConfig:
    """Everything that determines one run. `variant` and `scale` are labels; the rest is hashed."""

    variant: str = "lynx"
    scale: str = "tiny"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
