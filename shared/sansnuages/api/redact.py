"""What a reason may tell a client: a short text with nothing of the server in it.

Reasons are written by code that sees internals: a stage stores the text of the exception that
failed a tile, a library's message names the file or the object it could not read. At the API's
edge a reason keeps one line (the error's own line of a traceback), loses URLs, local paths,
bucket keys and anything shaped like a credential, and is cut to a few hundred characters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

MOST_CHARS = 300
TRACEBACK = "Traceback (most recent call last)"
KEPT_URLS = ("http://www.opengis.net/",)
"""URLs that name a standard (filter-crs): said back as they are."""
SENSITIVE_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSPHRASE|CREDENTIAL|PRIVATE|APIKEY|(?:^|_)KEY(?:_|$)"
)

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
_PATH = re.compile(r"(?<![\w.:/\\-])(?:~|[A-Za-z]:)?[/\\][^\s'\"<>,;:()]+")
_KEY = re.compile(
    r"(?<![\w.@+=-])(?:[\w.@+=-]+(?:/[\w.@+=%-]*){2,}"
    r"|(?:incoming|quarantine|l2a|l3a|mosaics|collections)/[^\s'\"<>,;()]*)"
)
_SECRET = re.compile(
    r"(?<![\w+/=-])(?:(?=[\w+/=-]*[A-Z])(?=[\w+/=-]*[a-z])(?=[\w+/=-]*\d)[\w+/=-]{20,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16})(?![\w+/=-])"
)


def public_reason(
    text: str | None, most: int = MOST_CHARS, environ: Mapping[str, str] | None = None
) -> str | None:
    """`text` fit for a response: one line, redacted, at most `most` characters."""
    if text is None:
        return None
    line = _error_line(str(text))
    for value in _sensitive_values(os.environ if environ is None else environ):
        line = line.replace(value, "<secret>")
    pieces: list[str] = []
    end = 0
    for url in _URL.finditer(line):  # the text between URLs is redacted, each URL whole
        pieces += [_redacted(line[end : url.start()]), _url(url.group(0))]
        end = url.end()
    line = "".join([*pieces, _redacted(line[end:])])
    return line if len(line) <= most else f"{line[: most - 1]}…"


def _redacted(text: str) -> str:
    text = _PATH.sub("<path>", text)
    text = _KEY.sub("<key>", text)
    return _SECRET.sub("<secret>", text)


def _error_line(text: str) -> str:
    """The first line, or the last of a traceback (where the error is); spaces collapsed."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith(TRACEBACK) else lines[0]


def _url(url: str) -> str:
    return url if url.startswith(KEPT_URLS) else "<url>"


def _sensitive_values(environ: Mapping[str, str]) -> list[str]:
    """Values of the environment variables whose names say they are secret (longest first,
    so that one containing another is replaced whole)."""
    found = {v for k, v in environ.items() if SENSITIVE_NAME.search(k.upper()) and len(v) >= 8}
    return sorted(found, key=len, reverse=True)
