"""Which Hugging Face repositories each weight folder under GENMILL_MODELS_DIR comes from.

The backends read fixed folder names (`genmill.models`: `flux.backend`, `video.wan`, `video.hunyuan`,
`audio.ace_step`, `audio.musicgen`, `audio.stable_audio`, `tts.clone`, `toolkits.salient`, `toolkits.segment_grounded`,
`toolkits.face_restore`, `trellis.backend`); this table says, for each of those folders,
which repository (or repositories, for a layout genmill assembles) fills it, which files of it the backend loads, and
which catalog entries it serves. `genmill models pull` downloads from it and `genmill models` quotes it for entries
that lack weights.

Only the files a backend loads are fetched (`allow_patterns`): FLUX.1-dev's repository, for instance, also holds
the 23 GB single-file checkpoint `flux1-dev.safetensors` that diffusers' folder layout never reads.

Sizes are approximate (`approx_gb`): estimated from each published repository's component sizes, parameter
counts and dtypes, rounded; they are for planning disk space. `pull` prints the exact total from the
repository's file listing before it downloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from genmill.weights.folders import FAMILIES, FRAMEPACK_MODEL_INDEX, SOURCES
from genmill.weights.parts import HUB_URL, Entry, RepoPart, WeightSource

__all__ = [
    "FAMILIES",
    "FRAMEPACK_MODEL_INDEX",
    "HUB_URL",
    "SOURCES",
    "Entry",
    "RepoPart",
    "UnknownTarget",
    "WeightSource",
    "by_folder",
    "format_gb",
    "gated_pages",
    "pull_hint",
    "pull_table_markdown",
    "resolve_targets",
    "sources_for_entry",
    "sources_for_model",
]


class UnknownTarget(ValueError):
    """A `pull` target that names no folder, family, model or catalog entry."""


def by_folder() -> dict[str, WeightSource]:
    return {source.folder: source for source in SOURCES}


def sources_for_entry(model: str, task_type: str) -> list[WeightSource]:
    """The folders an entry's backend needs (Redux and the ControlNets also need FLUX.1-dev's)."""
    return [source for source in SOURCES if (model, task_type) in source.serves]


def sources_for_model(model: str) -> list[WeightSource]:
    return [source for source in SOURCES if any(served == model for served, _ in source.serves)]


def resolve_targets(targets: Sequence[str], catalog_families: dict[str, set[Entry]]) -> list[WeightSource]:
    """The weight folders the targets name, in table order without repeats.

    A target is a folder name (`flux1-dev`), a family (`flux`, `wan`, `hunyuan`, `audio`, `image`), a catalog entry
    (`Qubico/wanx/txt2video-14b`), a model (`Qubico/flux1-dev`: every task type's folders) or a catalog family
    (`wanx`, `framepack`), looked up in that order; `catalog_families` maps catalog family names to their entries.
    """
    folders = by_folder()
    chosen: set[str] = set()
    for target in targets:
        name = target.strip().rstrip("/")
        if name in folders:
            found = [folders[name]]
        elif name in FAMILIES:
            found = [source for source in SOURCES if source.family == name]
        elif "/" in name and sources_for_entry(*name.rsplit("/", 1)):  # Qubico/wanx/txt2video-14b, music-u/…
            found = sources_for_entry(*name.rsplit("/", 1))
        elif sources_for_model(name):
            found = sources_for_model(name)
        elif name in catalog_families:
            found = [source for source in SOURCES if set(source.serves) & catalog_families[name]]
        else:
            found = []
        if not found:
            raise UnknownTarget(
                f"{target!r} names no weight folder, family, model or catalog entry that has downloadable weights; "
                "see `genmill models` and docs/weights.md for the names"
            )
        chosen.update(source.folder for source in found)
    return [source for source in SOURCES if source.folder in chosen]


def format_gb(approx_gb: float) -> str:
    if approx_gb < 1:
        return f"~{approx_gb * 1000:.0f} MB"
    return f"~{approx_gb:.1f} GB" if approx_gb < 10 and approx_gb != int(approx_gb) else f"~{approx_gb:.0f} GB"


def pull_hint(model: str, task_type: str, models_dir: Path) -> str:
    """What `genmill models pull` would fetch for an entry whose weights are missing, or "" when the table has
    nothing for it; names the model as the target when all its task types share these folders."""
    needed = sources_for_entry(model, task_type)
    missing = [source for source in needed if not (models_dir / source.folder).is_dir()]
    if not missing:
        return ""
    same_for_model = {s.folder for s in needed} == {s.folder for s in sources_for_model(model)}
    target = model if same_for_model else f"{model}/{task_type}"
    repos = ", ".join(dict.fromkeys(part.repo_id for source in missing for part in source.parts))
    size = format_gb(sum(source.approx_gb for source in missing))
    return f"genmill models pull {target} fetches {repos}, {size}"


def gated_pages(sources: Iterable[WeightSource]) -> list[str]:
    return list(dict.fromkeys(part.page for source in sources for part in source.parts if part.gated))


def pull_table_markdown() -> str:
    """The pull command of every catalog entry that has downloadable weights, as the Markdown table in
    docs/gpu.md (a test keeps the two equal; regenerate with `python -m genmill.weights.sources`)."""
    entries = sorted({entry for source in SOURCES for entry in source.serves})
    rows = ["| entry | command | folders | from | download |", "|---|---|---|---|---|"]
    for model, task_type in entries:
        needed = sources_for_entry(model, task_type)
        same_for_model = {s.folder for s in needed} == {s.folder for s in sources_for_model(model)}
        target = model if same_for_model else f"{model}/{task_type}"
        folders = ", ".join(f"`{s.folder}/`" for s in needed)
        repos = ", ".join(
            dict.fromkeys(part.repo_id + (" (gated)" if part.gated else "") for s in needed for part in s.parts)
        )
        size = format_gb(sum(s.approx_gb for s in needed))
        rows.append(f"| {model} {task_type} | `genmill models pull {target}` | {folders} | {repos} | {size} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(pull_table_markdown())
