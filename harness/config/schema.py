"""The typed configuration of one run: world, model, data, training stages, evaluation.

Every knob an experiment can turn is a field here, so a variant's delta, an experiment's overrides and a CLI
`key=value` all name the same dotted keys (`model.connector.kind`, `train.finetune.lr`, ...). The defaults are
the Lynx baseline's design at the `tiny` scale; scale presets (`harness/scales/*.yaml`) set sizes and budgets for
other scales and map abstract roles (`model.llm.role`, `model.vision.size`) to concrete backbones. Values are
validated once, when the layers are merged (`harness.resolve`), and trusted afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# A backbone source: "zoo:<entry>" (the miniature backbone zoo built by `ablate zoo build`), a local path
# (a transformers `save_pretrained` folder or a timm-loadable weight file), or "random" (random init).
Source = str

NoDecay = Literal["1d", "none"]  # the weight-decay exemption rules of harness/optim.py

# The model's components, declared once: what a stage's `trainable` list names (harness/model/freeze.py splits the
# parameters among them). llm is the language model without its adapters; frames is the video frame embedding.
Component = Literal["vision", "connector", "fusion", "llm", "adapters", "frames"]
# What a stage trains unless it says otherwise: everything but the two pretrained backbones (Lynx's recipe).
DEFAULT_TRAINABLE: tuple[Component, ...] = ("connector", "fusion", "adapters", "frames")
# The data mixtures a stage can draw from (harness/data/mixture.py weighs their datasets), declared once.
Mixture = Literal["pretrain", "finetune"]


@dataclass
class VisionConfig:
    """The vision encoder: any timm model name, resized, with zoo / local weights or random init."""

    size: Literal["large", "small"] = "large"  # role; the scale preset maps it to a concrete encoder
    model: str = "vit_tiny_patch16_224"  # timm model name (architecture only; never downloaded)
    weights: Source = "random"  # "zoo:<entry>", a local weight file, or "random"
    image_size: int = 32  # low resolution: pretraining (Lynx: 224)
    high_res_size: int = 64  # after the high-resolution phase (Lynx: 420); ignored without that phase
    patch_size: int = 8
    width: int = 64  # embed dim
    depth: int = 2  # transformer blocks
    heads: int = 2
    feature_layer: Literal["last", "penultimate"] = "last"
    max_frames: int = 5  # video: learnable per-frame embeddings (Lynx: 5 frames)


@dataclass
class ConnectorConfig:
    """Maps vision tokens to LLM-width visual tokens (registry: `harness.model.connectors.CONNECTORS`)."""

    kind: str = "resampler"  # resampler | linear | mlp
    num_queries: int = 32  # resampler: number of visual tokens, as in Lynx at every scale
    depth: int = 1  # resampler layers (Lynx: 3)
    heads: int = 2  # resampler cross-attention heads (Lynx: 8)
    head_dim: int = 32  # per-head width (Lynx: 64)
    ffn_mult: int = 4


@dataclass
class FusionConfig:
    """How visual tokens enter the LLM (registry: `harness.model.fusion.FUSIONS`)."""

    kind: str = "prefix"  # prefix | cross_attn
    every: int = 1  # cross_attn: a gated cross-attention block before every k-th LLM layer
    heads: int = 4  # cross_attn heads


@dataclass
class LLMConfig:
    """The language model: a transformers causal LM from the zoo, a local folder, or built from the sizes below."""

    role: Literal["instruct", "base"] = "instruct"  # instruction-tuned (Vicuna) or base (LLaMA) backbone
    source: Source = "random"  # "zoo:<entry>", a local `save_pretrained` folder, or "random"
    arch: str = "llama"  # transformers model_type used when source is "random"
    vocab_size: int | None = None  # None = the tokenizer's (the world's at zoo scales, the checkpoint's otherwise)
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 256


@dataclass
class AdapterConfig:
    """Parameter-efficient tuning inside the LLM (registry: `harness.model.adapters.ADAPTERS`)."""

    kind: str = "bottleneck"  # bottleneck | lora | none
    every: int = 2  # bottleneck: after every M-th block (released config and the paper's 8.4B: 2; paper text: 1)
    reduction: int = 2  # bottleneck width = hidden_size / reduction (Lynx: 4096 -> 2048)
    init_scale: float = 1.0  # bottleneck: learnable output scale, initial value
    lora_rank: int = 8
    lora_alpha: float = 16.0


@dataclass
class ModelConfig:
    """Encoder -> connector -> fusion -> LLM (with adapters)."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass
