"""The ``objstore`` command line.

Every command takes ``--repo`` (default: ``$OBJSTORE_REPO``, else the
nearest ``.objstore`` in the current folder or a parent), prints plain text
(sizes in binary units, local times) or, with ``--json``, one JSON document
(exact bytes, epoch times); ``--json``, ``-o``, ``-q`` and ``--debug`` go
before or after the subcommand. It exits with:

* 0 — success
* 1 — an objstore error (the message names the problem)
* 2 — bad usage
* 3 — ``fsck`` found problems
* 4 — ``push`` was rejected (the remote moved)
* 130 — interrupted (Ctrl-C); ``snapshot`` says what it kept
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from . import Repository
from .cliutil import (
    add_common_options,
    disk_size,
    emit,
    guarded,
    human_bytes,
    local_time,
    parse_options,
    plural,
    progress_enabled,
    route_warnings,
    set_target,
    signed_bytes,
    transfer_text,
    warn,
)
from .config import CONFIG_PATH
from .errors import NotARepository, PushRejected
from .interrupt import interruptible
from .objects import Blob, ChunkedBlob, Commit, Tree
from .progress import byte_progress

EXIT_ERROR, EXIT_FSCK, EXIT_REJECTED = 1, 3, 4
REPO_DIR = ".objstore"

__all__ = ["main", "parse_options"]


def _emit(ctx: click.Context, data: Any, text: str | None = None) -> None:
    emit(ctx, data, text, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def find_repository(start: str | os.PathLike[str] | None = None) -> str | None:
    """The nearest ``.objstore`` holding a repository in ``start`` (default: cwd) or a parent, like git."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / REPO_DIR / CONFIG_PATH).is_file():
            return str(folder / REPO_DIR)
    return None


def _location(ctx: click.Context) -> str:
    """The repository the command works on: ``-r``, ``$OBJSTORE_REPO``, or the nearest ``.objstore``."""
    given = ctx.obj["repo"] or os.environ.get("OBJSTORE_REPO") or None
    if given:
        return str(given)
    found = find_repository()
    if found is None:
        raise NotARepository(
            f"{os.getcwd()}{os.sep}{REPO_DIR}",
            hint="none in any parent folder either; create one with 'objstore init', or name one with -r PATH or OBJSTORE_REPO",
        )
    return found


def _repo(ctx: click.Context) -> Repository:
    location = _location(ctx)
    set_target(ctx, location)
    try:
        return Repository.open(location, storage_options=ctx.obj["storage_options"])
    except NotARepository:
        if "://" in location:
            raise
        raise NotARepository(location, hint=f"create one with 'objstore -r {location} init'") from None


handled = guarded("objstore", [(PushRejected, EXIT_REJECTED)])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", "-r", default=None, help="Repository path or fsspec URL (default: $OBJSTORE_REPO, else the nearest .objstore here or in a parent folder).")
@click.pass_context
def main(ctx: click.Context, repo: str | None) -> None:
    """A git-like, content-addressed store for ML artifacts.

    \b
    Example:
      objstore -r store init
      objstore -r store snapshot data/ -m "first" --ref main
      objstore -r store log main
    """
    route_warnings("objstore")
    obj = ctx.ensure_object(dict)
    obj["repo"] = repo
    obj.setdefault("storage_options", {})
    if repo:
        obj["target"] = repo


