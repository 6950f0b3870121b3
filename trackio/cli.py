"""``trackio artifacts`` (also ``trackio-artifacts``): artifacts from the shell.

Output reads like ``objstore``'s (same units, times, wording, bars; both
use :mod:`objstore.cliutil`); ``--json``, ``-o``, ``-q`` and ``--debug`` go
before or after the subcommand. Exit codes: 0 success, 1 a trackio or
objstore error (one line on stderr naming the problem), 2 bad usage,
3 ``fsck`` found problems, 130 interrupted (Ctrl-C; ``log`` says what it kept).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from datetime import timedelta
from typing import Any

import click

from objstore.cliutil import (
    add_common_options,
    disk_size,
    emit,
    error_line,
    guarded,
    human_bytes,
    local_time,
    parse_options,
    plural,
    progress_enabled,
    route_warnings,
    set_target,
    signed_bytes,
    table,
    transfer_text,
    warn,
)
from objstore.interrupt import interruptible
from objstore.progress import byte_progress

from . import Api, Artifact, names
from . import remote_sync as sync
from .errors import SyncError
from .store import get_repo, store_path

handled = guarded("trackio")


def _emit(ctx: click.Context, data: Any, text: str) -> None:
    emit(ctx, data, text)


def _api(ctx: click.Context) -> Api:
    if ctx.obj["remote"]:
        set_target(ctx, ctx.obj["remote"])
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


@main.command("show")
@click.argument("dashboard", required=False, type=click.Choice(["registry"]))
@click.option("--project", help="Open this project's page.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes it to the network).")
@click.option("--port", type=int, default=None, help="Port (default: the first free one from $GRADIO_SERVER_PORT or 7860).")
@click.option("--no-browser", is_flag=True, help="Print the URL without opening a browser.")
@click.option("--remote", default=None, help="Show this remote store instead of the machine's (default $TRACKIO_REMOTE if set).")
@click.option("--option", "-o", "options", multiple=True, help="fsspec storage option KEY=VALUE for the remote; repeatable.")
@handled
def show_cmd(dashboard: str | None, project: str | None, host: str, port: int | None, no_browser: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """Open the dashboard: projects, artifacts, versions, files, diffs, lineage, runs, registry, storage.

    Serves the machine's store (or --remote) read-only on 127.0.0.1, prints
    its URL and opens a browser. Stop with Ctrl-C.

    \b
    Example:
      trackio show --project my_project --no-browser
      trackio show registry --no-browser
    """
    if dashboard == "registry" and project:
        raise click.UsageError("trackio show registry does not accept --project")
    from .dashboard import launch

    server, url = launch(project, dashboard=dashboard, host=host, port=port, remote=remote, storage_options=parse_options(options))
    label = "Trackio registry UI" if dashboard == "registry" else "Trackio UI"
    click.echo(f"* {label} launched at: {url}")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    server.wait()


@main.group("artifacts")
@click.option("--project", "-p", default=lambda: os.environ.get("TRACKIO_PROJECT"), help="Project (default $TRACKIO_PROJECT).")
@click.option("--remote", default=lambda: os.environ.get("TRACKIO_REMOTE"), help="Remote URL (default $TRACKIO_REMOTE).")
@click.pass_context
def artifacts(ctx: click.Context, project: str | None, remote: str | None) -> None:
    """Versioned artifacts: list, show, log, download, aliases, lineage, sync.

    \b
    Example:
      trackio artifacts -p my_project list
      trackio artifacts -p my_project download my-model:prod
    """
    route_warnings("trackio")
    obj = ctx.ensure_object(dict)
    obj.update(project=project, remote=remote)
    obj.setdefault("storage_options", {})
    obj["target"] = store_path()


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
    cells = [[a.qualified_name, a.type, human_bytes(a.size), local_time(a.created_at), ", ".join(a.aliases)] for a in arts]
    text = table(["ARTIFACT", "TYPE", "SIZE", "CREATED", "ALIASES"], cells, right=[2]) if arts else "no artifacts"
    _emit(ctx, rows, text)


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
    cells = [[str(a.version), local_time(a.created_at), human_bytes(a.size), ", ".join(a.aliases)] for a in arts]
    _emit(ctx, [_describe(a) for a in arts], table(["VERSION", "CREATED", "SIZE", "ALIASES"], cells, right=[2]))


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
    files = len(a.manifest or [])
    lines = [
        f"{a.qualified_name}  type={a.type}  size={human_bytes(a.size)} in {plural(files, 'file')}  aliases={', '.join(a.aliases)}",
        f"created {local_time(a.created_at)}  digest {a.digest}",
    ]
    if a.description:
        lines.append(f"description: {a.description}")
    if a.metadata:
        lines.append(f"metadata: {json.dumps(a.metadata)}")
    lines += [f"  {human_bytes(e['size']):>10}  {e['path']}" + (f"  -> {e['ref']}" if "ref" in e else "") for e in a.manifest or []]
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
    remote = ctx.obj["remote"]
    if not project:
        raise click.UsageError("log needs --project (or $TRACKIO_PROJECT)")
    queued: BaseException | None = None
    # The background push reports through warnings; here they become one line each.
    with (
        interruptible(get_repo(), "trackio", "running the same log", "trackio artifacts gc"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        with trackio.init(project=project, name="cli", remote=remote, storage_options=ctx.obj["storage_options"]) as run:
            with byte_progress("log", lambda: disk_size(path), enabled=progress_enabled(ctx)) as tick:
                logged = run.log_artifact(path, name=name, type=type_, aliases=list(aliases) or None, progress=tick)
            if remote:
                try:
                    logged.wait()
                except SyncError as exc:
                    queued = exc.__cause__ or exc
    aliases_text = f", aliases: {', '.join(logged.aliases)}" if logged.aliases else ""
    if logged.is_new is False:
        text = f"unchanged: {logged.version} ({logged.qualified_name} has this content already{aliases_text})"
    else:
        text = f"logged {logged.qualified_name}: {plural(len(logged.manifest or []), 'file')}, {human_bytes(logged.size)}{aliases_text}"
    data = {**_describe(logged), "new": bool(logged.is_new), "pushed": bool(remote) and queued is None}
    _emit(ctx, data, text)
    for w in caught:
        message = str(w.message)
        if queued is None or "could not push" not in message:
            warn("trackio", message.removeprefix("trackio: "))
    if queued is not None:
        warn("trackio", f"not pushed: {error_line(queued, remote)}; {logged.qualified_name} is logged locally and queued: "
                        f"'trackio artifacts --remote {remote} push' sends it")


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
    with byte_progress("download", a.size, enabled=progress_enabled(ctx)) as tick:
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
    done = _api(ctx).delete_version(spec, ctx.obj["project"])
    went = f"aliases removed with it: {', '.join(done.aliases_removed)}" if done.aliases_removed else "no aliases pointed at it"
    _emit(
        ctx,
        {"deleted": done.qualified_name, "aliases_removed": list(done.aliases_removed)},
        f"deleted {done.qualified_name}; {went} (its history stays; `trackio artifacts gc` frees the bytes only it held)",
    )


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
    _emit(ctx, rows, "\n".join(f"{local_time(r['time'])} {r['who']}: {_history_text(r)}" for r in rows))


def _history_text(row: dict[str, Any]) -> str:
    """``v0 -> v1``, ``v1 -> removed``, or ``v0 deleted`` (and the move it caused)."""

    def label(which: str) -> str:
        value = row[which]
        if value is None:
            return "-"
        return f"{value} (deleted)" if row[f"{which}_deleted"] else str(value)

    if row["event"] == "delete":
        text = f"{row['deleted']} deleted"
        if row["version"] is None:
            return f"{text}; {row['alias']} removed"
        if row["previous"] != row["version"]:
            return f"{text}; {row['alias']} {label('previous')} -> {label('version')}"
        return text
    return f"{label('previous')} -> {label('version') if row['version'] is not None else 'removed'}"


@artifacts.command()
@click.argument("spec_a")
@click.argument("spec_b")
@click.pass_context
@handled
def diff(ctx: click.Context, spec_a: str, spec_b: str) -> None:
    """Files added (A), deleted (D) and modified (M) between two versions, with the size change.

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
    letters = {"added": "A", "removed": "D", "changed": "M"}
    text = "\n".join(f"{letters[r['status']]} {signed_bytes(r['bytes']):>12}  {r['path']}" for r in rows)
    _emit(ctx, rows, text or "no differences")


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
    set_target(ctx, spec.url)
    return spec


