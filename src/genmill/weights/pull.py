"""`genmill models pull`: download the weight folders of `genmill.weights.sources` into the models folder.

Each file goes through huggingface_hub's `hf_hub_download` with `local_dir`, so the Hub's usual behaviour applies:
a token from `--token` or HF_TOKEN (or `hf auth login`), Xet transfers when hf-xet is installed, one progress bar
per file, a dropped connection resumed with an HTTP Range request, and files already downloaded (recorded under
the folder's `.cache/huggingface/`) skipped when the command is run again. huggingface_hub discards the partial
file of a transfer it could not finish, so a run that is stopped restarts that one file and continues after it.

A folder that does not exist yet is downloaded into `<models_dir>/.pulling/<folder>/` and moved into place only
once every file is there (and, for an assembled layout, its model_index.json written): the backends treat any
existing folder as weights, so a half-downloaded one must never carry the real name. A folder that already exists
(a previous pull, or weights placed by hand) is completed in place.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from pathlib import Path

from genmill.weights.sources import RepoPart, WeightSource, format_gb, gated_pages

STAGING = ".pulling"
"""The folder under the models folder where unfinished downloads wait; no backend reads it."""

TOKEN_HINT = "pass a token of that account with --token or HF_TOKEN (or run `hf auth login`)"

Say = Callable[[str], None]


class PullFailed(Exception):
    """A download that did not complete; the message says what to do."""


def describe(sources: Sequence[WeightSource], models_dir: Path, say: Say) -> None:
    """What a pull of `sources` would fetch, from the table alone (no network): `--dry-run`."""
    for source in sources:
        present = " (present: pull would complete or update it)" if (models_dir / source.folder).is_dir() else ""
        say(f"{models_dir / source.folder}/  {format_gb(source.approx_gb)}{present}")
        for part in source.parts:
            where = f" into {part.subfolder}/" if part.subfolder else ""
            gated = f"  gated: accept the licence at {part.page}" if part.gated else ""
            say(f"  {part.repo_id}{where}  {format_gb(part.approx_gb)}  files: {' '.join(part.allow_patterns)}{gated}")
        if source.model_index is not None:
            say(f"  then writes model_index.json for {source.model_index['_class_name']}")
    total = sum(source.approx_gb for source in sources)
    say(f"{len(sources)} folder(s), {format_gb(total)} in all (approximate; pull prints the exact size)")
    pages = gated_pages(sources)
    if pages:
        say(f"gated repositories: accept their licence at {', '.join(pages)}, then {TOKEN_HINT}")


def pull(sources: Sequence[WeightSource], models_dir: Path, *, token: str | None, say: Say) -> int:
    """Download every source's folder; 0 when all are complete, 1 after the first that failed (said why)."""
    for source in sources:
        try:
            pull_source(source, models_dir, token=token, say=say)
        except PullFailed as exc:
            say(f"error: {exc}")
            return 1
    say(f"done: {', '.join(source.folder for source in sources)} in {models_dir}")
    return 0


def pull_source(source: WeightSource, models_dir: Path, *, token: str | None, say: Say) -> None:
    final = models_dir / source.folder
    work = final if final.is_dir() else models_dir / STAGING / source.folder
    for part in source.parts:
        try:
            download_part(part, work / part.subfolder if part.subfolder else work, token=token, say=say)
        except PullFailed:
            _drop_if_empty(work, models_dir)
            raise
    if source.model_index is not None:
        (work / "model_index.json").write_text(json.dumps(source.model_index, indent=2) + "\n")
    if work != final:
        final.parent.mkdir(parents=True, exist_ok=True)
        work.rename(final)
        _drop_staging_if_empty(models_dir)
    say(f"{final}/ is complete")


def download_part(part: RepoPart, dest: Path, *, token: str | None, say: Say) -> None:
    """The part's allow-patterned files at the repository's current main commit, one `hf_hub_download` each."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(token=token)
    try:
        commit = api.model_info(part.repo_id, revision="main").sha
        listing = [
            item
            for item in api.list_repo_tree(part.repo_id, recursive=True, revision=commit)
            if isinstance(item, RepoFile)
        ]
    except Exception as exc:
        raise PullFailed(refusal(part, exc)) from exc
    sizes = {item.path: item.size for item in listing}
    # fnmatch, as huggingface_hub matches allow_patterns: `*` also crosses `/`, so `transformer/*` takes the folder.
    wanted = [path for path in sizes if any(fnmatch(path, pattern) for pattern in part.allow_patterns)]
    if not wanted or commit is None:
        raise PullFailed(
            f"{part.repo_id} has none of the files genmill loads ({' '.join(part.allow_patterns)}); "
            "place the weights by hand as docs/weights.md describes"
        )
    total = sum(sizes[path] for path in wanted)
    say(f"{part.repo_id} ({commit[:8]}): {len(wanted)} files, {total / 1e9:.2f} GB -> {dest}/")
    for path in wanted:
        try:
            hf_hub_download(part.repo_id, path, revision=commit, local_dir=dest, token=token)
        except Exception as exc:
            raise PullFailed(refusal(part, exc, path)) from exc


def refusal(part: RepoPart, exc: Exception, path: str = "") -> str:
    """One sentence for a failed request: the licence page and the token hint when the Hub refused access."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
    if isinstance(exc, GatedRepoError) or status in (401, 403):
        return (
            f"{part.repo_id} is gated or refused access (HTTP {status}): accept its licence at {part.page} "
            f"while logged in to Hugging Face, then {TOKEN_HINT}"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return f"{part.repo_id} was not found on the Hub (HTTP {status}); check the name or {TOKEN_HINT}"
    what = f"{part.repo_id}/{path}" if path else part.repo_id
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"downloading {what} failed ({detail}); run the same command again to continue where it stopped"


def _drop_if_empty(work: Path, models_dir: Path) -> None:
    """Remove a staging folder that received no file, so a refused pull leaves nothing behind."""
    if work.parent != models_dir / STAGING or not work.is_dir():
        return
    if not any(path.is_file() and ".cache" not in path.relative_to(work).parts for path in work.rglob("*")):
        shutil.rmtree(work)
        _drop_staging_if_empty(models_dir)


def _drop_staging_if_empty(models_dir: Path) -> None:
    staging = models_dir / STAGING
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def pull_command(targets: Sequence[str], *, models_dir: Path, token: str | None, dry_run: bool, say: Say) -> int:
    """`genmill models pull`: 0 when done (or described), 1 when a download failed, 2 for a target it cannot
    resolve."""
    from genmill.catalog import build_catalog
    from genmill.weights.sources import UnknownTarget, resolve_targets

    catalog_families: dict[str, set[tuple[str, str]]] = {}
    for entry in build_catalog():
        catalog_families.setdefault(entry.family, set()).add((entry.model, entry.task_type))
    try:
        sources = resolve_targets(targets, catalog_families)
    except UnknownTarget as exc:
        say(f"error: {exc}")
        return 2
    if dry_run:
        describe(sources, models_dir, say)
        return 0
    for name in ("httpx", "httpx2"):  # one INFO line per HTTP request would bury the progress bars
        logging.getLogger(name).setLevel(logging.WARNING)
    return pull(sources, models_dir, token=token, say=say)
