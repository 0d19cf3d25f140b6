"""Reference Server-Sent Events backend served at /notify/events."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "sse-app"

try:
    # Single source of truth is app/pyproject.toml; never hard-code it twice.
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["DISTRIBUTION", "__version__"]
