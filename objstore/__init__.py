"""objstore: a git-like, content-addressed object store on any fsspec filesystem.

>>> from objstore import Repository
>>> repo = Repository.init("store")                 # doctest: +SKIP
>>> tree = repo.snapshot("data/")                    # doctest: +SKIP
>>> c = repo.commit(tree, message="first")           # doctest: +SKIP
>>> repo.refs.set("main", c)                         # doctest: +SKIP
"""

from __future__ import annotations

from . import errors
from .checkout import CheckoutResult
from .chunking import ChunkParams
from .diff import Change
from .ids import ObjectId
from .objects import Blob, ChunkedBlob, Commit, Tree, TreeEntry
from .refs import ABSENT, RefLogEntry
from .repo import Repository, RepoStats, SnapshotStats
from .snapshot import FilesUnder

__version__ = "0.1.0"

__all__ = [
    "ABSENT",
    "Blob",
    "Change",
    "CheckoutResult",
    "FilesUnder",
    "ChunkParams",
    "ChunkedBlob",
    "Commit",
    "ObjectId",
    "RefLogEntry",
    "RepoStats",
    "SnapshotStats",
    "Repository",
    "Tree",
    "TreeEntry",
    "errors",
    "__version__",
]
