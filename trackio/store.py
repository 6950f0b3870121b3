"""Where trackio keeps its data: one objstore repository per machine.

``TRACKIO_DIR`` (default ``$HF_HOME/trackio``, i.e.
``~/.cache/huggingface/trackio``) holds the repository in ``objstore/``.
Projects are namespaces of refs inside it, so a file logged in two projects
is stored once.
"""

from __future__ import annotations

import os
import threading

from objstore import Repository
from objstore.errors import NotARepository, RepositoryExists

_lock = threading.Lock()
_open: dict[str, Repository] = {}


def trackio_dir() -> str:
    explicit = os.environ.get("TRACKIO_DIR")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(os.path.abspath(os.path.expanduser(hf_home)), "trackio")


def store_path() -> str:
    return os.path.join(trackio_dir(), "objstore")


def get_repo() -> Repository:
    """The machine's repository, created on first use (safe under concurrency)."""
    path = store_path()
    with _lock:
        repo = _open.get(path)
        if repo is None:
            try:
                repo = Repository.open(path)  # first: a read-only store must stay readable
            except NotARepository:
                os.makedirs(path, exist_ok=True)
                try:
                    repo = Repository.init(path)
                except RepositoryExists:  # another process created it meanwhile
                    repo = Repository.open(path)
            _open[path] = repo
        return repo


def close_all() -> None:
    """Forget open repositories (tests switch ``TRACKIO_DIR`` between cases)."""
    with _lock:
        for repo in _open.values():
            repo.close()
        _open.clear()
