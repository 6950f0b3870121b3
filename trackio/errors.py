"""Exceptions a trackio user can meet.

They follow trackio's conventions (validation problems are ``ValueError``,
misuse of a frozen artifact is ``RuntimeError``) and add precise subclasses
so callers can tell the cases apart.
"""

from __future__ import annotations


class TrackioError(Exception):
    """Base class of trackio's own errors."""


class InvalidNameError(TrackioError, ValueError):
    """An artifact name, alias, type or project name breaks the naming rules."""


class ReservedAliasError(InvalidNameError):
    """``vN`` is a version specifier and cannot be used as an alias."""


class ArtifactNotFoundError(TrackioError, ValueError, LookupError):
    """No artifact, version or alias matches the spec."""


class ArtifactTypeError(TrackioError, ValueError):
    """The artifact exists with another type than the one asked for."""


class ArtifactPathError(TrackioError, ValueError, FileNotFoundError):
    """A local path given to ``add_file``/``add_dir``/``add_reference`` is missing or of the wrong kind."""


class ManifestPathError(TrackioError, ValueError):
    """A logical path inside an artifact is unsafe or duplicated."""


class ArtifactFrozenError(TrackioError, RuntimeError):
    """The artifact was logged or fetched and can no longer change."""


class NoActiveRunError(TrackioError, RuntimeError):
    """The call needs a run: call ``trackio.init()`` first."""


class ReferenceChangedError(TrackioError, ValueError):
    """A referenced file no longer matches the checksum recorded when it was logged."""


class SyncError(TrackioError, RuntimeError):
    """The remote could not be reached or kept rejecting the push."""


class UnsupportedReferenceError(TrackioError, ValueError):
    """No reference handler takes this URI's scheme."""


class DashboardUnavailableError(TrackioError, RuntimeError):
    """``trackio.show()`` was called but this build has no dashboard to open."""
