"""Versions of one product: the newest is current, older ones point to it."""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pystac
from pystac.extensions.version import VersionExtension, VersionRelType

from sansnuages.formats.muscate import ProductName


@dataclass(frozen=True)
class VersionLinks:
    """Where one product stands among the versions of the same acquisition."""

    deprecated: bool
    predecessor: str | None
    successor: str | None
    latest: str


def version_history(ids_by_version: Mapping[str, tuple[int, int]]) -> dict[str, VersionLinks]:
    """Order the products of one acquisition by version: every one but the newest is
    deprecated, and each points to its neighbours and to the newest."""
    ordered = sorted(ids_by_version, key=lambda i: (ids_by_version[i], i))
    latest = ordered[-1]
    return {
        product: VersionLinks(
            deprecated=product != latest,
            predecessor=ordered[n - 1] if n > 0 else None,
            successor=ordered[n + 1] if n + 1 < len(ordered) else None,
            latest=latest,
        )
        for n, product in enumerate(ordered)
    }


def set_version(
    item: pystac.Item, version: str, links: VersionLinks, href_of: Mapping[str, str]
) -> None:
    """Versioning indicators: `version`, `deprecated`, and the links between versions."""
    ext = VersionExtension.ext(item, add_if_missing=True)
    ext.version = version
    ext.deprecated = links.deprecated
    rels = {
        VersionRelType.LATEST: links.latest,
        VersionRelType.PREDECESSOR: links.predecessor,
        VersionRelType.SUCCESSOR: links.successor,
    }
    for rel, target in rels.items():
        item.clear_links(rel)
        if target is not None and target != item.id:
            item.add_link(pystac.Link(rel, href_of[target], media_type=pystac.MediaType.GEOJSON))


VERSION_RELS = ("latest-version", "predecessor-version", "successor-version")


def version_label(version: tuple[int, int] | None) -> str:
    return f"{version[0]}.{version[1]}" if version else "0.0"


def set_version_links(item: pystac.Item, item_key: str, keys: Mapping[str, str]) -> None:
    """Version, `deprecated` and links of `item` among the versions `keys` (id -> Item key,
    `item` included)."""
    versions = {i: ProductName.parse(i).version or (0, 0) for i in keys}
    history = version_history(versions)
    label = version_label(ProductName.parse(item.id).version)
    set_version(item, label, history[item.id], _hrefs(item_key, keys))


def relinked(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Of the Item documents of one acquisition (by key), those whose version fields must
    change for them to agree with each other, rewritten."""
    keys = {str(document["id"]): key for key, document in documents.items()}
    changed: dict[str, dict[str, Any]] = {}
    for key, document in documents.items():
        with warnings.catch_warnings():  # reading a deprecated version is the point here
            warnings.simplefilter("ignore", pystac.errors.DeprecatedWarning)
            item = pystac.Item.from_dict(dict(document), migrate=False)
        set_version_links(item, key, keys)
        rewritten = item.to_dict(include_self_link=False, transform_hrefs=False)
        if version_fields(rewritten) != version_fields(document):
            changed[key] = rewritten
    return changed


def version_fields(document: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the version links decide in a document (the rest is never touched by them)."""
    props = document.get("properties") or {}
    links = sorted(
        (str(link.get("rel")), str(link.get("href")))
        for link in document.get("links") or []
        if link.get("rel") in VERSION_RELS
    )
    return props.get("version"), props.get("deprecated"), tuple(links)


def _hrefs(from_key: str, keys: Mapping[str, str]) -> dict[str, str]:
    folder = posixpath.dirname(from_key)
    return {product: posixpath.relpath(key, folder) for product, key in keys.items()}
