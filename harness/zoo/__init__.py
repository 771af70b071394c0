"""The backbone zoo: miniature pretrained backbones for the generated world, saved like real checkpoints.

Four entries, each a folder under the zoo directory: `llm-base` (a causal LM pretrained on plain text) and
`llm-instruct` (llm-base tuned on text dialogues in the chat format), both transformers `save_pretrained` folders
with the tokenizer; `vit-large` and `vit-small` (timm ViTs pretrained CLIP-style), each a `model.safetensors`
timm state dict plus a `config.json` of `timm.create_model` kwargs and quality numbers. Every folder ends with a
`zoo_entry.json` manifest (files, sizes, sha256, spec hash, quality) that marks it complete.

`build_zoo` builds what is missing, damaged or outdated (and logs each build as an MLflow run in experiment
"zoo"); `resolve_source` turns "zoo:<entry>" / a local path / "random" into what the model loaders take;
`zoo_complete` and `describe_zoo` report on a zoo folder. The zoo takes plain inputs (texts, dialogues, image-
caption pairs, a tokenizer), so it does not depend on how the world generator produces them.
"""

from harness.zoo.build import build_zoo
from harness.zoo.entries import ENTRIES, MANIFEST, describe_zoo, resolve_source, verify_entry, zoo_complete
from harness.zoo.spec import ZooSpec

__all__ = [
    "ENTRIES",
    "MANIFEST",
    "ZooSpec",
    "build_zoo",
    "describe_zoo",
    "resolve_source",
    "verify_entry",
    "zoo_complete",
]
