"""What can be wrong with a volume, each with a message naming the file and the fault.

Every error a reader can raise means the volume must not be trusted; none of them
is retryable with the same inputs. Messages never contain key material.
"""

from __future__ import annotations


class VolumeError(Exception):
    """Base of all volume errors."""


class NotAVolumeError(VolumeError):
    """The directory holds no volume (no manifest, or not our format)."""


class WrongKeyError(VolumeError):
    """The key is not the volume's key."""


class TamperedError(VolumeError):
    """A manifest or file blob failed authentication: altered, swapped or reordered."""


class TruncatedError(VolumeError):
    """A blob is shorter or longer than the manifest says."""


class MissingBlobError(VolumeError):
    """The manifest lists a file whose blob is gone (removed or rolled back)."""


class RollbackError(VolumeError):
    """The volume is older than the version the caller last saw."""


class NoSuchFileError(VolumeError):
    """The path is not in the volume."""


class InvalidPathError(VolumeError):
    """A path a volume cannot hold (absolute, `..`, empty component, NUL)."""


class ConcurrentUpdateError(VolumeError):
    """Another writer committed since this volume was opened."""


class DestinationError(VolumeError):
    """The output of encrypt/decrypt exists already or cannot be created."""
