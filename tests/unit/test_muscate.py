"""MUSCATE names, zip layouts and metadata, on hand-written inputs shaped like real products."""

from __future__ import annotations

import datetime as dt

import pytest

from sansnuages.errors import InconsistentMetadata, MissingBand, NotAMuscateProduct, UnsafeArchive
from sansnuages.formats import muscate

S2_ID = "SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8"
L8_ID = "LANDSAT8-OLITIRS-XS_20180715-103512-123_L2A_T31TCJ_D_V1-9"

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<Muscate_Metadata_Document>
  <Dataset_Identification>
    <GEOGRAPHICAL_ZONE type="Tile">T31UFS</GEOGRAPHICAL_ZONE>
  </Dataset_Identification>
  <Product_Characteristics>
    <PRODUCT_ID>{pid}</PRODUCT_ID>
    <ACQUISITION_DATE>2018-07-14T10:56:26.461Z</ACQUISITION_DATE>
    <PRODUCTION_DATE>2018-07-15T02:37:31.389Z</PRODUCTION_DATE>
    <PRODUCT_VERSION>1.8</PRODUCT_VERSION>
    <PLATFORM>SENTINEL2B</PLATFORM>
    <ORBIT_NUMBER type="Absolute">7108</ORBIT_NUMBER>
  </Product_Characteristics>
  <Geoposition_Informations>
    <Coordinate_Reference_System>
      <Horizontal_Coordinate_System>
        <HORIZONTAL_CS_CODE>32631</HORIZONTAL_CS_CODE>
      </Horizontal_Coordinate_System>
    </Coordinate_Reference_System>
    <Geopositioning>
      <Group_Geopositioning_List>
        <Group_Geopositioning group_id="R1">
          <ULX>600000</ULX><ULY>5700000</ULY><XDIM>10</XDIM><YDIM>-10</YDIM>
          <NROWS>10980</NROWS><NCOLS>10980</NCOLS>
        </Group_Geopositioning>
        <Group_Geopositioning group_id="R2">
          <ULX>600000</ULX><ULY>5700000</ULY><XDIM>20</XDIM><YDIM>-20</YDIM>
          <NROWS>5490</NROWS><NCOLS>5490</NCOLS>
        </Group_Geopositioning>
      </Group_Geopositioning_List>
    </Geopositioning>
  </Geoposition_Informations>
  <Geometric_Informations>
    <Mean_Value_List>
      <Sun_Angles>
        <ZENITH_ANGLE unit="deg">31.5</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">151.25</AZIMUTH_ANGLE>
      </Sun_Angles>
      <Mean_Viewing_Incidence_Angle_List>
        <Mean_Viewing_Incidence_Angle band_id="B2">
          <ZENITH_ANGLE unit="deg">4.0</ZENITH_ANGLE><AZIMUTH_ANGLE unit="deg">358</AZIMUTH_ANGLE>
        </Mean_Viewing_Incidence_Angle>
        <Mean_Viewing_Incidence_Angle band_id="B3">
          <ZENITH_ANGLE unit="deg">6.0</ZENITH_ANGLE><AZIMUTH_ANGLE unit="deg">4</AZIMUTH_ANGLE>
        </Mean_Viewing_Incidence_Angle>
      </Mean_Viewing_Incidence_Angle_List>
    </Mean_Value_List>
  </Geometric_Informations>
  <Radiometric_Informations>
    <REFLECTANCE_QUANTIFICATION_VALUE>{quant}</REFLECTANCE_QUANTIFICATION_VALUE>
    <WATER_VAPOR_CONTENT_QUANTIFICATION_VALUE>20</WATER_VAPOR_CONTENT_QUANTIFICATION_VALUE>
    <AEROSOL_OPTICAL_THICKNESS_QUANTIFICATION_VALUE>200</AEROSOL_OPTICAL_THICKNESS_QUANTIFICATION_VALUE>
    <Special_Values_List>
      <SPECIAL_VALUE name="nodata">-10000</SPECIAL_VALUE>
      <SPECIAL_VALUE name="water_vapor_content_nodata">0</SPECIAL_VALUE>
      <SPECIAL_VALUE name="aerosol_optical_thickness_nodata">0</SPECIAL_VALUE>
    </Special_Values_List>
  </Radiometric_Informations>
  <Quality_Informations>
    <Current_Product>
      <Product_Quality_List level="N"><Product_Quality><Global_Index_List>
        <QUALITY_INDEX name="CloudPercent">37</QUALITY_INDEX>
        <QUALITY_INDEX name="SnowPercent">0</QUALITY_INDEX>
      </Global_Index_List></Product_Quality></Product_Quality_List>
    </Current_Product>
  </Quality_Informations>