@main.command()
@click.argument("location", required=False)
@click.option("--hash", "hash_name", default="xxh3-128", show_default=True, type=click.Choice(["xxh3-128", "blake2b-256"]))
@click.pass_context
@handled
def init(ctx: click.Context, location: str | None, hash_name: str) -> None:
    """Create a repository at LOCATION (default: the --repo one).

    \b
    Example:  objstore init s3://bucket/store --hash blake2b-256
    """
    location = location or ctx.obj["repo"] or os.environ.get("OBJSTORE_REPO") or REPO_DIR
    set_target(ctx, location)
    repo = Repository.init(location, hash=hash_name, storage_options=ctx.obj["storage_options"])
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
    added = repo.odb.added_bytes, repo.odb.added_objects
    with (
        interruptible(repo, "objstore", "running the same snapshot", "objstore gc"),
        byte_progress("snapshot", lambda: disk_size(path), enabled=progress_enabled(ctx)) as tick,
    ):
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
    seen = repo.last_snapshot
    assert seen is not None  # set by repo.snapshot above
    files, size = seen.files, repo.get_tree(tree).size
    new_bytes, new_objects = repo.odb.added_bytes - added[0], repo.odb.added_objects - added[1]
    data = {"commit": commit, "tree": tree, "ref": ref, "files": files, "bytes": size, "new_bytes": new_bytes, "new_objects": new_objects}
    where = f" on {ref}" if ref else ""
    _emit(ctx, data, f"commit {commit}{where}: {plural(files, 'file')}, {human_bytes(size)} ({human_bytes(new_bytes)} new)")
    if not ref:
        warn("objstore", f"no ref points at commit {commit[:12]}; name it with 'objstore refs set NAME {commit[:12]}' "
                         "(or snapshot with --ref), or gc will remove it")


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
    text = "\n".join(f"{r['id'][:12]}  {local_time(r['time'])}  {r['message']}" for r in rows)
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
    if isinstance(obj, Blob | ChunkedBlob):
        data["size"] = obj.size
    else:
        data.update(json.loads(json.dumps(obj, default=_jsonable)))
    _emit(ctx, data, _show_text(oid, obj))


def _show_text(oid: str, obj: Any) -> str:
    if isinstance(obj, Commit):
        lines = [f"commit  {oid}", f"tree    {obj.tree}"]
        lines += [f"parent  {p}" for p in obj.parents]
        lines += [f"author  {obj.author or '-'}", f"date    {local_time(obj.time)}"]
        lines += [f"meta    {k} = {json.dumps(v, default=str)}" for k, v in obj.metadata.items()]
        if obj.message:
            lines += ["", *(f"    {line}" for line in obj.message.splitlines())]
        return "\n".join(lines)
    if isinstance(obj, Tree):
        head = f"tree {oid}: {plural(len(obj.entries), 'entry', 'entries')}, {human_bytes(obj.size)}"
        return "\n".join([head, *(_entry_line(e.name, e) for e in obj.entries)])
    if isinstance(obj, ChunkedBlob):
        return f"chunked blob {oid}: {human_bytes(obj.size)} in {plural(len(obj.chunks), 'chunk')}"
    return f"blob {oid}: {human_bytes(obj.size)}"


def _entry_line(path: str, e: Any) -> str:
    size = "" if e.kind in ("dir", "symlink") else human_bytes(e.size)
    suffix = "/" if e.kind == "dir" else f" -> {e.target}" if e.kind == "symlink" and e.target else ""
    return f"{e.kind:9} {size:>10}  {path}{suffix}"


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
    if recursive:
        text = "\n".join(_entry_line(p, e) for p, e in repo.walk(spec, path))
    else:
        text = "\n".join(_entry_line(e.name, e) for e in repo.ls(spec, path))
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
    with byte_progress("checkout", enabled=progress_enabled(ctx)) as tick:
        result = repo.checkout(spec, dest, list(paths) or None, progress=tick)
    text = f"{plural(result.files, 'file')} written ({human_bytes(result.bytes)}), {result.skipped} already in place"
    if result.removed:
        text += f", {len(result.removed)} removed (written by the previous checkout, not in this version)"
    if result.left:
        text += f"\nleft {len(result.left)} changed since the previous checkout (not in this version): {', '.join(result.left)}"
    _emit(ctx, result, text)


