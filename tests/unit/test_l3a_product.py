"""The L3A product's name, metadata document and quicklook."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from sansnuages.formats.l3a_product import (
    SynthesisFacts,
    l3a_product_id,
    metadata_xml,
    quicklook_jpeg,
    to_bytes_rgb,
)
from sansnuages.formats.muscate import ProductName
from sansnuages.raster.cog import write_cog


def test_name_says_which_satellites_and_which_run() -> None:
    centre = date(2018, 7, 15)
    both = l3a_product_id("31UFS", centre, ["SENTINEL2A", "SENTINEL2B"], 0)
    assert both == "SENTINEL2X_20180715-000000-000_L3A_T31UFS_C_V1-0"
    assert l3a_product_id("31UFS", centre, ["SENTINEL2B"], 2).startswith("SENTINEL2B_")
    assert l3a_product_id("31UFS", centre, ["LANDSAT8-OLITIRS-XS"], 0).startswith("SENTINEL2X_")
    assert l3a_product_id("31UFS", centre, ["SENTINEL2A", "LANDSAT8-OLITIRS-XS"], 1).endswith(
        "_V1-1"
    )
    parsed = ProductName.parse(both)  # the MUSCATE name pattern of FORMATS.md section 1
    assert parsed.level == "L3A"


def test_metadata_lists_the_period_and_every_input() -> None:
    facts = SynthesisFacts(
        product_id="SENTINEL2X_20190115-000000-000_L3A_T31UFS_C_V1-0",
        tile="31UFS",
        centre=date(2019, 1, 15),
        start=date(2018, 12, 23),
        end=date(2019, 2, 7),
        half_window_days=23,
        inputs=["A", "B", "C"],
        contributing=["A", "C"],
        flag_percent={"clear": 97.5, "cloud": 2.5},
        parameters={"landsat8_weight": 0.33},
    )
    root = ET.fromstring(metadata_xml(facts))
    assert root.tag == "Muscate_Metadata_Document"
    assert root.findtext("Synthesis_Period/BEGIN_DATE") == "2018-12-23"
    assert root.findtext("Synthesis_Period/END_DATE") == "2019-02-07"
    products = root.findall("Product_List/PRODUCT")
    assert [(p.text, p.get("contributing")) for p in products] == [
        ("A", "true"),
        ("B", "false"),
        ("C", "true"),
    ]
    assert root.findtext("Product_Characteristics/PRODUCT_VERSION") == "1.0"
    assert root.find("Synthesis_Parameters/PARAMETER[@name='landsat8_weight']").text == "0.33"  # type: ignore[union-attr]


def test_quicklook_is_a_small_true_colour_jpeg(tmp_path: Path) -> None:
    transform = Affine(10, 0, 300000, 0, -10, 4900020)
    paths = []
    for name, value in (("red", 1200), ("green", 600), ("blue", 300)):
        data = np.full((2100, 1500), value, dtype=np.int16)
        data[:10, :10] = -10000
        paths.append(
            write_cog(
                str(tmp_path / f"{name}.tif"),
                data,
                crs="EPSG:32631",
                transform=transform,
                nodata=-10000,
            )
        )
    jpeg = quicklook_jpeg(paths)
    assert jpeg[:3] == b"\xff\xd8\xff"
    with (
        warnings.catch_warnings(),
        MemoryFile(jpeg) as memory,
    ):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = memory.open()
        assert max(src.width, src.height) <= 1000 and src.count == 3
        rgb = src.read()[:, 500, 300].astype(int)
        src.close()
    assert rgb[0] > rgb[1] > rgb[2] > 0  # red-dominant, as the inputs


def test_bytes_keep_no_data_black() -> None:
    rgb = to_bytes_rgb(np.array([[np.nan, 0.3]]), np.array([[0.0, 0.1]]), np.array([[0.0, 0.0]]))
    assert rgb[:, 0, 0].tolist() == [0, 1, 1] or rgb[0, 0, 0] == 0
    assert rgb[0, 0, 1] == 255
