"""``trackio artifacts`` (also ``trackio-artifacts``): artifacts from the shell.

Exit codes: 0 success, 1 a trackio or objstore error (one line on stderr
naming the problem), 2 bad usage, 3 ``fsck`` found problems.
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

from objstore.cli import parse_options
from objstore.errors import ObjstoreError
from objstore.progress import byte_progress

from . import Api, Artifact, names
from . import remote_sync as sync
from .errors import TrackioError
from .store import get_repo

F = TypeVar("F", bound=Callable[..., Any])


def handled(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TrackioError, ObjstoreError, ValueError, TypeError, LookupError, OSError) as exc:
            click.echo(f"trackio: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _emit(ctx: click.Context, data: Any, text: str) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text)


def _api(ctx: click.Context) -> Api:
    return Api(ctx.obj["project"], remote=ctx.obj["remote"], storage_options=ctx.obj["storage_options"])


def _describe(a: Artifact) -> dict[str, Any]:
    return {
        "qualified_name": a.qualified_name,
        "name": a.name,
        "type": a.type,
        "version": a.version,
        "aliases": list(a.aliases),
        "size": a.size,
        "digest": a.digest,
        "description": a.description,
        "metadata": a.metadata,
        "created_at": a.created_at,
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """trackio: experiment tracking; artifacts stored in objstore.

    \b
    Example:
      trackio artifacts -p my_project list
    """


@main.group("artifacts")
@click.option("--project", "-p", default=lambda: os.environ.get("TRACKIO_PROJECT"), help="Project (default $TRACKIO_PROJECT).")
@click.option("--remote", default=lambda: os.environ.get("TRACKIO_REMOTE"), help="Remote URL (default $TRACKIO_REMOTE).")
@click.option("--option", "-o", "options", multiple=True, help="fsspec storage option KEY=VALUE for the remote; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def artifacts(ctx: click.Context, project: str | None, remote: str | None, options: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Versioned artifacts: list, show, log, download, aliases, lineage, sync.

    \b
    Example:
      trackio artifacts -p my_project list
      trackio artifacts -p my_project download my-model:prod
    """
    ctx.obj = {
        "project": project,
        "remote": remote,
        "storage_options": parse_options(options),
        "json": as_json,
        "progress": False if quiet else None,
    }


@artifacts.command("list")
@click.option("--type", "type_", help="Only artifacts of this type.")
@click.pass_context
@handled
def list_(ctx: click.Context, type_: str | None) -> None:
    """The latest version of every artifact in the project.

    \b
    Example:  trackio artifacts -p my_project list --type model
    """
    arts = _api(ctx).artifacts(ctx.obj["project"], type=type_)
    rows = [_describe(a) for a in arts]
    _emit(ctx, rows, "\n".join(f"{a.qualified_name:40} {a.type:12} {a.size:>12}  {', '.join(a.aliases)}" for a in arts))


@artifacts.command()
@click.argument("name")
@click.pass_context
@handled
def versions(ctx: click.Context, name: str) -> None:
    """Every version of an artifact, oldest first.

    \b
    Example:  trackio artifacts -p my_project versions my-model
    """
    arts = _api(ctx).artifact_versions(name, ctx.obj["project"])
    _emit(
        ctx,
        [_describe(a) for a in arts],
        "\n".join(f"{a.version:6} {datetime.fromtimestamp(a.created_at or 0):%Y-%m-%d %H:%M} {a.size:>12}  {', '.join(a.aliases)}" for a in arts),
    )


def _lineage(a: Artifact) -> dict[str, Any]:
    producer = a.logged_by()
    consumers = a.used_by()
    return {
        "logged_by": None if producer is None else {"id": producer.id, "name": producer.name, "project": producer.project},
        "used_by": [{"id": r.id, "name": r.name, "project": r.project} for r in consumers],
        "inputs_of_producer": [] if producer is None else [u.qualified_name for u in producer.used_artifacts()],
    }


@artifacts.command()
@click.argument("spec")
@click.pass_context
@handled
def show(ctx: click.Context, spec: str) -> None:
    """Manifest, metadata, aliases and lineage of one version.

    \b
    Example:  trackio artifacts -p my_project show my-model:v3
    """
    a = _api(ctx).artifact(spec, ctx.obj["project"])
    data = {**_describe(a), "manifest": a.manifest, "lineage": _lineage(a)}
    lines = [f"{a.qualified_name}  type={a.type}  size={a.size}  aliases={', '.join(a.aliases)}", f"digest {a.digest}"]
    if a.description:
        lines.append(f"description: {a.description}")
    if a.metadata:
        lines.append(f"metadata: {json.dumps(a.metadata)}")
    lines += [f"  {e['size']:>12}  {e['path']}" + (f"  -> {e['ref']}" if "ref" in e else "") for e in a.manifest or []]
    lin = data["lineage"]
    if lin["logged_by"]:
        lines.append(f"logged by run {lin['logged_by']['name']} ({lin['logged_by']['id']})")
    for r in lin["used_by"]:
        lines.append(f"used by run {r['name']} ({r['id']})")
    _emit(ctx, data, "\n".join(lines))