@main.command()
@click.argument("a")
@click.argument("b")
@click.pass_context
@handled
def diff(ctx: click.Context, a: str, b: str) -> None:
    """Files added, deleted and modified from A to B.

    One line per file: A (added), D (deleted) or M (modified), the size
    change, the path.

    \b
    Example:  objstore diff main~1 main
    """
    repo = _repo(ctx)
    changes = repo.diff(a, b)
    rows: list[dict[str, Any]] = [{"status": c.status, "path": c.path, "size_delta": c.size_delta} for c in changes]
    letters = {"added": "A", "removed": "D", "modified": "M"}
    text = "\n".join(f"{letters.get(r['status'], '?')} {signed_bytes(r['size_delta']):>12}  {r['path']}" for r in rows)
    _emit(ctx, rows, text or "no differences")


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
    Example:  objstore refs set prod main~1 --expect main
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

    def line(e: Any) -> str:
        move = f"{(e.old or '-')[:12]} -> {(e.new or 'deleted')[:12]}" if e.moved else "(no move)"
        freed = f" [released {', '.join(i[:12] for i in e.released)}]" if e.released else ""
        return f"#{e.seq} {local_time(e.time)} {e.who}: {move} {e.message}{freed}"

    text = "\n".join(line(e) for e in entries)
    _emit(ctx, entries, text)


def _transfer_text(verb: str, r: Any) -> str:
    return transfer_text(verb, r.objects, r.bytes, r.packs, sorted(r.refs_updated), r.requests)


