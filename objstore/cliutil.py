"""What the ``objstore`` and ``trackio artifacts`` command lines share.

Both print sizes, counts and times the same way, accept the same global
flags before or after the subcommand, and turn every error into one line
on stderr (the traceback only with ``--debug`` or ``OBJSTORE_DEBUG=1``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import click

from .errors import ObjstoreError, StorageError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1

# -- numbers, words and times ------------------------------------------------------

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(n: int | float | None) -> str:
    """``512 B``, ``1.50 KiB``, ``29.3 MiB``, ``293 GiB``: binary units, three digits (``-`` if unknown)."""
    if n is None:
        return "-"
    if abs(n) < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
    text = f"{value:.2f}"
    if abs(float(text)) >= 10:  # after rounding: 9.999 is "10.0", not "10.00"
        text = f"{value:.1f}"
    if abs(float(text)) >= 100:
        text = f"{value:.0f}"
    return f"{text} {unit}"


def signed_bytes(n: int) -> str:
    """A size change: ``+1.50 KiB``, ``-3 B``, ``0 B``."""
    if n == 0:
        return "0 B"
    return ("+" if n > 0 else "-") + human_bytes(abs(n))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``, ``1 pack``; ``many`` for irregular plurals."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def local_time(ts: float | None) -> str:
    """An epoch time as a local date-time (``-`` when unknown)."""
    if ts is None:
        return "-"
    return f"{datetime.fromtimestamp(ts):%Y-%m-%d %H:%M:%S}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns as wide as their longest cell; ``right`` lists right-aligned columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        out = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


_NAMED_REFS = 3  # more refs than this are counted, not listed


def transfer_text(verb: str, objects: int, nbytes: int, packs: int, refs: Sequence[str], requests: int) -> str:
    """How both command lines word a push or fetch result."""
    named = f" ({', '.join(refs)})" if 0 < len(refs) <= _NAMED_REFS else ""
    return (
        f"{verb} {plural(objects, 'object')} ({human_bytes(nbytes)}) in {plural(packs, 'pack')}; "
        f"{plural(len(refs), 'ref')} updated{named}; {plural(requests, 'request')}"
    )


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
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


def disk_size(path: str | os.PathLike[str]) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed): a snapshot's progress total."""
    if not os.path.isdir(path):
        return os.path.getsize(path) if os.path.isfile(path) else 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue  # vanished since the listing: the snapshot will say so
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


# -- flags accepted before or after the subcommand --------------------------------