@artifacts.command()
@click.argument("path", type=click.Path())
@click.option("--name", "-n", help="Artifact name (default run-<run id>-<basename>).")
@click.option("--type", "type_", default=None, help='Artifact type (default "unspecified").')
@click.option("--alias", "-a", "aliases", multiple=True, help="Alias to put on the version; repeatable.")
@click.pass_context
@handled
def log(ctx: click.Context, path: str, name: str | None, type_: str | None, aliases: tuple[str, ...]) -> None:
    """Log a file or directory as a new version (in a short run named "cli").

    \b
    Example:  trackio artifacts -p my_project log checkpoints/ -n my-model --type model -a prod
    """
    import trackio

    project = ctx.obj["project"]
    if not project:
        raise click.UsageError("log needs --project (or $TRACKIO_PROJECT)")
    with trackio.init(project=project, name="cli", remote=ctx.obj["remote"], storage_options=ctx.obj["storage_options"]):
        logged = trackio.log_artifact(path, name=name, type=type_, aliases=list(aliases) or None)
        if ctx.obj["remote"]:
            logged.wait()
    _emit(ctx, _describe(logged), f"logged {logged.qualified_name} ({logged.size} bytes) aliases={', '.join(logged.aliases)}")


@artifacts.command()
@click.argument("spec")
@click.option("--root", type=click.Path(), help="Destination (default ./artifacts/<project>/<name>_v<N>/).")
@click.pass_context
@handled
def download(ctx: click.Context, spec: str, root: str | None) -> None:
    """Materialize a version's files, every byte verified.

    \b
    Example:  trackio artifacts -p my_project download my-model:prod --root ./model
    """
    a = _api(ctx).artifact(spec, ctx.obj["project"])
    with byte_progress("download", a.size, enabled=ctx.obj["progress"]) as tick:
        path = a.download(root, progress=tick)
    _emit(ctx, {"path": path, **_describe(a)}, path)


@artifacts.group()
def alias() -> None:
    """Move or remove aliases (``latest`` is automatic).

    \b
    Example:  trackio artifacts -p my_project alias set my-model:v3 prod
    """


@alias.command("set")
@click.argument("spec")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
@handled
def alias_set(ctx: click.Context, spec: str, alias_name: str) -> None:
    """Point ALIAS at the version SPEC names.

    \b
    Example:  trackio artifacts -p my_project alias set my-model:v3 prod
    """
    a = _api(ctx).set_alias(spec, alias_name, ctx.obj["project"])
    _emit(ctx, _describe(a), f"{alias_name} -> {a.qualified_name}")


@alias.command("remove")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
@handled
def alias_remove(ctx: click.Context, name: str, alias_name: str) -> None:
    """Remove ALIAS from artifact NAME (its history stays).

    \b
    Example:  trackio artifacts -p my_project alias remove my-model staging
    """
    _api(ctx).remove_alias(name, alias_name, ctx.obj["project"])
    _emit(ctx, {"removed": alias_name}, f"removed {alias_name}")


@artifacts.command()
@click.argument("spec")
@click.pass_context
@handled
def delete(ctx: click.Context, spec: str) -> None:
    """Delete one version (run ``gc`` to free the bytes only it held).

    \b
    Example:  trackio artifacts -p my_project delete my-model:v2 && trackio artifacts gc --grace 0
    """
    _api(ctx).delete_version(spec, ctx.obj["project"])
    _emit(ctx, {"deleted": spec}, f"deleted {spec}")


@artifacts.command()
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
@handled
def history(ctx: click.Context, name: str, alias_name: str) -> None:
    """Who moved ALIAS, when, and from which version.

    \b
    Example:  trackio artifacts -p my_project history my-model prod
    """
    rows = _api(ctx).alias_history(name, alias_name, ctx.obj["project"])
    _emit(
        ctx,
        rows,
        "\n".join(f"{datetime.fromtimestamp(r['time']):%Y-%m-%d %H:%M:%S} {r['who']}: {r['previous'] or '-'} -> {r['version'] or 'removed'}" for r in rows),
    )


@artifacts.command()
@click.argument("spec_a")
@click.argument("spec_b")
@click.pass_context
@handled
def diff(ctx: click.Context, spec_a: str, spec_b: str) -> None:
    """Files added, removed and changed between two versions, with bytes.

    \b
    Example:  trackio artifacts -p my_project diff my-model:v1 my-model:v2
    """
    api = _api(ctx)
    a, b = api.artifact(spec_a, ctx.obj["project"]), api.artifact(spec_b, ctx.obj["project"])
    old = {e["path"]: e for e in a.manifest or []}
    new = {e["path"]: e for e in b.manifest or []}
    rows = []
    for path in sorted(old.keys() | new.keys()):
        o, n = old.get(path), new.get(path)
        if o == n:
            continue
        status = "added" if o is None else "removed" if n is None else "changed"
        rows.append({"status": status, "path": path, "bytes": (n["size"] if n else 0) - (o["size"] if o else 0)})
    _emit(ctx, rows, "\n".join(f"{r['status']:8} {r['bytes']:+12}  {r['path']}" for r in rows) or "no differences")