@main.command()
@click.argument("url")
@click.argument("refs_", nargs=-1, metavar="[REF]...")
@click.option("--force", is_flag=True, help="Overwrite remote refs that moved elsewhere.")
@click.option("--create", is_flag=True, help="Create the remote repository if URL holds none (else that is an error).")
@click.pass_context
@handled
def push(ctx: click.Context, url: str, refs_: tuple[str, ...], force: bool, create: bool) -> None:
    """Send what URL lacks and move its refs (default: all refs).

    URL must hold a repository (`objstore init URL`), unless --create.

    \b
    Example:  objstore push s3://bucket/store main -o anon=false
    """
    repo = _repo(ctx)
    set_target(ctx, url)
    with byte_progress("push", enabled=progress_enabled(ctx)) as tick:
        result = repo.push(
            url, list(refs_) or None, force=force, create=create, storage_options=ctx.obj["storage_options"], progress=tick
        )
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
    Example:  objstore fetch s3://bucket/store main --depth 1
    """
    repo = _repo(ctx)
    set_target(ctx, url)
    with byte_progress("fetch", enabled=progress_enabled(ctx)) as tick:
        result = repo.fetch(url, list(refs_) or None, depth=depth, storage_options=ctx.obj["storage_options"], progress=tick)
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
    set_target(ctx, url)
    with byte_progress("clone", enabled=progress_enabled(ctx)) as tick:
        repo = Repository.clone(url, dest, storage_options=ctx.obj["storage_options"], progress=tick)
    found = repo.refs.list()
    _emit(ctx, {"location": repo.location, "refs": found}, f"cloned {url} into {dest} ({plural(len(found), 'ref')})")


@main.command()
@click.option("--quick", is_flag=True, help="Check structure only; do not re-hash every object.")
@click.pass_context
@handled
def fsck(ctx: click.Context, quick: bool) -> None:
    """Verify packs, objects and every ref's graph. Exit 3 if anything is wrong.

    \b
    Example:  objstore -r s3://bucket/store fsck
    """
    repo = _repo(ctx)
    with byte_progress("fsck", enabled=progress_enabled(ctx)) as tick:
        report = repo.fsck(full=not quick, progress=tick)
    counts = [plural(report.packs_checked, "pack"), plural(report.objects_checked, "object"), plural(report.refs_checked, "ref")]
    lines = [f"{', '.join(counts)} checked"]
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
    repo = _repo(ctx)
    with byte_progress("gc", enabled=progress_enabled(ctx)) as tick:
        result = repo.gc(timedelta(seconds=grace), progress=tick)
    _emit(ctx, result, f"removed {plural(result.objects_removed, 'object')}, freed {human_bytes(result.bytes_freed)}")


@main.command()
@click.pass_context
@handled
def repack(ctx: click.Context) -> None:
    """Merge all packs into one.

    \b
    Example:  objstore repack
    """
    result = _repo(ctx).repack()
    _emit(ctx, result, f"{plural(result.packs_before, 'pack')} -> {result.packs_after}")


@main.command()
@click.pass_context
@handled
def stats(ctx: click.Context) -> None:
    """Logical and stored sizes, counts, files on disk.

    \b
    Example:  objstore stats --json
    """
    s = _repo(ctx).stats()
    fields = dataclasses.asdict(s)
    text = "\n".join(f"{k:14} {human_bytes(v) if k.endswith('_bytes') else v}" for k, v in fields.items())
    _emit(ctx, {**fields, "dedup_ratio": s.dedup_ratio}, f"{text}\n{'dedup_ratio':14} {s.dedup_ratio:.2f}")


@main.command()
@click.argument("store", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes it to the network).")
@click.option("--port", type=int, default=None, help="Port (default: the first free one from 8700).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.pass_context
@handled
def ui(ctx: click.Context, store: str | None, host: str, port: int | None, open_browser: bool) -> None:
    """Browse a repository in a web browser: refs, commits, trees, files, diffs, stats.

    Read-only; STORE defaults to the repository (-r, $OBJSTORE_REPO, or the
    nearest .objstore). Stop with Ctrl-C.

    \b
    Example:  objstore ui ./store
    """
    try:
        from .web import create_app, serve
    except ImportError as exc:
        raise click.ClickException(f"the web UI needs the 'ui' extra (pip install 'objstore[ui]'): {exc}") from None
    location = store or _location(ctx)
    set_target(ctx, location)
    repo = Repository.open(location, storage_options=ctx.obj["storage_options"])
    server = serve(create_app(repo), host, port, first_port=8700)
    click.echo(f"* objstore UI of {repo.location} at: {server.url}")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    server.wait()


@main.command()
@click.argument("store")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (127.0.0.1: this machine only).")
@click.option("--port", default=8420, show_default=True, type=int)
@click.option("--tokens", "tokens_file", default=lambda: os.environ.get("OBJSTORE_TOKENS"), show_default="$OBJSTORE_TOKENS",
              type=click.Path(dir_okay=False), help="Token file (objstore token add); without one the server is read-only for anyone.")
@click.option("--append-only", is_flag=True, help="Refs only move forward; no ref deletion, no gc.")
@click.option("--read-only", is_flag=True, help="No writes at all.")
@click.option("--max-body", type=int, default=None, help="Largest request body in bytes (default 16 GiB).")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate chain (PEM).")
@click.option("--hash", "hash_name", default="xxh3-128", show_default=True, type=click.Choice(["xxh3-128", "blake2b-256"]),
              help="Id hash if STORE holds no repository yet (one is created).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--ui", is_flag=True, help="Also serve the read-only repository browser at /ui/ (behind the read scope).")
@click.pass_context
@handled
def serve(
    ctx: click.Context,
    store: str,
    host: str,
    port: int,
    tokens_file: str | None,
    append_only: bool,
    read_only: bool,
    max_body: int | None,
    ssl_keyfile: str | None,
    ssl_certfile: str | None,
    hash_name: str,
    log_level: str,
    ui: bool,
) -> None:
    """Serve the repository STORE (a path or fsspec URL) to a team over HTTP(S).

    \b
    Example:
      objstore token add alice --scope write --tokens tokens.json
      objstore serve ./store --tokens tokens.json --port 8420
      objstore -r mine push http://127.0.0.1:8420 main     # OBJSTORE_TOKEN=...
    """
    try:
        import uvicorn

        from .server import DEFAULT_MAX_BODY, create_app
    except ImportError as exc:
        raise click.ClickException(f"objstore serve needs the server extra: pip install 'objstore[server]' ({exc})") from None
    if bool(ssl_keyfile) != bool(ssl_certfile):
        raise click.UsageError("--ssl-keyfile and --ssl-certfile go together")
    opts = ctx.obj["storage_options"]
    from .errors import NotARepository

    try:
        repo = Repository.open(store, storage_options=opts)
    except NotARepository:
        repo = Repository.init(store, hash=hash_name, storage_options=opts)
        click.echo(f"objstore serve: created a new repository at {repo.location} ({hash_name})", err=True)
    if tokens_file is not None and not os.path.exists(tokens_file):
        raise click.UsageError(f"no tokens file at {tokens_file}: make one with objstore token add NAME --scope write --tokens {tokens_file}")
    app = create_app(repo, tokens_file=tokens_file, append_only=append_only, read_only=read_only,
                     max_body=max_body if max_body is not None else DEFAULT_MAX_BODY, ui=ui)
    scheme = "https" if ssl_certfile else "http"
    mode = app.state.server.mode
    click.echo(f"objstore serve: {repo.location} on {scheme}://{host}:{port} ({mode})", err=True)
    if tokens_file is None:
        click.echo("objstore serve: no tokens file: anyone who can reach this address may read, nobody may write", err=True)
    if ui:
        gate = "" if tokens_file is None else "?token=<a read token>"
        click.echo(f"objstore serve: browser at {scheme}://{host}:{port}/ui/{gate}", err=True)
    uvicorn.run(app, host=host, port=port, ssl_keyfile=ssl_keyfile, ssl_certfile=ssl_certfile, log_level=log_level,
                server_header=False, proxy_headers=True, timeout_keep_alive=30)


@main.group()
def token() -> None:
    """Make, list and revoke the access tokens of an objstore server.

    \b
    Scopes: read (fetch, clone, read in place), write (also push),
    admin (also gc through the server).

    \b
    Example:  objstore token add alice --scope write --tokens tokens.json
    """


def _tokens_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    from .server.tokens import default_tokens_file

    return click.option(  # type: ignore[no-any-return]
        "--tokens", "tokens_file", default=default_tokens_file, show_default="$OBJSTORE_TOKENS or ~/.config/objstore/tokens.json",
        type=click.Path(dir_okay=False), help="The token file."
    )(fn)


@token.command("add")
@click.argument("name")
@click.option("--scope", required=True, type=click.Choice(["read", "write", "admin"]))
@_tokens_option
@click.pass_context
@handled
def token_add(ctx: click.Context, name: str, scope: str, tokens_file: str) -> None:
    """Make a token for NAME and print it (once: only its hash is stored).

    \b
    Example:  objstore token add alice --scope write --tokens tokens.json
    """
    from .server.tokens import TokenFile

    secret = TokenFile(tokens_file).add(name, scope)
    _emit(ctx, {"name": name, "scope": scope, "token": secret, "tokens_file": tokens_file}, secret)
    if not (ctx.obj or {}).get("json"):
        click.echo(f"token for {name!r} ({scope}) added to {tokens_file}; it is shown only now", err=True)


@token.command("list")
@_tokens_option
@click.pass_context
@handled
def token_list(ctx: click.Context, tokens_file: str) -> None:
    """Names, scopes and creation times of the tokens (never the tokens).

    \b
    Example:  objstore token list --tokens tokens.json
    """
    from .server.tokens import TokenFile

    rows: list[dict[str, Any]] = [{"name": t.name, "scope": t.scope, "created": t.created} for t in TokenFile(tokens_file).load()]
    _emit(ctx, rows, "\n".join(f"{r['name']:24} {r['scope']:6} {local_time(r['created'])}" for r in rows))


@token.command("revoke")
@click.argument("name")
@_tokens_option
@click.pass_context
@handled
def token_revoke(ctx: click.Context, name: str, tokens_file: str) -> None:
    """Remove NAME's token; a running server refuses it from its next request on.

    \b
    Example:  objstore token revoke alice --tokens tokens.json
    """
    from .server.tokens import TokenFile

    gone = TokenFile(tokens_file).revoke(name)
    _emit(ctx, {"name": gone.name, "scope": gone.scope}, f"revoked {gone.name} ({gone.scope})")


add_common_options(main)

if __name__ == "__main__":
    main()
