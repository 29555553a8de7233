"""Errors that reach users as one clear line (the CLI prints `str(err)` and exits non-zero)."""

from __future__ import annotations

from pathlib import Path


class RestorekitError(Exception):
    """Base class: every error we raise on purpose, worded for the person at the terminal."""


class ImageError(RestorekitError):
    """An image file that cannot be read or written; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SpecError(RestorekitError):
    """A degradation spec string that does not parse or has an out-of-range level."""


class ConfigError(RestorekitError):
    """A training/eval configuration problem, named by file and key."""


class ModelError(RestorekitError):
    """An unknown model name, a bad weights file or a hash mismatch."""


class TooManyPixels(ImageError):
    """An image whose header declares more pixels than the caller's limit; raised before decoding.

    Carries the numbers so each front end can say how *it* raises the limit (`--max-pixels` for the
    server, `RESTOREKIT_MAX_PIXELS` / `max_pixels=` for the CLI and the library).
    """

    def __init__(self, path: str | Path, width: int, height: int, limit: int, reason: str):
        self.width, self.height, self.limit = width, height, limit
        super().__init__(path, reason)


class TimedOut(RestorekitError):
    """Work that stopped itself at its deadline (checked between tiles: CPU work in a thread cannot be killed).

    Carries the limit so each front end can say how *it* raises it (`--timeout` for the server).
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"took longer than the {seconds:g} s limit")


class MissingPackage(RestorekitError):
    """An optional package a requested feature needs is not installed (the message says how to get it)."""
