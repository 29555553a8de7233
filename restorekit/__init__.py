"""restorekit: image restoration across many degradation types and levels."""

from __future__ import annotations

__version__ = "0.1.0"