class WorldConfig:
    """The generated miniature world (its content hash names its cache folder). Sizes are per scale."""

    seed: int = 0
    render_size: int = 64  # images are rendered at the high resolution, downsampled for the low one
    num_images: int = 3000  # clean image-caption pairs (also the source of the labelled tasks)
    num_noisy: int = 6000  # noisy alt-text pairs (the noisy-data ablation)
    num_videos: int = 400
    num_frames: int = 5  # frames per generated video
    num_text: int = 2000  # text-only documents / instructions
    samples_per_shard: int = 1000
    benchmark_scale: int = 1  # 1 = the paper's Open-VQA sizes (302 image / 148 video); 10 = the 10x split


@dataclass
class DataConfig:
    """Which datasets each stage trains on, how they are sampled, and how they become tokens."""

    shards: str | None = None  # brace/glob pattern of real image-text shards added to pretraining
    prompts: Literal["diverse", "fixed"] = "diverse"  # phrasings per task in training
    sampling: Literal["hand", "natural", "balanced"] = "hand"  # dataset weights: hand-set, size-proportional, equal
    noisy_pretraining: bool = False  # add the large noisy alt-text corpus to pretraining
    text_instructions: bool = True  # text-only instruction data in finetuning
    video: bool = True  # video data in finetuning
    video_frames: int = 5  # frames per video fed to the model (1 = a single frame)
    vqa_weight: float = 1.0  # multiplier on the short-answer VQA weight in finetuning
    max_text_len: int = 96  # tokens per sample (prompt + answer), longer ones are cut
    # Share of the clean pretraining captions served as the detailed description (every object with size,
    # position and action, the sign's text) instead of the one-line caption, as dense-caption pretraining does.
    detailed_captions: float = 0.5
    # Share (percent) of every training dataset's samples, picked by a hash of the sample's key, kept out of
    # training: the held-out set a sweep's pruner reads the validation loss from. 0: train on everything.
    holdout_percent: float = 0.0


@dataclass
class StageConfig:
    """One training stage: its budget, learning rate schedule, data mixture, resolution and which components it
    trains."""

    steps: int = 100  # 0 skips the stage
    lr: float = 1e-3  # peak learning rate (AdamW, warmup then linear decay)
    warmup_frac: float = 0.05
    # The components this stage trains (a set: written in any order, kept in the order of `Component`); the others
    # are frozen. E.g. `[connector, fusion, adapters, frames, llm]` also trains the LLM itself.
    trainable: list[Component] = field(default_factory=lambda: list(DEFAULT_TRAINABLE))
    resolution: Literal["low", "high"] = "low"  # model.vision.image_size or model.vision.high_res_size
    mixture: Mixture = "pretrain"  # which data mixture it draws: pretraining's (captions, ...) or finetuning's


