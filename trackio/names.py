"""Validation of user-facing names and the layout of trackio's refs in objstore.

Everything trackio keeps lives under the ``trackio/`` ref namespace of one
objstore repository::

    trackio/<project>/artifacts/<name>/aliases/<alias>   -> version commit (``latest`` = newest)
    trackio/<project>/artifacts/<name>/versions/v<N>     -> version commit
    trackio/<project>/runs/<run id>                      -> run record commit

Project names may hold any characters; they are escaped into ref-safe form.
"""

from __future__ import annotations

import re

from .errors import InvalidNameError, ManifestPathError, ReservedAliasError

NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
VERSION_RE = re.compile(r"v(\d+)")
ROOT = "trackio"
LATEST = "latest"


def validate_name(name: object, what: str = "Artifact name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidNameError(f"{what} {name!r} must match ^[A-Za-z0-9._-]+$ (letters, digits, dot, underscore, hyphen)")
    return name


def validate_alias(alias: object) -> str:
    validate_name(alias, "Alias")
    assert isinstance(alias, str)
    if VERSION_RE.fullmatch(alias):
        raise ReservedAliasError(f"Alias {alias!r} is reserved for version pointers (vN); choose another")
    return alias


def validate_aliases(aliases: object) -> list[str]:
    if aliases is None:
        return []
    if isinstance(aliases, str) or not isinstance(aliases, (list, tuple, set, frozenset)):
        raise InvalidNameError(f"aliases must be a list of strings, got {type(aliases).__name__}")
    out: list[str] = []
    for a in aliases:
        validate_alias(a)
        assert isinstance(a, str)
        if a not in out:
            out.append(a)
    return out


def validate_project(project: object) -> str:
    if not isinstance(project, str) or not project.strip():
        raise InvalidNameError(f"project must be a non-empty string, got {project!r}")
    if "/" in project or "\0" in project:
        raise InvalidNameError(f"project {project!r} may not contain '/' or NUL")
    return project


def validate_logical_path(path: object) -> str:
    """A path inside an artifact: relative, '/'-separated, no '.', '..' or empty parts."""
    if not isinstance(path, str) or not path:
        raise ManifestPathError(f"Invalid artifact path {path!r}: must be a non-empty string")
    if "\\" in path or "\0" in path:
        raise ManifestPathError(f"Invalid artifact path {path!r}: backslashes and NUL are not allowed")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise ManifestPathError(f"Invalid artifact path {path!r}: must be relative")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ManifestPathError(f"Invalid artifact path {path!r}: '.', '..' and empty segments are not allowed")
    return path


def escape_component(text: str) -> str:
    """Make any string one valid objstore ref component (reversible)."""
    out = []
    for ch in text:
        if NAME_RE.fullmatch(ch) and ch != "~":
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8"))
    escaped = "".join(out)
    if escaped in (".", ".."):
        escaped = escaped.replace(".", "~2E")
    return escaped


def unescape_component(text: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "~" and i + 3 <= len(text):
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(text[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8")


def project_prefix(project: str) -> str:
    return f"{ROOT}/{escape_component(project)}"


def artifact_prefix(project: str, name: str) -> str:
    return f"{project_prefix(project)}/artifacts/{name}"


def alias_ref(project: str, name: str, alias: str) -> str:
    return f"{artifact_prefix(project, name)}/aliases/{alias}"


def version_ref(project: str, name: str, version: int) -> str:
    return f"{artifact_prefix(project, name)}/versions/v{version}"


def run_ref(project: str, run_id: str) -> str:
    return f"{project_prefix(project)}/runs/{run_id}"


def parse_spec(spec: str, default_project: str | None) -> tuple[str, str, str]:
    """``[project/]name[:version|alias]`` -> (project, name, version-or-alias)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidNameError(f"artifact spec must be a non-empty string, got {spec!r}")
    body, sep, selector = spec.partition(":")
    if sep and not selector:
        raise InvalidNameError(f"Artifact spec {spec!r} has an empty version/alias after ':'")
    selector = selector or LATEST
    project, slash, name = body.rpartition("/")
    if not slash:
        if default_project is None:
            raise InvalidNameError(f"Artifact spec {spec!r} names no project and there is no active run: use 'project/name'")
        project = default_project
    validate_project(project)
    validate_name(name)
    if not VERSION_RE.fullmatch(selector):
        validate_name(selector, "Alias")
    return project, name, selector