def _graph(a: Artifact) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(nodes, edges) around one version: producer run, its inputs, consumers."""
    nodes: list[tuple[str, str]] = [(a.qualified_name, "artifact")]
    edges: list[tuple[str, str]] = []
    producer = a.logged_by()
    if producer is not None:
        run = f"run {producer.name}"
        nodes.append((run, "run"))
        edges.append((run, a.qualified_name))
        for u in producer.used_artifacts():
            nodes.append((u.qualified_name, "artifact"))
            edges.append((u.qualified_name, run))
    for r in a.used_by():
        run = f"run {r.name}"
        nodes.append((run, "run"))
        edges.append((a.qualified_name, run))
        for out in r.logged_artifacts():
            nodes.append((out.qualified_name, "artifact"))
            edges.append((run, out.qualified_name))
    return list(dict.fromkeys(nodes)), list(dict.fromkeys(edges))


@artifacts.command()
@click.argument("spec")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid"]), default="text", show_default=True)
@click.pass_context
@handled
def lineage(ctx: click.Context, spec: str, fmt: str) -> None:
    """The runs and artifacts around one version, as text, Graphviz dot or Mermaid.

    \b
    Example:  trackio artifacts -p my_project lineage my-model:prod --format mermaid
    """
    a = _api(ctx).artifact(spec, ctx.obj["project"])
    nodes, edges = _graph(a)
    ids = {n: f"n{i}" for i, (n, _) in enumerate(nodes)}
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;"]
        lines += [f'  {ids[n]} [label="{n}", shape={"box" if k == "artifact" else "ellipse"}];' for n, k in nodes]
        lines += [f"  {ids[s]} -> {ids[t]};" for s, t in edges]
        lines.append("}")
    elif fmt == "mermaid":
        lines = ["graph LR"]
        lines += [f'  {ids[n]}["{n}"]' if k == "artifact" else f'  {ids[n]}(("{n}"))' for n, k in nodes]
        lines += [f"  {ids[s]} --> {ids[t]}" for s, t in edges]
    else:
        lines = [f"{s} -> {t}" for s, t in edges] or [f"{a.qualified_name} (no recorded runs)"]
    _emit(ctx, {"nodes": [{"name": n, "kind": k} for n, k in nodes], "edges": edges}, "\n".join(lines))


def _spec(ctx: click.Context) -> sync.RemoteSpec:
    spec = sync.remote_spec(ctx.obj["remote"], storage_options=ctx.obj["storage_options"])
    if spec is None:
        raise click.UsageError("needs --remote (or $TRACKIO_REMOTE)")
    return spec


@artifacts.command()
@click.pass_context
@handled
def push(ctx: click.Context) -> None:
    """Send everything logged here that the remote lacks.

    \b
    Example:  trackio artifacts --remote s3://bucket/trackio push
    """
    result = sync.sync(_spec(ctx))
    _emit(ctx, dataclasses.asdict(result), f"sent {result.objects} objects ({result.bytes} bytes); {len(result.refs_updated)} refs updated")


@artifacts.command()
@click.pass_context
@handled
def pull(ctx: click.Context) -> None:
    """Bring every run and version of the remote into the local store.

    \b
    Example:  trackio artifacts --remote s3://bucket/trackio pull
    """
    spec = _spec(ctx)
    with byte_progress("pull", enabled=ctx.obj["progress"]) as tick:
        result = get_repo().fetch(spec.url, refs=[names.ROOT], storage_options=spec.options, progress=tick)
    _emit(ctx, dataclasses.asdict(result), f"received {result.objects} objects ({result.bytes} bytes); {len(result.refs_updated)} refs updated")


@artifacts.command()
@click.pass_context
@handled
def fsck(ctx: click.Context) -> None:
    """Verify the local store; name the artifact versions any problem damages. Exit 3 on problems.

    \b
    Example:  trackio artifacts fsck
    """
    with byte_progress("fsck", enabled=ctx.obj["progress"]) as tick:
        checked = Api().fsck(progress=tick)
    report = checked["report"]
    damaged = checked["damaged"]
    data = {"ok": report.ok, "bad_objects": report.bad_objects, "missing_objects": report.missing_objects, "damaged": damaged}
    text = "ok" if report.ok else "\n".join([*(f"bad object {k}: {v}" for k, v in report.bad_objects.items()), *(f"damaged: {d}" for d in damaged)])
    _emit(ctx, data, text)
    if not report.ok:
        sys.exit(3)


@artifacts.command()
@click.option("--grace", default=3600.0, show_default=True, help="Seconds: recently written packs are kept whole.")
@click.pass_context
@handled
def gc(ctx: click.Context, grace: float) -> None:
    """Free the bytes of deleted versions and aliases that nothing else uses.

    \b
    Example:  trackio artifacts gc --grace 0
    """
    with byte_progress("gc", enabled=ctx.obj["progress"]) as tick:
        result = get_repo().gc(timedelta(seconds=grace), progress=tick)
    _emit(ctx, dataclasses.asdict(result), f"removed {result.objects_removed} objects, freed {result.bytes_freed} bytes")


if __name__ == "__main__":
    main()
