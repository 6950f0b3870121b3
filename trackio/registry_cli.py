"""``trackio registry``: the model registry from the shell.

Output and errors read like ``trackio artifacts`` (both use
:mod:`objstore.cliutil`): ``--json``, ``-o KEY=VALUE``, ``-q``, ``--debug``
and ``--remote`` go before or after the subcommand. Exit codes: 0 success,
1 an error (one line on stderr naming the problem), 2 bad usage.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from objstore.cliutil import add_common_options, emit, guarded, local_time, route_warnings, set_target, table

from . import registry as model_registry
from .api import Api
from .artifact import Artifact
from .store import store_path

handled = guarded("trackio")


def _set_remote(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(dict)["remote"] = value


def _remote_option() -> click.Option:
    return click.Option(["--remote"], expose_value=False, callback=_set_remote, help="Remote URL to read and sync the registry with (default $TRACKIO_REMOTE).")


def _api(ctx: click.Context) -> Api:
    remote = ctx.obj.get("remote") or os.environ.get("TRACKIO_REMOTE")
    if remote:
        set_target(ctx, remote)
    return Api(remote=remote, storage_options=ctx.obj.get("storage_options") or {})


def _collection_text(c: model_registry.Collection) -> str:
    lines = [f"{c.name}  type={c.type}  links={c.num_links}  latest=" + ("-" if c.latest_version is None else f"v{c.latest_version}")]
    if c.description:
        lines.append(f"  {c.description}")
    lines += [
        f"  v{lk['collection_version']:<4} {lk['source_project']}/{lk['source_artifact']}:v{lk['source_version']}  {', '.join(lk['aliases'])}"
        for lk in c.links
    ]
    return "\n".join(lines)


def _linked(a: Artifact) -> dict[str, Any]:
    return {
        "qualified_name": a.qualified_name,
        "collection_version": a.version,
        "aliases": list(a.aliases),
        "source_qualified_name": a.source_qualified_name,
        "type": a.type,
        "digest": a.digest,
        "size": a.size,
    }


def _location(spec: str) -> tuple[str, str, str]:
    if ":" not in spec:
        raise click.UsageError(f"{spec!r} names no version: use registry-<registry>/<collection>:vN")
    return model_registry.parse_location(spec)


@click.group("registry", context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def registry(ctx: click.Context) -> None:
    """Model registry: collections of linked artifact versions, promoted by aliases.

    \b
    Example:
      trackio registry create models
      trackio registry link my_project/my-model:v3 registry-models/classifier --alias staging
      trackio registry promote registry-models/classifier:v0 production
    """
    route_warnings("trackio")
    obj = ctx.ensure_object(dict)
    obj.setdefault("storage_options", {})
    obj["target"] = store_path()


@registry.command("list")
@click.pass_context
@handled
def list_(ctx: click.Context) -> None:
    """Every registry, with its description and number of collections.

    \b
    Example:  trackio registry list --json
    """
    rows = []
    for reg in _api(ctx).registries():
        rows.append({"name": reg.name, "description": reg.description, "created_at": reg.created_at, "collections": len(reg.collections())})
    cells = [[str(r["name"]), str(r["collections"]), str(r["description"] or "")] for r in rows]
    emit(ctx, rows, table(["REGISTRY", "COLLECTIONS", "DESCRIPTION"], cells, right=[1]) if rows else "no registries")


@registry.command()
@click.argument("name")
@click.option("--description", "-d", help="What the registry holds.")
@click.pass_context
@handled
def create(ctx: click.Context, name: str, description: str | None) -> None:
    """Create registry NAME (letters, digits, underscore, hyphen).

    \b
    Example:  trackio registry create datasets -d "what we train on"
    """
    reg = _api(ctx).create_registry(name, description=description)
    emit(ctx, {"name": reg.name, "description": reg.description, "project": reg.project}, f"created registry {reg.name} (link into {reg.project}/<collection>)")


@registry.command()
@click.argument("registry_name", metavar="REGISTRY")
@click.pass_context
@handled
def collections(ctx: click.Context, registry_name: str) -> None:
    """The collections of REGISTRY with their links and aliases.

    \b
    Example:  trackio registry collections models
    """
    found = _api(ctx).registry(registry_name).collections()
    emit(ctx, [asdict(c) for c in found], "\n".join(_collection_text(c) for c in found) or f"registry {registry_name} has no collections")


@registry.command()
@click.argument("target", metavar="registry-R/C")
@click.pass_context
@handled
def show(ctx: click.Context, target: str) -> None:
    """One collection: type, description, links (newest first) and their aliases.

    \b
    Example:  trackio registry show registry-models/classifier
    """
    reg_name, coll_name = model_registry.parse_target(target)
    c = _api(ctx).registry(reg_name).collection(coll_name)
    if c is None:
        raise model_registry.RegistryNotFoundError(f"Collection {coll_name!r} not found in registry {reg_name!r}")
    emit(ctx, asdict(c), _collection_text(c))


@registry.command()
@click.argument("spec")
@click.argument("target", metavar="registry-R/C")
@click.option("--alias", "-a", "aliases", multiple=True, help="Alias to put on the link; repeatable.")
@click.option("--project", "-p", default=lambda: os.environ.get("TRACKIO_PROJECT"), help="Project of SPEC when it names none (default $TRACKIO_PROJECT).")
@click.pass_context
@handled
def link(ctx: click.Context, spec: str, target: str, aliases: tuple[str, ...], project: str | None) -> None:
    """Link artifact version SPEC ([project/]name[:vN|:alias]) into collection registry-R/C.

    \b
    Example:  trackio registry link my_project/my-model:v3 registry-models/classifier --alias staging
    """
    api = _api(ctx)
    linked = api.artifact(spec, project)._link_into(target, list(aliases) or None, remote=api.remote_spec)
    emit(ctx, _linked(linked), f"linked {linked.source_qualified_name} as {linked.qualified_name}  {', '.join(linked.aliases)}")


@registry.command()
@click.argument("location", metavar="registry-R/C:vN")
@click.argument("alias")
@click.pass_context
@handled
def promote(ctx: click.Context, location: str, alias: str) -> None:
    """Point ALIAS at one collection version (moving it from wherever it was).

    \b
    Example:  trackio registry promote registry-models/classifier:v0 production
    """
    reg_name, coll_name, selector = _location(location)
    reg = _api(ctx).registry(reg_name)
    version = reg.artifact(coll_name, selector).version
    assert version is not None
    linked = reg.promote(coll_name, version, alias)
    emit(ctx, _linked(linked), f"{alias} -> {linked.qualified_name} ({linked.source_qualified_name})")


@registry.command()
@click.argument("location", metavar="registry-R/C:vN")
@click.pass_context
@handled
def unlink(ctx: click.Context, location: str) -> None:
    """Remove one collection version (the source version is untouched).

    \b
    Example:  trackio registry unlink registry-models/classifier:v1
    """
    reg_name, coll_name, selector = _location(location)
    reg = _api(ctx).registry(reg_name)
    version = reg.artifact(coll_name, selector).version
    assert version is not None
    event = reg.unlink(coll_name, version)
    emit(ctx, event, f"unlinked {model_registry.PREFIX}{reg_name}/{coll_name}:{version}; removed aliases: {', '.join(event['removed_aliases']) or '-'}")


@registry.command()
@click.argument("registry_name", metavar="REGISTRY")
@click.pass_context
@handled
def events(ctx: click.Context, registry_name: str) -> None:
    """The audit log of REGISTRY, oldest first: who did what, when.

    \b
    Example:  trackio registry events models --json
    """
    rows = _api(ctx).registry(registry_name).events()
    cells = [[str(e["id"]), local_time(datetime.fromisoformat(e["ts"]).timestamp()), e["who"], e["kind"], _summary(e)] for e in rows]
    emit(ctx, rows, table(["ID", "TIME", "WHO", "KIND", "WHAT"], cells, right=[0]))


def _summary(e: dict[str, Any]) -> str:
    p = e["payload"]
    where = f"{p.get('collection', '')}:v{p['collection_version']}" if "collection_version" in p else p.get("collection", p["registry"])
    source = f" <- {p['source_project']}/{p['source_artifact']}:v{p['source_version']}" if "source_project" in p and e["kind"] == "link" else ""
    alias = f" {p['alias']}" + ("" if p.get("previous_version") is None else f" (was v{p['previous_version']})") if e["kind"] == "promote" else ""
    return f"{where}{source}{alias}"


add_common_options(registry)
for _command in [registry, *registry.commands.values()]:
    _command.params.append(_remote_option())
