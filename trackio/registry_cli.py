"""``trackio registry``: the model registry from the shell.

Every command takes ``--json`` (one JSON document on stdout) and the remote
options of ``trackio artifacts`` (``--remote``, ``-o KEY=VALUE``). Exit
codes: 0 success, 1 an error (one line on stderr naming the problem), 2 bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from typing import Any, TypeVar

import click

from objstore.cli import parse_options
from objstore.errors import ObjstoreError

from . import model_registry
from .api import Api
from .artifact import Artifact
from .errors import TrackioError

F = TypeVar("F", bound=Callable[..., Any])


def _handled(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TrackioError, ObjstoreError, ValueError, TypeError, LookupError, OSError) as exc:
            click.echo(f"trackio: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _common(fn: F) -> F:
    """``--json``, ``--remote`` and ``-o`` on every command."""
    fn = click.option("--option", "-o", "options", multiple=True, help="fsspec storage option KEY=VALUE for the remote; repeatable.")(fn)
    fn = click.option("--remote", default=lambda: os.environ.get("TRACKIO_REMOTE"), help="Remote URL (default $TRACKIO_REMOTE).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)
    return fn


def _api(remote: str | None, options: tuple[str, ...]) -> Api:
    return Api(remote=remote, storage_options=parse_options(options))


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


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
def registry() -> None:
    """Model registry: collections of linked artifact versions, promoted by aliases.

    \b
    Example:
      trackio registry create models
      trackio registry link my_project/resnet:v3 registry-models/classifier --alias staging
      trackio registry promote registry-models/classifier:v0 production
    """


@registry.command("list")
@_common
@_handled
def list_(as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """Every registry, with its description and number of collections.

    \b
    Example:  trackio registry list --json
    """
    rows = []
    for reg in _api(remote, options).registries():
        rows.append({"name": reg.name, "description": reg.description, "created_at": reg.created_at, "collections": len(reg.collections())})
    _emit(as_json, rows, "\n".join(f"{r['name']:24} {r['collections']:>4} collections  {r['description'] or ''}".rstrip() for r in rows))


@registry.command()
@click.argument("name")
@click.option("--description", "-d", help="What the registry holds.")
@_common
@_handled
def create(name: str, description: str | None, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """Create registry NAME (letters, digits, underscore, hyphen).

    \b
    Example:  trackio registry create models -d "what we ship"
    """
    reg = _api(remote, options).create_registry(name, description=description)
    _emit(as_json, {"name": reg.name, "description": reg.description, "project": reg.project}, f"created registry {reg.name} (link into {reg.project}/<collection>)")


@registry.command()
@click.argument("registry_name", metavar="REGISTRY")
@_common
@_handled
def collections(registry_name: str, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """The collections of REGISTRY with their links and aliases.

    \b
    Example:  trackio registry collections models
    """
    found = _api(remote, options).registry(registry_name).collections()
    _emit(as_json, [asdict(c) for c in found], "\n".join(_collection_text(c) for c in found) or f"registry {registry_name} has no collections")


@registry.command()
@click.argument("target", metavar="registry-R/C")
@_common
@_handled
def show(target: str, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """One collection: type, description, links (newest first) and their aliases.

    \b
    Example:  trackio registry show registry-models/classifier
    """
    reg_name, coll_name = model_registry.parse_target(target)
    c = _api(remote, options).registry(reg_name).collection(coll_name)
    if c is None:
        raise model_registry.RegistryNotFoundError(f"Collection {coll_name!r} not found in registry {reg_name!r}")
    _emit(as_json, asdict(c), _collection_text(c))


@registry.command()
@click.argument("spec")
@click.argument("target", metavar="registry-R/C")
@click.option("--alias", "-a", "aliases", multiple=True, help="Alias to put on the link; repeatable.")
@click.option("--project", "-p", default=lambda: os.environ.get("TRACKIO_PROJECT"), help="Project of SPEC when it names none (default $TRACKIO_PROJECT).")
@_common
@_handled
def link(spec: str, target: str, aliases: tuple[str, ...], project: str | None, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """Link artifact version SPEC ([project/]name[:vN|:alias]) into collection registry-R/C.

    \b
    Example:  trackio registry link my_project/resnet:v3 registry-models/classifier --alias staging
    """
    api = _api(remote, options)
    linked = api.artifact(spec, project)._link_into(target, list(aliases) or None, remote=api.remote_spec)
    _emit(as_json, _linked(linked), f"linked {linked.source_qualified_name} as {linked.qualified_name}  {', '.join(linked.aliases)}")


@registry.command()
@click.argument("location", metavar="registry-R/C:vN")
@click.argument("alias")
@_common
@_handled
def promote(location: str, alias: str, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """Point ALIAS at one collection version (moving it from wherever it was).

    \b
    Example:  trackio registry promote registry-models/classifier:v2 production
    """
    reg_name, coll_name, selector = _location(location)
    reg = _api(remote, options).registry(reg_name)
    version = reg.artifact(coll_name, selector).version
    assert version is not None
    linked = reg.promote(coll_name, version, alias)
    _emit(as_json, _linked(linked), f"{alias} -> {linked.qualified_name} ({linked.source_qualified_name})")


@registry.command()
@click.argument("location", metavar="registry-R/C:vN")
@_common
@_handled
def unlink(location: str, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """Remove one collection version (the source version is untouched).

    \b
    Example:  trackio registry unlink registry-models/classifier:v1
    """
    reg_name, coll_name, selector = _location(location)
    reg = _api(remote, options).registry(reg_name)
    version = reg.artifact(coll_name, selector).version
    assert version is not None
    event = reg.unlink(coll_name, version)
    _emit(as_json, event, f"unlinked {model_registry.PREFIX}{reg_name}/{coll_name}:{version}; removed aliases: {', '.join(event['removed_aliases']) or '-'}")


@registry.command()
@click.argument("registry_name", metavar="REGISTRY")
@_common
@_handled
def events(registry_name: str, as_json: bool, remote: str | None, options: tuple[str, ...]) -> None:
    """The audit log of REGISTRY, oldest first: who did what, when.

    \b
    Example:  trackio registry events models --json
    """
    rows = _api(remote, options).registry(registry_name).events()
    _emit(as_json, rows, "\n".join(f"{e['id']:>4} {e['ts'][:19]} {e['who']:20} {e['kind']:8} {_summary(e)}" for e in rows))


def _summary(e: dict[str, Any]) -> str:
    p = e["payload"]
    where = f"{p.get('collection', '')}:v{p['collection_version']}" if "collection_version" in p else p.get("collection", p["registry"])
    source = f" <- {p['source_project']}/{p['source_artifact']}:v{p['source_version']}" if "source_project" in p and e["kind"] == "link" else ""
    alias = f" {p['alias']}" + ("" if p.get("previous_version") is None else f" (was v{p['previous_version']})") if e["kind"] == "promote" else ""
    return f"{where}{source}{alias}"
