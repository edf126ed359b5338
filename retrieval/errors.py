"""One error hierarchy for the whole application.

Every error raised on purpose by mmrag derives from :class:`MmragError` and carries a
message written for the person using the tool (it is shown as-is by the CLI and, later,
mapped to an HTTP status in exactly one place). Vendor exceptions are wrapped with
``raise ... from e`` so the cause stays available for debugging.
"""

from __future__ import annotations


class MmragError(Exception):
    """Base class: the message is displayed to the user."""


class ConfigError(MmragError):
    """Settings that cannot work together (e.g. both a Qdrant ``url`` and a ``path``)."""


class EncoderMismatchError(MmragError):
    """A collection was filled by a different encoder than the one now configured."""


class StoreError(MmragError):
    """The vector store could not be opened or answered with an error."""


class StoreLockedError(StoreError):
    """Another process holds the embedded store's folder (the message says which)."""


class LoaderError(MmragError):
    """A file could not be turned into items (corrupt, empty, unsupported, undecodable)."""


class UnsupportedTypeError(LoaderError):
    """No loader handles this file type."""


class EmptyDocumentError(LoaderError):
    """The file holds no text that could be indexed."""


class OutsideRootError(LoaderError):
    """A path leads out of the folders being ingested (a symlink, a picture reference):
    ingestion reads nothing there, so a folder cannot expose the rest of the disk."""


class LimitError(LoaderError):
    """A file is over an ingest limit (unpacked size, pages, characters, rendered pixels).

    The message names the file, the limit and the setting that raises it: the file may
    be fine, only larger than this deployment agreed to spend on one file.
    """


class ModelError(MmragError):
    """A packaged model is missing, corrupt, or failed to load."""


class GenerationError(MmragError):
    """The language model backend failed (server down, timeout, bad response)."""