def _flag(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        obj = ctx.ensure_object(dict)
        obj[key] = obj.get(key, False) or bool(value)  # set before the subcommand: stays set

    return callback


def _storage_options(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    ctx.ensure_object(dict).setdefault("storage_options", {}).update(parse_options(value))


def _common_params() -> list[click.Parameter]:
    return [
        click.Option(["--option", "-o", "storage_options"], multiple=True, expose_value=False, callback=_storage_options,
                     help="fsspec storage option KEY=VALUE (VALUE may be JSON); repeatable."),
        click.Option(["--json", "json"], is_flag=True, expose_value=False, callback=_flag("json"), help="Print one JSON document."),
        click.Option(["--quiet", "-q", "quiet"], is_flag=True, expose_value=False, callback=_flag("quiet"), help="No progress bars."),
        click.Option(["--debug", "debug"], is_flag=True, expose_value=False, callback=_flag("debug"),
                     help="On an error, also show its traceback (or set OBJSTORE_DEBUG=1)."),
    ]


def add_common_options(cmd: click.Command) -> None:
    """Give ``cmd`` and every subcommand under it ``-o/--option``, ``--json``, ``-q/--quiet`` and ``--debug``.

    The values land in ``ctx.obj`` (shared by a group and its subcommands),
    so ``objstore --json stats`` and ``objstore stats --json`` are the same.
    """
    cmd.params.extend(_common_params())
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            add_common_options(sub)


def progress_enabled(ctx: click.Context) -> bool | None:
    """``False`` with ``-q``; otherwise ``None`` (bars when stderr is a terminal)."""
    return False if (ctx.obj or {}).get("quiet") else None


def wants_json(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("json"))


def emit(ctx: click.Context, data: Any, text: str | None, default: Callable[[Any], Any] = str) -> None:
    """One JSON document with ``--json``, else the text (nothing when ``None``)."""
    if wants_json(ctx):
        click.echo(json.dumps(data, indent=2, default=default))
    elif text is not None:
        click.echo(text)


def warn(prog: str, message: str) -> None:
    """One ``prog: warning: ...`` line on stderr."""
    click.echo(f"{prog}: warning: {message}", err=True)


def route_warnings(prog: str) -> None:
    """Show Python warnings the library raises as one ``prog: warning: ...`` line each (once per message),
    not with a source path and line as Python does."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = (str(message).strip().splitlines() or [""])[0].removeprefix(f"{prog}: ").removeprefix("trackio: ")
        if text not in seen:
            seen.add(text)
            warn(prog, text)

    warnings.showwarning = show


# -- errors as one line -----------------------------------------------------------------

# Optional packages behind fsspec protocols, and the extra that installs them.
_EXTRAS = {"s3fs": "s3", "botocore": "s3", "aiobotocore": "s3", "boto3": "s3", "paramiko": "sftp", "huggingface_hub": "hf"}
_PROTOCOL_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "sftp": "paramiko", "ssh": "paramiko", "hf": "huggingface_hub",
                      "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "http": "aiohttp", "https": "aiohttp"}
_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "NoAuthTokenError",
                "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthenticationException", "BadAuthenticationType"}
_CONNECT = {"NoValidConnectionsError", "EndpointConnectionError", "ClientConnectorError", "ConnectTimeoutError",
            "ServerDisconnectedError", "ConnectionClosedError", "SSHException"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("OBJSTORE_DEBUG", "") not in ("", "0"):
        return True
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx is not None and (ctx.obj or {}).get("debug"))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "os_error", None)) if isinstance(x, BaseException)]
        errors = getattr(e, "errors", None)  # paramiko's NoValidConnectionsError: {address: error}
        if isinstance(errors, dict):
            todo += [x for x in errors.values() if isinstance(x, BaseException)]


def _names(e: BaseException) -> set[str]:
    names = {c.__name__ for c in type(e).__mro__}
    response = getattr(e, "response", None)  # botocore ClientError: the service's error code
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            names.add(str(code))
    return names


def _missing_package(e: ImportError, url: str | None) -> str:
    module = e.name or ""
    if not module:
        m = re.search(r"['\"]?([A-Za-z_][\w.]*)['\"]? (?:to be installed|is not installed)|[Ii]nstall ([A-Za-z_][\w.]*)", str(e))
        module = (m.group(1) or m.group(2)) if m else ""
    scheme = url.split("://", 1)[0] if url and "://" in url else ""
    module = module.split(".")[0] or _PROTOCOL_PACKAGES.get(scheme, "")
    extra = _EXTRAS.get(module) or _EXTRAS.get(_PROTOCOL_PACKAGES.get(scheme, ""))
    what = f"{scheme}:// support" if scheme else f"the {module} package"
    fix = f"pip install 'objstore[{extra}]'" if extra else f"pip install {module}" if module else "install the package it needs"
    return f"{what} needs {module or 'a package'}, which is not installed; run: {fix}"


def explain(exc: BaseException, url: str | None = None) -> str | None:
    """One line saying what went wrong with a backend and what to do, or None if unknown."""
    scheme = url.split("://", 1)[0] if url and "://" in url else "file"
    chain = [(e, _names(e)) for e in _chain(exc)]
    for e, _ in chain:
        if isinstance(e, ImportError):
            return _missing_package(e, url)
    if any(names & _CREDENTIALS for _, names in chain):
        if scheme in ("s3", "s3a"):
            return ("no valid S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                    "or pass -o key=... -o secret=... (-o anon=true for a public bucket)")
        return "authentication failed; check the user and key, or pass them with -o KEY=VALUE"
    connect = [e for e, names in chain if isinstance(e, ConnectionError | socket.gaierror | TimeoutError) or names & _CONNECT]
    if connect:
        host = url.split("://", 1)[1].split("/", 1)[0] if url and "://" in url else "the server"
        if any(isinstance(e, ConnectionRefusedError) for e in connect):
            reason = "connection refused"
        elif any(isinstance(e, socket.gaierror) for e in connect):
            reason = "unknown host"
        else:
            reason = _first_line(connect[-1]) or type(connect[-1]).__name__
        return f"cannot connect to {host} ({reason}); check the URL and that the server is running"
    for e, names in chain:
        if isinstance(e, PermissionError) or names & _DENIED:
            return f"permission denied ({_first_line(e) or type(e).__name__}); check your credentials and access rights"
    for e, names in chain:
        if names & _MISSING or (isinstance(e, FileNotFoundError) and not isinstance(e, ObjstoreError)):
            what = "bucket or path" if scheme in ("s3", "s3a", "gs", "gcs") else "path"
            return f"{what} not found ({_first_line(e) or type(e).__name__}); check the URL"
    return None


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_line(exc: BaseException, target: str | None = None) -> str:
    """The one line an error gets on stderr (without the program name)."""
    ours = isinstance(exc, ObjstoreError) or type(exc).__module__.split(".")[0] in ("objstore", "trackio")
    if ours and not isinstance(exc, StorageError):
        return _first_line(exc, limit=2000)  # our messages are written to be read whole
    explained = explain(exc, target)
    if explained is not None:
        return f"{target}: {explained}" if target else explained
    if isinstance(exc, ValueError | TypeError | LookupError | OSError):
        return _first_line(exc) or type(exc).__name__
    where = f"{target}: " if target else ""
    return f"{where}{type(exc).__name__}: {_first_line(exc)} (run with --debug for the traceback)"


def guarded(prog: str, codes: Sequence[tuple[type[BaseException], int]] = ()) -> Callable[[F], F]:
    """Decorate a click command: any error becomes one line ``prog: ...`` on stderr and an exit code.

    ``codes`` maps exception types to exit codes other than 1. Usage errors
    (click's own) pass through; Ctrl-C is left to the caller.
    """

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as exc:
                ctx = click.get_current_context(silent=True)
                if debug_enabled(ctx):
                    traceback.print_exc()
                target = (ctx.obj or {}).get("target") if ctx is not None else None
                click.echo(f"{prog}: {error_line(exc, target)}", err=True)
                code = next((c for t, c in codes if isinstance(exc, t)), EXIT_ERROR)
                sys.exit(code)

        return wrapper  # type: ignore[return-value]

    return decorate


def set_target(ctx: click.Context, target: str) -> None:
    """Name the URL or path an error message should point at."""
    ctx.ensure_object(dict)["target"] = target
