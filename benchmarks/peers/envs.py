"""The peers' environments, made by the benchmark itself and cached.

Under ``<repo>/.bench-peers/`` (git-ignored):

* ``trackio-0.43/``: a venv with ``trackio==0.43.0`` from PyPI;
* ``dvc/``: a venv with ``dvc`` and ``dvc-s3`` (for the S3 workload).

Each venv is made with the benchmark's interpreter (``python -m venv``) and
``pip install``; a stamp file records what was installed, so the next run
reuses it. ``git`` is the system's; ``git-lfs`` and ``restic`` come from
Debian (``apt-get install -y git-lfs restic``) when missing and the
benchmark runs as root. Whatever cannot be had is returned as unavailable
with the reason, and the benchmark skips that peer.

Objstore and our trackio façade run under the project's own interpreter
(``sys.executable``, the ``.venv``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ..common import ROOT

ENV_ROOT = os.path.join(ROOT, ".bench-peers")

TRACKIO_REQ = ["trackio==0.43.0"]
DVC_REQ = ["dvc==3.67.1", "dvc-s3==3.3.0"]
APT_PACKAGES = {"git-lfs": "git-lfs", "restic": "restic"}
PIP_TIMEOUT_S = 900


@dataclass
class Tool:
    """One peer's installation: where it is, its version, or why it is missing."""

    name: str
    ok: bool
    version: str = ""
    python: str | None = None  # interpreter, for Python-library systems
    exe: str | None = None  # binary, for CLIs
    reason: str = ""  # why not ok
    extra: dict[str, str] = field(default_factory=dict)


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return " | ".join(kept[-lines:])[:300]


def _venv(name: str, requirements: list[str], log: Callable[[str], None]) -> tuple[str | None, str]:
    """(python of the venv, "") or (None, why not)."""
    path = os.path.join(ENV_ROOT, name)
    python = os.path.join(path, "bin", "python")
    stamp = os.path.join(path, ".bench-installed")
    want = "\n".join(requirements) + "\n"
    try:
        with open(stamp) as f:
            if f.read() == want and os.access(python, os.X_OK):
                return python, ""
    except OSError:
        pass
    log(f"peers: installing {' '.join(requirements)} into {path} (once; cached)")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(ENV_ROOT, exist_ok=True)
    try:
        made = subprocess.run([sys.executable, "-m", "venv", path], capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            return None, f"python -m venv failed: {_tail(made.stderr)}"
        pip = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"install failed: {exc}"
    if pip.returncode != 0:
        return None, f"pip install {' '.join(requirements)} failed: {_tail(pip.stderr)}"
    with open(stamp, "w") as f:
        f.write(want)
    return python, ""


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def _apt_install(packages: list[str], log: Callable[[str], None]) -> str:
    """Install Debian packages; "" on success, else why not."""
    if os.geteuid() != 0:
        return "not root, cannot apt-get install"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    log(f"peers: apt-get install {' '.join(packages)}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:  # stale package lists: update once and retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install failed: {exc}"
    if done.returncode != 0:
        return f"apt-get install {' '.join(packages)} failed: {_tail(done.stderr)}"
    return ""


def ensure(log: Callable[[str], None], only: tuple[str, ...] | None = None) -> dict[str, Tool]:
    """Every peer's tool, installed if need be: ``{"trackio 0.43", "dvc", "git", "git-lfs", "restic"}``.

    ``only=("trackio 0.43",)`` sets up just that peer (the scale benchmarks compare with it alone).
    """
    tools: dict[str, Tool] = {}

    python, why = _venv("trackio-0.43", TRACKIO_REQ, log)
    if python:
        version = _version([python, "-c", "import importlib.metadata as m; print('trackio', m.version('trackio'))"])
        tools["trackio 0.43"] = Tool("trackio 0.43", True, version, python=python)
    else:
        tools["trackio 0.43"] = Tool("trackio 0.43", False, reason=why)
    if only is not None and set(only) <= {"trackio 0.43"}:
        return {k: v for k, v in tools.items() if k in only}

    python, why = _venv("dvc", DVC_REQ, log)
    if python:
        exe = os.path.join(os.path.dirname(python), "dvc")
        tools["dvc"] = Tool("dvc", True, "dvc " + _version([exe, "--version"]), python=python, exe=exe)
    else:
        tools["dvc"] = Tool("dvc", False, reason=why)

    git = shutil.which("git")
    if git:
        tools["git"] = Tool("git", True, _version([git, "--version"]), exe=git)
    else:
        tools["git"] = Tool("git", False, reason="no git on PATH")

    missing = [pkg for exe, pkg in APT_PACKAGES.items() if shutil.which(exe) is None]
    apt_why = _apt_install(missing, log) if missing else ""
    lfs = shutil.which("git-lfs")
    if git and lfs:
        tools["git-lfs"] = Tool("git-lfs", True, _version([lfs, "version"]), exe=git, extra={"lfs": lfs})
    else:
        tools["git-lfs"] = Tool("git-lfs", False, reason="no git" if not git else f"git-lfs not installed: {apt_why}")
    restic = shutil.which("restic")
    if restic:
        tools["restic"] = Tool("restic", True, _version([restic, "version"]), exe=restic)
    else:
        tools["restic"] = Tool("restic", False, reason=f"restic not installed: {apt_why}")
    return tools if only is None else {k: v for k, v in tools.items() if k in only}
