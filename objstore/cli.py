"""The ``objstore`` command line.

Every command takes ``--repo`` (default: ``$OBJSTORE_REPO`` or ``.objstore``),
prints plain text or, with ``--json``, one JSON document, and exits with:

* 0 — success
* 1 — an objstore error (the message names the problem)
* 2 — bad usage
* 3 — ``fsck`` found problems
* 4 — ``push`` was rejected (the remote moved)
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import click

from . import Repository
from .errors import ObjstoreError, PushRejected
from .progress import byte_progress

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR, EXIT_FSCK, EXIT_REJECTED = 1, 3, 4


def _emit(ctx: click.Context, data: Any, text: str | None = None) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(data, indent=2, default=_jsonable))
    elif text is not None:
        click.echo(text)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _repo(ctx: click.Context) -> Repository:
    return Repository.open(ctx.obj["repo"], storage_options=ctx.obj["storage_options"])


def handled(fn: F) -> F:
    """Map objstore errors to exit code 1 with the message on stderr."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PushRejected as exc:
            click.echo(f"objstore: {exc}", err=True)
            sys.exit(EXIT_REJECTED)
        except ObjstoreError as exc:
            click.echo(f"objstore: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        except (TypeError, ValueError) as exc:
            click.echo(f"objstore: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE parsed as JSON when it is JSON) as a dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", "-r", default=lambda: os.environ.get("OBJSTORE_REPO", ".objstore"), show_default="$OBJSTORE_REPO or .objstore", help="Repository path or fsspec URL.")
@click.option("--option", "-o", "options", multiple=True, help="fsspec storage option KEY=VALUE (VALUE may be JSON); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def main(ctx: click.Context, repo: str, options: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """A git-like, content-addressed store for ML artifacts.

    \b
    Example:
      objstore -r store init
      objstore -r store snapshot data/ -m "first" --ref main
      objstore -r store log main
    """
    ctx.obj = {"repo": repo, "storage_options": parse_options(options), "json": as_json, "progress": None if not quiet else False}


@main.command()
@click.option("--hash", "hash_name", default="xxh3-128", show_default=True, type=click.Choice(["xxh3-128", "blake2b-256"]))
@click.pass_context
@handled
def init(ctx: click.Context, hash_name: str) -> None:
    """Create a repository.

    \b
    Example:  objstore -r s3://bucket/store init --hash blake2b-256
    """
    repo = Repository.init(ctx.obj["repo"], hash=hash_name, storage_options=ctx.obj["storage_options"])
    _emit(ctx, {"location": repo.location, "hash": hash_name}, f"initialized {repo.location} ({hash_name})")


@main.command()
@click.argument("path", type=click.Path())
@click.option("--message", "-m", default="", help="Commit message.")
@click.option("--ref", help="Ref to move to the new commit (compare-and-set against its current value).")
@click.option("--meta", multiple=True, help="Commit metadata KEY=VALUE (VALUE may be JSON); repeatable.")
@click.pass_context
@handled
def snapshot(ctx: click.Context, path: str, message: str, ref: str | None, meta: tuple[str, ...]) -> None:
    """Store a directory or file and commit it.

    \b
    Example:  objstore snapshot checkpoints/ -m "epoch 3" --ref model/latest
    """
    repo = _repo(ctx)
    with byte_progress("snapshot", enabled=ctx.obj["progress"]) as tick:
        tree = repo.snapshot(path, progress=tick)
    parents: list[str] = []
    current = None
    if ref:
        try:
            current = repo.refs.get(ref)
            parents = [current]
        except KeyError:
            pass
    commit = repo.commit(tree, parents=parents, message=message, metadata=parse_options(meta))
    if ref:
        from .refs import ABSENT

        repo.refs.set(ref, commit, expect=current if current else ABSENT, message=message)
    _emit(ctx, {"commit": commit, "tree": tree, "ref": ref}, commit)


@main.command()
@click.argument("ref_or_commit")
@click.option("--limit", "-n", type=int, default=None)
@click.pass_context
@handled
def log(ctx: click.Context, ref_or_commit: str, limit: int | None) -> None:
    """Commit history, newest first.

    \b
    Example:  objstore log main -n 5
    """
    repo = _repo(ctx)
    rows: list[dict[str, Any]] = [
        {"id": cid, "time": c.time, "author": c.author, "message": c.message, "parents": list(c.parents), "metadata": dict(c.metadata)}
        for cid, c in repo.log(ref_or_commit, limit)
    ]
    text = "\n".join(f"{r['id'][:12]}  {datetime.fromtimestamp(r['time']):%Y-%m-%d %H:%M:%S}  {r['message']}" for r in rows)
    _emit(ctx, rows, text)


@main.command()
@click.argument("spec")
@click.pass_context
@handled
def show(ctx: click.Context, spec: str) -> None:
    """Show one object (commit, tree, or file list).

    \b
    Example:  objstore show main
    """
    repo = _repo(ctx)
    oid = repo.resolve(spec)
    obj = repo.get(oid)
    kind = repo.kind(oid)
    data: dict[str, Any] = {"id": oid, "kind": kind}
    if kind == "blob":
        data["size"] = obj.size
    else:
        data.update(json.loads(json.dumps(obj, default=_jsonable)))
    _emit(ctx, data, json.dumps(data, indent=2, default=_jsonable))


@main.command()
@click.argument("spec")
@click.argument("path", default="")
@click.option("--recursive", "-R", is_flag=True)
@click.pass_context
@handled
def ls(ctx: click.Context, spec: str, path: str, recursive: bool) -> None:
    """List a directory of a commit or tree.

    \b
    Example:  objstore ls main data/ -R
    """
    repo = _repo(ctx)
    if recursive:
        rows = [{"path": p, **dataclasses.asdict(e)} for p, e in repo.walk(spec, path)]
    else:
        rows = [{"path": e.name, **dataclasses.asdict(e)} for e in repo.ls(spec, path)]
    text = "\n".join(f"{r['kind']:9} {r['size']:>12}  {r['path']}{'/' if r['kind'] == 'dir' else ''}" for r in rows)
    _emit(ctx, rows, text)


@main.command()
@click.argument("spec")
@click.argument("path")
@click.pass_context
@handled
def cat(ctx: click.Context, spec: str, path: str) -> None:
    """Write one stored file to stdout (verified as it streams).

    \b
    Example:  objstore cat main config.json
    """
    repo = _repo(ctx)
    out = sys.stdout.buffer
    with repo.open_file(spec, path) as f:
        while block := f.read(1 << 20):
            out.write(block)


@main.command()
@click.argument("spec")
@click.argument("dest", type=click.Path())
@click.option("--path", "paths", multiple=True, help="Only these paths (repeatable).")
@click.pass_context
@handled
def checkout(ctx: click.Context, spec: str, dest: str, paths: tuple[str, ...]) -> None:
    """Materialize a commit or tree into DEST, every byte verified.

    \b
    Example:  objstore checkout main restored/ --path data/train.csv
    """
    repo = _repo(ctx)
    with byte_progress("checkout", enabled=ctx.obj["progress"]) as tick:
        result = repo.checkout(spec, dest, list(paths) or None, progress=tick)
    _emit(ctx, result, f"{result.files} files written ({result.bytes} bytes), {result.skipped} already in place")


@main.command()
@click.argument("a")
@click.argument("b")
@click.pass_context
@handled
def diff(ctx: click.Context, a: str, b: str) -> None:
    """Files added, removed and modified from A to B.

    \b
    Example:  objstore diff main~old main
    """
    repo = _repo(ctx)
    changes = repo.diff(a, b)
    rows: list[dict[str, Any]] = [{"status": c.status, "path": c.path, "size_delta": c.size_delta} for c in changes]
    _emit(ctx, rows, "\n".join(f"{r['status'][0].upper()} {r['path']}" for r in rows))


@main.group()
def refs() -> None:
    """List, set, delete refs and show their history.

    \b
    Example:  objstore refs history model/latest
    """


@refs.command("list")
@click.argument("prefix", default="")
@click.pass_context
@handled
def refs_list(ctx: click.Context, prefix: str) -> None:
    """Live refs under PREFIX.

    \b
    Example:  objstore refs list model/
    """
    found = _repo(ctx).refs.list(prefix)
    _emit(ctx, found, "\n".join(f"{v[:12]}  {k}" for k, v in found.items()))


@refs.command("set")
@click.argument("name")
@click.argument("target")
@click.option("--expect", help="Compare-and-set: only if the ref holds this id now.")
@click.option("--message", "-m", default="")
@click.pass_context
@handled
def refs_set(ctx: click.Context, name: str, target: str, expect: str | None, message: str) -> None:
    """Point NAME at TARGET (id, prefix, or ref).

    \b
    Example:  objstore refs set prod 3fa9c2d1 --expect 77e1b0aa
    """
    entry = _repo(ctx).refs.set(name, target, expect=expect, message=message)
    _emit(ctx, entry, f"{name} -> {entry.new}")


@refs.command("delete")
@click.argument("name")
@click.pass_context
@handled
def refs_delete(ctx: click.Context, name: str) -> None:
    """Delete a ref (its history stays).

    \b
    Example:  objstore refs delete scratch
    """
    entry = _repo(ctx).refs.delete(name)
    _emit(ctx, entry, f"deleted {name}")


@refs.command("history")
@click.argument("name")
@click.pass_context
@handled
def refs_history(ctx: click.Context, name: str) -> None:
    """Every move of a ref: when, who, from what.

    \b
    Example:  objstore refs history prod
    """
    entries = _repo(ctx).refs.history(name)
    text = "\n".join(
        f"#{e.seq} {datetime.fromtimestamp(e.time):%Y-%m-%d %H:%M:%S} {e.who}: {(e.old or '-')[:12]} -> {(e.new or 'deleted')[:12]} {e.message}"
        for e in entries
    )
    _emit(ctx, entries, text)


def _transfer_text(verb: str, r: Any) -> str:
    return f"{verb} {r.objects} objects ({r.bytes} bytes) in {r.packs} pack(s); refs updated: {', '.join(r.refs_updated) or 'none'}; {r.requests} requests"


@main.command()
@click.argument("url")
@click.argument("refs_", nargs=-1, metavar="[REF]...")
@click.option("--force", is_flag=True, help="Overwrite remote refs that moved elsewhere.")
@click.pass_context
@handled
def push(ctx: click.Context, url: str, refs_: tuple[str, ...], force: bool) -> None:
    """Send what URL lacks and move its refs (default: all refs).

    \b
    Example:  objstore push s3://bucket/store main -o anon=false
    """
    with byte_progress("push", enabled=ctx.obj["progress"]) as tick:
        result = _repo(ctx).push(url, list(refs_) or None, force=force, storage_options=ctx.obj["storage_options"], progress=tick)
    _emit(ctx, result, _transfer_text("sent", result))


@main.command()
@click.argument("url")
@click.argument("refs_", nargs=-1, metavar="[REF]...")
@click.option("--depth", type=int, default=None, help="Only the last N commits of history.")
@click.pass_context
@handled
def fetch(ctx: click.Context, url: str, refs_: tuple[str, ...], depth: int | None) -> None:
    """Bring in what REFs of URL need (default: all refs).

    \b
    Example:  objstore fetch sftp://host/srv/store main --depth 1
    """
    with byte_progress("fetch", enabled=ctx.obj["progress"]) as tick:
        result = _repo(ctx).fetch(url, list(refs_) or None, depth=depth, storage_options=ctx.obj["storage_options"], progress=tick)
    _emit(ctx, result, _transfer_text("received", result))


@main.command()
@click.argument("url")
@click.argument("dest", type=click.Path())
@click.pass_context
@handled
def clone(ctx: click.Context, url: str, dest: str) -> None:
    """A new repository at DEST with every ref and object of URL.

    \b
    Example:  objstore clone s3://bucket/store ./store
    """
    repo = Repository.clone(url, dest, storage_options=ctx.obj["storage_options"])
    _emit(ctx, {"location": repo.location, "refs": repo.refs.list()}, f"cloned {url} into {dest}")


@main.command()
@click.option("--quick", is_flag=True, help="Check structure only; do not re-hash every object.")
@click.pass_context
@handled
def fsck(ctx: click.Context, quick: bool) -> None:
    """Verify packs, objects and every ref's graph. Exit 3 if anything is wrong.

    \b
    Example:  objstore -r s3://bucket/store fsck
    """
    with byte_progress("fsck", enabled=ctx.obj["progress"]) as tick:
        report = _repo(ctx).fsck(full=not quick, progress=tick)
    lines = [f"{report.packs_checked} packs, {report.objects_checked} objects, {report.refs_checked} refs checked"]
    lines += [f"bad pack {k}: {v}" for k, v in report.bad_packs.items()]
    lines += [f"bad object {k}: {v}" for k, v in report.bad_objects.items()]
    lines += [f"missing object {k} (needed by {', '.join(v) or 'no ref'})" for k, v in report.missing_objects.items()]
    lines += [f"damaged ref {k}" for k in report.damaged_refs]
    lines.append("ok" if report.ok else "PROBLEMS FOUND")
    _emit(ctx, report, "\n".join(lines))
    if not report.ok:
        sys.exit(EXIT_FSCK)


@main.command()
@click.option("--grace", default=3600.0, show_default=True, help="Seconds: packs younger than this are kept whole.")
@click.pass_context
@handled
def gc(ctx: click.Context, grace: float) -> None:
    """Remove objects no ref or ref history reaches.

    \b
    Example:  objstore gc --grace 0
    """
    with byte_progress("gc", enabled=ctx.obj["progress"]) as tick:
        result = _repo(ctx).gc(timedelta(seconds=grace), progress=tick)
    _emit(ctx, result, f"removed {result.objects_removed} objects, freed {result.bytes_freed} bytes")


@main.command()
@click.pass_context
@handled
def repack(ctx: click.Context) -> None:
    """Merge all packs into one.

    \b
    Example:  objstore repack
    """
    result = _repo(ctx).repack()
    _emit(ctx, result, f"{result.packs_before} packs -> {result.packs_after}")


@main.command()
@click.pass_context
@handled
def stats(ctx: click.Context) -> None:
    """Logical and stored sizes, counts, files on disk.

    \b
    Example:  objstore stats --json
    """
    s = _repo(ctx).stats()
    text = "\n".join(f"{k:14} {v}" for k, v in dataclasses.asdict(s).items()) + f"\n{'dedup_ratio':14} {s.dedup_ratio:.2f}"
    _emit(ctx, {**dataclasses.asdict(s), "dedup_ratio": s.dedup_ratio}, text)


if __name__ == "__main__":
    main()
