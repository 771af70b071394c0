"""What a run needs before it can build a model: the world, its tokenizer, the backbone zoo, local checkpoints.

Backbone sources in a config are strings: `zoo:<entry>` (the miniature zoo, built here on first use),
`local:<name>` (a checkpoint folder named in the user's paths file) or a plain path, or `random`. Everything is
resolved to a local path or `random` before the model is built; nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.files import read_yaml
from harness.config.schema import LLMConfig, ModelConfig, RunConfig, VisionConfig
from harness.errors import AblateError
from harness.resolve import load_scale
from harness.tracking import Store

PATHS_ENV = "ABLATE_PATHS"
DEFAULT_PATHS = Path("~/.config/ablate/paths.yaml")


@dataclass(frozen=True)
class Assets:
    """The prepared inputs of a run."""

    world: Any  # harness.data.World
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    zoo_dir: Path | None  # None when the run uses no zoo backbone


def paths_file() -> Path:
    """The user's paths file: $ABLATE_PATHS, else ~/.config/ablate/paths.yaml."""
    return Path(os.environ.get(PATHS_ENV) or DEFAULT_PATHS).expanduser()


def resolve_local(source: str, key: str) -> str:
    """`local:<name>` -> the folder the paths file names for it; a plain path must exist."""
    if source == "random" or source.startswith("zoo:"):
        return source
    if source.startswith("local:"):
        name = source.removeprefix("local:")
        file = paths_file()
        entries = read_yaml(file, f"paths file (${PATHS_ENV})") if file.is_file() else {}
        if name not in entries:
            raise AblateError(
                f"{key} '{source}' needs an entry '{name}: /path/to/checkpoint' in the paths file {file} "
                f"(set ${PATHS_ENV} to use another file); nothing is downloaded"
            )
        source = str(Path(str(entries[name])).expanduser())
    if not Path(source).exists():
        raise AblateError(f"{key}: checkpoint path does not exist: {source} (nothing is downloaded)")
    return source


def check_sources(config: RunConfig) -> None:
    """Fail now, before anything is written, on a local checkpoint source that does not exist or on outside
    shards that are missing, empty or damaged."""
    resolve_local(config.model.llm.source, "model.llm.source")
    resolve_local(config.model.vision.weights, "model.vision.weights")
    if config.data.shards:
        from harness.data.shards import check_shards

        check_shards(config.data.shards)


FINGERPRINT_CHUNK = 1 << 20  # bytes read at the start, middle and end of each large checkpoint file
SOURCE_KEYS = ("model.llm.source", "model.vision.weights")