</Muscate_Metadata_Document>
"""


def xml(pid: str = S2_ID, quant: str = "10000") -> bytes:
    return METADATA.format(pid=pid, quant=quant).encode()


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "platform", "level", "flag", "version"),
    [
        (S2_ID, "SENTINEL2B", "L2A", "D", (1, 8)),
        ("SENTINEL2A_20230301-103021-123_L2A_T31TCJ_C_V3-1", "SENTINEL2A", "L2A", "C", (3, 1)),
        ("SENTINEL2C_20250101-000000-000_L2A_T31TCJ_H_V4-0", "SENTINEL2C", "L2A", "H", (4, 0)),
        ("SENTINEL2A_20160101-105435-457_L2A_T31TCJ_D_V1-0", "SENTINEL2A", "L2A", "D", (1, 0)),
        ("SENTINEL2A_20180101-105435-457_L2A_T31TCJ_D", "SENTINEL2A", "L2A", "D", None),
        ("SENTINEL2X_20180715-000000-000_L3A_T31TCJ_C_V1-1", "SENTINEL2X", "L3A", "C", (1, 1)),
        (L8_ID, "LANDSAT8-OLITIRS-XS", "L2A", "D", (1, 9)),
        (
            "SENTINEL2A_20180228-105417-456_L2B-SNOW_T31TCH_D_V1-0",
            "SENTINEL2A",
            "L2B-SNOW",
            "D",
            (1, 0),
        ),
    ],
)
def test_every_name_variant_parses_and_round_trips(name, platform, level, flag, version):
    parsed = muscate.ProductName.parse(name)
    assert (parsed.platform, parsed.level, parsed.flag, parsed.version) == (
        platform,
        level,
        flag,
        version,
    )
    assert parsed.product_id == name
    assert parsed.tile == name.split("_")[3][1:]


def test_name_fields_are_typed():
    parsed = muscate.ProductName.parse(S2_ID + ".zip")
    assert parsed.date == dt.date(2018, 7, 14)
    assert parsed.time == dt.time(10, 56, 26, 461000)
    assert parsed.zone == "T31UFS" and parsed.tile == "31UFS"
    assert parsed.acquired == dt.datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "name",
    [
        "S2A_MSIL2A_20180714T105031_N0206_R051_T31UFS_20180714T120158",
        "SENTINEL2B_20180714-105626-461_L2A_T31UFS_X_V1-8",
        "SENTINEL2B_20180714-105626-461_L9Z_T31UFS_D_V1-8",
        "SENTINEL2B_20181340-105626-461_L2A_T31UFS_D_V1-8",
        "SENTINEL2B_20180714-105626_L2A_T31UFS_D_V1-8",
        "",
    ],
)
def test_bad_names_raise(name):
    with pytest.raises(NotAMuscateProduct):
        muscate.ProductName.parse(name)


def test_groups_follow_the_platform():
    assert muscate.groups_for("SENTINEL2A")["R2"] == ("B5", "B6", "B7", "B8A", "B11", "B12")
    assert list(muscate.groups_for("LANDSAT8-OLITIRS-XS")) == ["XS"]
    with pytest.raises(NotAMuscateProduct):
        muscate.groups_for("SPOT5")


# ---------------------------------------------------------------- metadata


def test_metadata_fields():
    meta = muscate.parse_metadata(xml())
    assert meta.product_id == S2_ID and meta.platform == "SENTINEL2B"
    assert meta.acquired == dt.datetime(2018, 7, 14, 10, 56, 26, 461000, tzinfo=dt.UTC)
    assert meta.produced == dt.datetime(2018, 7, 15, 2, 37, 31, 389000, tzinfo=dt.UTC)
    assert (meta.tile, meta.epsg, meta.product_version) == ("31UFS", 32631, "1.8")
    r2 = meta.groups["R2"]
    assert (r2.ulx, r2.uly, r2.xdim, r2.ydim, r2.nrows, r2.ncols) == (
        600000,
        5700000,
        20,
        -20,
        5490,
        5490,
    )
    assert tuple(r2.transform) == (20.0, 0.0, 600000.0, 0.0, -20.0, 5700000.0, 0.0, 0.0, 1.0)
    assert (meta.cloud_percent, meta.snow_percent) == (37.0, 0.0)
    assert (meta.sun_zenith, meta.sun_azimuth) == (31.5, 151.25)
    assert meta.view_zenith == pytest.approx(5.0)
    assert meta.view_azimuth == pytest.approx(1.0, abs=1e-6)  # 358 and 4 average to 1, not 181
    assert meta.orbit_number == 7108
    assert meta.reflectance_scale == pytest.approx(1e-4)
    assert (meta.aot_scale, meta.wvc_scale) == (pytest.approx(0.005), pytest.approx(0.05))
    assert (meta.reflectance_nodata, meta.atb_nodata) == (-10000.0, 0.0)


def test_landsat_scale_is_read_not_assumed():
    assert muscate.parse_metadata(xml(L8_ID, "1000")).reflectance_scale == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("remove", "what"),
    [
        ("<PRODUCT_ID>{pid}</PRODUCT_ID>", "PRODUCT_ID"),
        ("<HORIZONTAL_CS_CODE>32631</HORIZONTAL_CS_CODE>", "HORIZONTAL_CS_CODE"),
        ("<ACQUISITION_DATE>2018-07-14T10:56:26.461Z</ACQUISITION_DATE>", "ACQUISITION_DATE"),
        ("<NROWS>5490</NROWS>", "NROWS"),
        (
            "<REFLECTANCE_QUANTIFICATION_VALUE>{quant}</REFLECTANCE_QUANTIFICATION_VALUE>",
            "REFLECTANCE_QUANTIFICATION_VALUE",
        ),
    ],
)
def test_missing_fields_are_named(remove, what):
    broken = METADATA.replace(remove, "").format(pid=S2_ID, quant="10000").encode()
    with pytest.raises(InconsistentMetadata, match=what):
        muscate.parse_metadata(broken)


def test_bad_values_are_refused():
    with pytest.raises(InconsistentMetadata, match="not a number"):
        muscate.parse_metadata(xml(quant="ten thousand"))
    with pytest.raises(InconsistentMetadata, match="positive"):
        muscate.parse_metadata(xml(quant="0"))
    with pytest.raises(InconsistentMetadata, match="ISO"):
        muscate.parse_metadata(xml().replace(b"2018-07-14T10:56:26.461Z", b"yesterday"))


def test_malformed_xml_and_foreign_documents():
    with pytest.raises(InconsistentMetadata, match="well-formed"):
        muscate.parse_metadata(xml()[:-40])
    with pytest.raises(NotAMuscateProduct, match="root"):
        muscate.parse_metadata(b"<n1:Level-2A_Tile_ID xmlns:n1='x'/>")


def test_entity_expansion_is_refused():
    bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><Muscate_Metadata_Document/>'
    with pytest.raises(InconsistentMetadata, match="DTD"):
        muscate.parse_metadata(bomb)


# ---------------------------------------------------------------- layouts


def members(pid: str = S2_ID, prefix: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    groups = muscate.groups_for(pid.split("_")[0])
    files = [f"{pid}_MTD_ALL.xml", f"{pid}_QKL_ALL.jpg"]
    for group, bands in groups.items():
        files += [f"{pid}_{kind}_{band}.tif" for band in bands for kind in ("FRE", "SRE")]
        files.append(f"{pid}_ATB_{group}.tif")
        files += [f"MASKS/{pid}_{kind}_{group}.tif" for kind in ("CLM", "MG2", "EDG", "SAT")]
    names = [f"{prefix}{pid}/", f"{prefix}{pid}/MASKS/", f"{prefix}{pid}/DATA/{pid}_PVD_ALL.xml"]
    names += [f"{prefix}{pid}/{f}" for f in files if not any(f.endswith(s) for s in skip)]
    return names


@pytest.mark.parametrize("prefix", ["", "./"])
def test_sentinel2_layout(prefix):
    layout = muscate.ProductLayout.from_members(members(prefix=prefix))
    assert layout.root == S2_ID
    assert layout.name.product_id == S2_ID
    assert layout.metadata == f"{prefix}{S2_ID}/{S2_ID}_MTD_ALL.xml"
    assert layout.quicklook == f"{prefix}{S2_ID}/{S2_ID}_QKL_ALL.jpg"
    assert layout.rasters["FRE_B8A"] == f"{prefix}{S2_ID}/{S2_ID}_FRE_B8A.tif"
    assert layout.rasters["CLM_R2"] == f"{prefix}{S2_ID}/MASKS/{S2_ID}_CLM_R2.tif"
    assert len([k for k in layout.rasters if k.startswith("FRE_")]) == 10
    assert {"ATB_R1", "ATB_R2", "MG2_R1", "EDG_R2", "SAT_R1"} <= set(layout.rasters)
    assert "DFP_R1" not in layout.rasters


def test_landsat_layout_and_optional_masks():
    names = members(L8_ID) + [f"{L8_ID}/MASKS/{L8_ID}_DFP_XS.tif"]
    layout = muscate.ProductLayout.from_members(names)
    assert {"FRE_B1", "FRE_B7", "ATB_XS", "CLM_XS", "EDG_XS", "DFP_XS"} <= set(layout.rasters)
    assert not any(k.endswith("_R1") for k in layout.rasters)


@pytest.mark.parametrize(
    ("skip", "named"),
    [
        ("_FRE_B8A.tif", "B8A"),
        ("_CLM_R2.tif", "CLM_R2"),
        ("_EDG_R1.tif", "EDG_R1"),
        ("_ATB_R1.tif", "ATB_R1"),
    ],
)
def test_missing_band_or_mask_is_named(skip, named):
    with pytest.raises(MissingBand, match=named):
        muscate.ProductLayout.from_members(members(skip=(skip,)))


def test_missing_sre_is_tolerated():
    layout = muscate.ProductLayout.from_members(members(skip=("_SRE_B2.tif",)))
    assert "SRE_B2" not in layout.rasters


@pytest.mark.parametrize(
    "extra",
    [
        "../evil.sh",
        f"{S2_ID}/../../etc/passwd",
        "/etc/passwd",
        "C:\\Windows\\evil.dll",
        f"{S2_ID}\\..\\..\\evil",
    ],
)
def test_unsafe_paths_raise(extra):
    with pytest.raises(UnsafeArchive):
        muscate.ProductLayout.from_members([*members(), extra])


def test_not_a_product():
    with pytest.raises(NotAMuscateProduct, match="MTD_ALL"):
        muscate.ProductLayout.from_members(members(skip=("_MTD_ALL.xml",)))
    with pytest.raises(NotAMuscateProduct, match="one top folder"):
        muscate.ProductLayout.from_members([*members(), "other/readme.txt"])
    with pytest.raises(NotAMuscateProduct):
        muscate.ProductLayout.from_members([])
    renamed = [n.replace(S2_ID, "my_product") for n in members()]
    with pytest.raises(NotAMuscateProduct):
        muscate.ProductLayout.from_members(renamed)


SNOW_ID = "SENTINEL2A_20180228-105417-456_L2B-SNOW_T31TCH_D_V1-0"


def test_snow_layout_needs_its_snow_map():
    names = [f"{SNOW_ID}/{SNOW_ID}_MTD_ALL.xml", f"{SNOW_ID}/{SNOW_ID}_SNW_R2.tif"]
    layout = muscate.ProductLayout.from_members(names)
    assert layout.rasters == {"SNW_R2": names[1]} and layout.name.level == "L2B-SNOW"
    with pytest.raises(MissingBand, match="snow map"):
        muscate.ProductLayout.from_members(names[:1])


def test_levels_that_are_not_ingested_are_refused():
    l3a = "SENTINEL2X_20180715-000000-000_L3A_T31TCJ_C_V1-1"
    with pytest.raises(NotAMuscateProduct, match="L3A is not ingested"):
        muscate.ProductLayout.from_members([f"{l3a}/{l3a}_MTD_ALL.xml"])


def test_versions_of_one_acquisition_share_their_acquisition_name():
    old, new = (
        muscate.ProductName.parse(S2_ID.replace("_D_V1-8", v)) for v in ("_D_V1-8", "_C_V4-0")
    )
    assert old.acquisition == new.acquisition == "SENTINEL2B_20180714-105626-461_L2A_T31UFS"
    assert muscate.vsi_member(f"./{S2_ID}/MASKS/x.tif") == f"{S2_ID}/MASKS/x.tif"


def test_snow_metadata_needs_no_reflectance_scale_and_bad_orbits_are_unknown():
    snow = xml(SNOW_ID).replace(
        b"<REFLECTANCE_QUANTIFICATION_VALUE>10000</REFLECTANCE_QUANTIFICATION_VALUE>", b""
    )
    meta = muscate.parse_metadata(snow.replace(b">7108<", b">-32010<"))
    assert meta.level == "L2B-SNOW" and meta.orbit_number is None
    with pytest.raises(InconsistentMetadata, match="REFLECTANCE"):
        muscate.parse_metadata(snow.replace(SNOW_ID.encode(), S2_ID.encode()))