@artifacts.command()
@click.pass_context
@handled
def push(ctx: click.Context) -> None:
    """Send everything logged here that the remote lacks.

    \b
    Example:  trackio artifacts --remote s3://bucket/trackio push
    """
    spec = _spec(ctx)
    with byte_progress("push", enabled=progress_enabled(ctx)) as tick:
        result = sync.sync(spec, progress=tick)
    text = transfer_text("sent", result.objects, result.bytes, result.packs, sorted(result.refs_updated), result.requests)
    _emit(ctx, dataclasses.asdict(result), text)


@artifacts.command()
@click.pass_context
@handled
def pull(ctx: click.Context) -> None:
    """Bring every run and version of the remote into the local store.

    \b
    Example:  trackio artifacts --remote s3://bucket/trackio pull
    """
    spec = _spec(ctx)
    with byte_progress("pull", enabled=progress_enabled(ctx)) as tick:
        result = get_repo().fetch(spec.url, refs=[names.ROOT], storage_options=spec.options, progress=tick)
    text = transfer_text("received", result.objects, result.bytes, result.packs, sorted(result.refs_updated), result.requests)
    _emit(ctx, dataclasses.asdict(result), text)


@artifacts.command()
@click.pass_context
@handled
def fsck(ctx: click.Context) -> None:
    """Verify the local store; name the artifact versions any problem damages. Exit 3 on problems.

    \b
    Example:  trackio artifacts fsck
    """
    with byte_progress("fsck", enabled=progress_enabled(ctx)) as tick:
        checked = Api().fsck(progress=tick)
    report = checked["report"]
    damaged = checked["damaged"]
    data = {"ok": report.ok, "bad_objects": report.bad_objects, "missing_objects": report.missing_objects, "damaged": damaged}
    counts = [plural(report.packs_checked, "pack"), plural(report.objects_checked, "object"), plural(report.refs_checked, "ref")]
    lines = [f"{', '.join(counts)} checked"]
    lines += [f"bad object {k}: {v}" for k, v in report.bad_objects.items()]
    lines += [f"damaged: {d}" for d in damaged]
    text = "\n".join([*lines, "ok" if report.ok else "PROBLEMS FOUND"])
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
    with byte_progress("gc", enabled=progress_enabled(ctx)) as tick:
        result = get_repo().gc(timedelta(seconds=grace), progress=tick)
    _emit(ctx, dataclasses.asdict(result), f"removed {plural(result.objects_removed, 'object')}, freed {human_bytes(result.bytes_freed)}")


add_common_options(artifacts)
# ``trackio registry``: a self-contained group in its own module.
from .registry_cli import registry as _registry_group  # noqa: E402

main.add_command(_registry_group)


if __name__ == "__main__":
    main()
