"""The web server's default limits, in one place for the app and `restorekit serve --help` (no Starlette
import, so the CLI starts without the web extras)."""

from __future__ import annotations

DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 40_000_000  # ~6300x6300; a web page should not decode a 179 MP bomb
DEFAULT_MAX_JOBS = 2  # each job already uses every core (torch threads); more at once only share them
DEFAULT_QUEUE = 4  # the page aborts and re-sends while the slider moves: a short line absorbs that
DEFAULT_TIMEOUT_S = 120.0
RETRY_AFTER_S = 2  # what a 503 tells the client to wait