def fingerprint(path: Path) -> str:
    """12 hex digits of a checkpoint's content: every file's name and size, small files whole, and 1 MiB at the
    start, middle and end of large ones (a 14 GB checkpoint is fingerprinted in milliseconds, and a re-saved or
    replaced one changes it). A weight file counts the config.json beside it."""
    digest = hashlib.sha256()
    base = path if path.is_dir() else path.parent
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
        [path, *[p for p in (path.parent / "config.json",) if p.is_file()]]
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(base).as_posix()}:{size}\n".encode())
        with file.open("rb") as handle:
            if size <= 3 * FINGERPRINT_CHUNK:
                digest.update(handle.read())
                continue
            for offset in (0, size // 2, size - FINGERPRINT_CHUNK):
                handle.seek(offset)
                digest.update(handle.read(FINGERPRINT_CHUNK))
    return digest.hexdigest()[:12]


def source_identity(config: RunConfig) -> dict[str, str]:
    """What each local backbone source of a run resolves to: {config key: "PATH @ FINGERPRINT"}. Zoo entries and
    random init are already identified by the config (and the zoo's own hash). The run key uses the fingerprint
    only (`ResolvedRun.key`), so the same weights in another folder or on another machine are the same run."""
    identity = {}
    for key in SOURCE_KEYS:
        section, _, field = key.removeprefix("model.").partition(".")
        source = getattr(getattr(config.model, section), field)
        if source == "random" or source.startswith("zoo:"):
            continue
        path = Path(resolve_local(source, key))
        identity[key] = f"{path.resolve()} @ {fingerprint(path)}"
    return identity


def zoo_spec(scale: str, model: ModelConfig | None = None):
    """The ZooSpec of a scale: LM and ViT architectures from the preset's roles, budgets from its `zoo` section.
    With a run's `model`, the entries it loads take its architecture: a run that asks for a wider LLM gets a zoo
    LLM of that width (built once, in its own zoo folder), never the preset's under its own name."""
    from harness.resolve import preset_model
    from harness.zoo import ZooSpec
    from harness.zoo.spec import LLM_ARCH_FIELDS, VISION_ARCH_FIELDS

    preset = load_scale(scale)
    if not preset.zoo:
        raise AblateError(f"scale '{scale}' has no miniature zoo (its backbones come from local checkpoints)")
    # The zoo's architectures are the scale's, whatever variant asks for them: one zoo serves every variant.
    large = preset_model(scale, {"model.vision.size": "large"})
    small = preset_model(scale, {"model.vision.size": "small"})
    spec = ZooSpec(llm=large.llm, vision_large=large.vision, vision_small=small.vision, **preset.zoo)
    if model is None:
        return spec

    def sized(base, wanted, fields):
        return dataclasses.replace(base, **{f: getattr(wanted, f) for f in fields})

    spec.llm = sized(spec.llm, model.llm, LLM_ARCH_FIELDS)
    if model.vision.weights == "zoo:vit-large":
        spec.vision_large = sized(spec.vision_large, model.vision, VISION_ARCH_FIELDS)
    elif model.vision.weights == "zoo:vit-small":
        spec.vision_small = sized(spec.vision_small, model.vision, VISION_ARCH_FIELDS)
    return spec


def zoo_sizes(model: ModelConfig) -> str:
    """The architecture fields of a run's backbones, as text: runs that differ here need different zoo folders."""
    from harness.zoo.spec import LLM_ARCH_FIELDS, VISION_ARCH_FIELDS

    return repr([getattr(model.llm, f) for f in LLM_ARCH_FIELDS] + [model.vision.weights]
                + [getattr(model.vision, f) for f in VISION_ARCH_FIELDS])


def zoo_dir(store: Store, scale: str, spec, world_hash: str) -> Path:
    """The zoo folder for a scale's spec, world (its hash) and zoo code version: rebuilt when any of them changes."""
    from harness.zoo.spec import ZOO_VERSION

    blob = json.dumps({"spec": dataclasses.asdict(spec), "world": world_hash, "version": ZOO_VERSION},
                      sort_keys=True, default=str)
    return store.cache / "zoo" / f"{scale}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def expected_build_tags(config: RunConfig, store: Store) -> dict[str, str]:
    """The world hash and zoo folder a run of `config` trains on in `store` (its `ablate.world_hash` and
    `ablate.zoo` tags), computed without building either. A finished run whose tags differ was trained on another
    build: the world generator, the zoo recipe or their code changed since."""
    from harness.data.world import world_hash

    digest = world_hash(config.world)
    tags = {"ablate.world_hash": digest}
    if zoo_entries(config.model):
        tags["ablate.zoo"] = store.relative(zoo_dir(store, config.scale, zoo_spec(config.scale, config.model), digest))
    return tags


def zoo_entries(model: ModelConfig) -> set[str]:
    """The zoo entries a model config loads (its `zoo:` sources)."""
    return {s.removeprefix("zoo:") for s in (model.llm.source, model.vision.weights) if s.startswith("zoo:")}


def prepare(config: RunConfig, store: Store, zoo_workers: int = 1) -> Assets:
    """Build (or reuse) the world, tokenizer and, if the model uses it, the zoo entries it needs for `config`."""
    from harness.data import build_tokenizer, build_world

    world = build_world(config.world, store.cache)
    tokenizer = build_tokenizer(world)
    entries = zoo_entries(config.model)
    folder = ensure_zoo(config, store, world, tokenizer, entries=entries, workers=zoo_workers) if entries else None
    return Assets(world, tokenizer, folder)


@dataclass(frozen=True)
class ZooBuild:
    """One missing zoo entry, to build in a grid worker: `id` is its folder (relative to the store) / entry."""

    id: str
    config: RunConfig
    entry: str
    needs: frozenset[str]  # the ids of missing entries it is built from


def plan_zoo(configs: list[RunConfig], store: Store) -> tuple[list[ZooBuild], list[frozenset[str]]]:
    """Build each distinct world of `configs` here; return the zoo entries they load that are missing (with the
    missing ones each is built from), in build order, and for each config the ids of the missing entries it loads."""
    from harness import zoo
    from harness.data import build_world
    from harness.zoo.build import BUILD_ORDER, DEPENDS_ON, with_dependencies

    worlds: dict[str, Any] = {}
    builds: dict[str, ZooBuild] = {}
    needs = []
    for cfg in configs:
        if repr(cfg.world) not in worlds:
            worlds[repr(cfg.world)] = build_world(cfg.world, store.cache)
        world = worlds[repr(cfg.world)]
        entries = zoo_entries(cfg.model)
        if not entries:
            needs.append(frozenset())
            continue
        folder = zoo_dir(store, cfg.scale, zoo_spec(cfg.scale, cfg.model), world.manifest["hash"])
        wanted = with_dependencies(entries)
        missing = {e for e in wanted if zoo.verify_entry(folder / e) is not None}
        ident = {e: f"{store.relative(folder)}/{e}" for e in wanted}
        for entry in missing:
            built_from = frozenset(ident[e] for e in missing if DEPENDS_ON.get(entry) == e)
            builds.setdefault(ident[entry], ZooBuild(ident[entry], cfg, entry, built_from))
        needs.append(frozenset(ident[e] for e in missing))
    return sorted(builds.values(), key=lambda b: BUILD_ORDER.index(b.entry)), needs


def ensure_zoo(config: RunConfig, store: Store, world, tokenizer, force: bool = False,
               entries: set[str] | None = None, workers: int = 1) -> Path:
    """Build the scale's zoo entries (`entries`, default all, with what they depend on) unless they are complete
    and up to date; return the zoo folder. With `workers` > 1, independent chains (the LMs, the ViTs) build in
    parallel processes of one thread each."""
    from harness import zoo
    from harness.zoo.build import build_chains, with_dependencies

    spec = zoo_spec(config.scale, config.model)
    folder = zoo_dir(store, config.scale, spec, world.manifest["hash"])
    wanted = with_dependencies(entries)
    if not force and all(zoo.verify_entry(folder / e) is None for e in wanted):
        return folder
    chains = build_chains(wanted)
    if workers > 1 and len(chains) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from harness.lifetime import follow_parent

        with ProcessPoolExecutor(min(workers, len(chains)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=follow_parent) as pool:
            for done in [pool.submit(_zoo_chain, config, str(store.root), chain, force) for chain in chains]:
                done.result()
        return folder
    texts, heldout_texts = _split(world.texts(), 0.05)
    pairs, heldout_pairs = _split(world.caption_pairs(targets=True), 0.05, cap=400)
    zoo.build_zoo(
        spec, folder, tokenizer, texts=texts, dialogues=world.instruction_dialogues(), pairs=pairs,
        heldout_texts=heldout_texts, heldout_pairs=heldout_pairs, seed=config.world.seed, store=store,
        force=force, entries=wanted,
    )
    return folder


def _zoo_chain(config: RunConfig, root: str, chain: list[str], force: bool) -> Path:
    """Worker process: build one chain of zoo entries (one torch thread, as the zoo's spec asks); the zoo folder."""
    import logging

    from harness.data import build_tokenizer, build_world

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress lines, as in the parent process
    store = Store(Path(root))
    world = build_world(config.world, store.cache)
    return ensure_zoo(config, store, world, build_tokenizer(world), force=force, entries=set(chain), workers=1)


def zoo_build_entry(config: RunConfig, root: str, entry: str) -> list[str]:
    """Worker process: build one zoo entry of `plan_zoo` (the entries it is built from exist by then); the lines
    that describe it."""
    from harness.zoo import describe_zoo

    return describe_zoo(_zoo_chain(config, root, [entry], False), {entry})


def _split(items, frac: float, cap: int | None = None) -> tuple[list, list]:
    items = list(items)
    n = max(1, int(len(items) * frac))
    if cap:
        n = min(n, cap)
    return items[:-n], items[-n:]


def concrete_model_config(model: ModelConfig, assets: Assets) -> ModelConfig:
    """The model config with every backbone source resolved to a local path or 'random'."""
    from harness import zoo

    def concrete(source: str, key: str) -> str:
        if source.startswith("zoo:"):
            if assets.zoo_dir is None:
                raise AblateError(f"{key} '{source}' needs the backbone zoo; run `ablate zoo build` first")
            return zoo.resolve_source(source, assets.zoo_dir)
        return resolve_local(source, key)

    llm: LLMConfig = dataclasses.replace(model.llm, source=concrete(model.llm.source, "model.llm.source"))
    vision: VisionConfig = dataclasses.replace(
        model.vision, weights=concrete(model.vision.weights, "model.vision.weights")
    )
    return dataclasses.replace(model, llm=llm, vision=vision)