@dataclass
class TrainConfig:
    """Optimisation: pretraining -> optional high-resolution phase -> instruction finetuning, as in the paper.

    The stages are data: `order` lists them in training order. The three of the paper have fields of their own
    (`train.finetune.steps`, ...); a variant adds a stage by naming it in `order` and setting its `train.<name>.*`
    keys (held in `extra`), and drops one with `steps: 0` or by leaving it out of `order`."""

    pretrain: StageConfig = field(default_factory=lambda: StageConfig(steps=300, lr=1e-3))
    high_res: StageConfig = field(default_factory=lambda: StageConfig(steps=100, lr=3e-4, resolution="high"))
    finetune: StageConfig = field(default_factory=lambda: StageConfig(steps=300, lr=5e-4, resolution="high",
                                                                      mixture="finetune"))
    order: list[str] = field(default_factory=lambda: list(STAGES))  # the stages to train, in order
    extra: dict[str, StageConfig] = field(default_factory=dict)  # stages beyond the paper's, by name
    batch_size: int = 16
    weight_decay: float = 0.01
    # Which tensors weight decay spares (harness/optim.py): "1d" = biases, norms, gates and scales; "none" = none
    # of them, the recipe of runs trained before this setting existed.
    no_decay: NoDecay = "1d"
    precision: Literal["bf16-mixed", "32-true", "16-mixed"] = "bf16-mixed"
    accelerator: str = "cpu"  # Lightning accelerator: cpu | gpu | auto
    devices: int = 1  # accelerators per node
    num_nodes: int = 1  # machines one run spans (Lightning's num_nodes; a cluster launcher starts the processes)
    # How a run spread over several devices or nodes splits the work: "ddp" (every device holds the whole model) or
    # "fsdp" (parameters sharded across devices, for models that do not fit one); "auto" = ddp when it spans more
    # than one device, else a single device.
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    log_every: int = 10  # steps between logged training metrics
    # Steps between resume points inside a stage (0: only at stage ends). A killed run resumes from its last one,
    # into the same MLflow run, with the same result. Bookkeeping, not part of the run key.
    checkpoint_every: int = 0
    # Serve a frozen vision encoder's tokens from the grid-wide cache (harness/features.py) instead of recomputing
    # them every step; stages where the encoder trains always compute them.
    feature_cache: bool = True
    # Train the LLM on packed rows of real positions (harness/model/packing.py; LLaMA-like LLMs with SDPA
    # attention, others stay padded): the same loss and gradients up to the order of floating-point sums, 1.2x
    # faster at `small`; false: the padded layout of runs trained before this setting existed.
    sequence_packing: bool = True

    def stage(self, name: str) -> StageConfig:
        """The settings of stage `name` (one of the paper's or an added one)."""
        return getattr(self, name) if name in STAGES else self.extra[name]

    def last_stage(self) -> StageConfig:
        """The last stage that trains: the model the benchmark sees finished there (its resolution, its freezing)."""
        active = self.stages()
        return active[-1][1] if active else self.finetune

    def stages(self, active_only: bool = True) -> list[tuple[str, StageConfig]]:
        """(name, settings) of each stage of `order`; by default only those with steps."""
        return [(name, self.stage(name)) for name in self.order if not active_only or self.stage(name).steps > 0]


# The paper's training stages in order, declared once: the StageConfig fields of TrainConfig and its default order.
STAGES = ("pretrain", "high_res", "finetune")


@dataclass
class GenerationConfig:
    """Decoding settings for one benchmark split."""

    max_new_tokens: int = 16
    num_beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass
class JudgeConfig:
    """The judge that decides whether an answer implies the reference, and its options.

    In a config: `eval.judge: exact` (a name alone) or `eval.judge: {name: my_llm_judge, options: {model: ...}}`.
    `options` are passed to the judge's factory as keyword arguments; names it does not take are refused when the
    config is resolved."""

    name: str = "rules"  # registry: harness.components.JUDGES (built-ins and `ablate.judges` entry points)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    """The benchmark: which splits, how to decode each, and the judge."""

    splits: str = "openvqa_image,openvqa_video,mme,probes"  # comma-separated split names
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    batch_size: int = 32
    # The paper's Open-VQA image settings: 64 new tokens, 5 beams, length penalty -2.0, no-repeat 2-gram.
    openvqa: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=64, num_beams=5, length_penalty=-2.0,
                                                 no_repeat_ngram_size=2)
    )
    short: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=8))  # MME yes/no
    long: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=48))  # probes


@dataclass
class RunConfig:
    """Everything that determines one run. `variant` and `scale` are labels; the rest is hashed."""

    variant: str = "lynx"
    scale: str = "tiny"
    seed: int = 0
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
