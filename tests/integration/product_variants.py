"""One small product per packaging variant that real MUSCATE and Let-It-Snow products show,
shared by the tests that ingest them directly and through the notification chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sansnuages.tools.simulate import Packaging, simulate_product, simulate_snow_product

SMALL = 1098.0  # 100 x 100 px R1: real sizes are measured by bench/ingest.py
WHEN = datetime(2025, 7, 20, 10, 50, 1, tzinfo=UTC)  # Sentinel-2C flies from 2024

SENTINEL2: dict[str, dict[str, Any]] = {
    "flag C, V4-0": dict(flag="C", version="4-0"),
    "flag H, V1-0": dict(flag="H", version="1-0"),
    "flag D, V2-2, Sentinel-2A": dict(platform="SENTINEL2A", version="2-2"),
    "flag D, V3-1, Sentinel-2B": dict(platform="SENTINEL2B", version="3-1"),
    "zip named without version": dict(packaging=Packaging(zip_version=False)),
    "members with ./": dict(packaging=Packaging(dot_paths=True)),
    "uint16 ATB": dict(packaging=Packaging(atb_dtype="uint16")),
    "with DFP masks": dict(packaging=Packaging(with_dfp=True)),
    "with DFP and DTF masks": dict(packaging=Packaging(with_dfp=True, with_dtf=True)),
}
"""Sentinel-2 variants (Sentinel-2C, flag D, V1-8, uint8 ATB, no DFP or DTF unless said)."""


def variant_products(out: Path) -> dict[str, Path]:
    """Write every variant's zip into `out`; one acquisition minute apart each, so that every
    variant is its own product."""
    products = {
        name: simulate_product(
            "31TCJ",
            WHEN + timedelta(minutes=n),
            options.pop("platform", "SENTINEL2C"),
            out,
            resolution=SMALL,
            **options,
        )
        for n, (name, options) in enumerate((k, dict(v)) for k, v in SENTINEL2.items())
    }
    products["Landsat-8"] = simulate_product(
        "31TCJ", WHEN, "LANDSAT8-OLITIRS-XS", out, resolution=SMALL * 2 / 3, version="1-9"
    )
    products["snow Sentinel-2"] = simulate_snow_product(
        "31TCH", WHEN, "SENTINEL2A", out, resolution=SMALL
    )
    products["snow Landsat-8"] = simulate_snow_product(
        "31TCH", WHEN, "LANDSAT8-OLITIRS-XS", out, resolution=SMALL * 2 / 3, version="2-0"
    )
    return products
