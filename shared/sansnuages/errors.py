"""Errors named by the condition, split into those worth retrying and those that are not.

Invalid input is never retried: it goes to quarantine (uploads) or marks a tile failed (jobs).
"""

from __future__ import annotations


class SansnuagesError(Exception):
    """Base of every error the core raises on purpose."""

    retryable = False


class InvalidProduct(SansnuagesError):
    """An upload that can never be ingested as it is: quarantine it, do not retry."""


class NotAZip(InvalidProduct):
    pass


class UnsafeArchive(InvalidProduct):
    pass


class NotAMuscateProduct(InvalidProduct):
    pass


class MissingBand(InvalidProduct):
    pass


class InconsistentMetadata(InvalidProduct):
    pass


class CorruptRaster(InvalidProduct):
    """A raster of the archive that cannot be decoded, checked on a local copy (so that a
    network failure while reading it is retried instead)."""


class UnexpectedFormat(InvalidProduct):
    """A member named like a raster that is not a GeoTIFF (a VRT, say): never opened by
    another driver, since GDAL picks drivers from content, not names."""


class OffGrid(InvalidProduct):
    """A raster whose CRS, origin, extent, pixel size, type or band count is not that of its
    kind on its MGRS tile: sizes come from the grid, not from the attacker's metadata."""


class InvalidRequest(SansnuagesError):
    """A request (API, CLI, job) whose parameters are wrong: a 400, never a retry."""


class SearchBudgetSpent(InvalidRequest):
    """A search that read its whole budget of index records without a match. A page with no
    Item and a `next` link would end most clients' paging silently (pystac-client stops at an
    empty page); this refusal is explicit, and still carries the link that resumes the search."""

    def __init__(self, reason: str, next_link: dict[str, object] | None) -> None:
        super().__init__(reason)
        self.next_link = next_link


class NotFound(SansnuagesError):
    pass


class UnknownArea(InvalidRequest):
    pass


class InvalidArea(InvalidRequest):
    """An inline GeoJSON area that cannot bound a job (not a polygon, invalid, too large)."""


class NoInputs(SansnuagesError):
    """A synthesis or mosaic with nothing to work on: the tile or job fails, without retries."""


class TransientError(SansnuagesError):
    """Storage or service hiccup: let the queue deliver the message again."""

    retryable = True
