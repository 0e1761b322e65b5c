"""Reading MUSCATE (MAJA) Level-2A products: names, zip layout and the _MTD_ALL.xml metadata.

Everything here is pure: it takes names and bytes, so that the same code reads a product from
a local zip, from S3 or from a test fixture. Scale factors and nodata values come from the
product's own metadata, never from constants (Landsat-8 and Sentinel-2 differ).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
import xml.etree.ElementTree as ET  # noqa: S405 - the Element type only; parsing is defusedxml's
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from affine import Affine
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_untrusted_xml

from sansnuages.errors import InconsistentMetadata, MissingBand, NotAMuscateProduct, UnsafeArchive
from sansnuages.raster.brdf import AngleGrid

PRODUCT_NAME = re.compile(
    r"^(?P<platform>[A-Z0-9]+(?:-[A-Z0-9]+)*)_(?P<date>\d{8})-(?P<time>\d{6})-(?P<ms>\d{3})"
    r"_(?P<level>L1C|L2A|L3A|L2B-[A-Z]+|L3B-[A-Z]+)_(?P<zone>[A-Z0-9-]+)_(?P<flag>[CDH])"
    r"(?:_V(?P<vmaj>\d+)-(?P<vmin>\d+))?$"
)
TILE_ZONE = re.compile(r"^T(\d{2}[C-X][A-Z]{2})$")

SENTINEL2_GROUPS: dict[str, tuple[str, ...]] = {
    "R1": ("B2", "B3", "B4", "B8"),
    "R2": ("B5", "B6", "B7", "B8A", "B11", "B12"),
}
LANDSAT8_GROUPS: dict[str, tuple[str, ...]] = {
    "XS": ("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
}
# Masks that a usable L2A product must have for every group, and the optional ones.
REQUIRED_MASKS = ("CLM", "EDG")
OPTIONAL_MASKS = ("MG2", "SAT", "DFP", "IAB")
INGESTED_LEVELS = ("L2A", "L2B-SNOW")
"""Levels an upload may have; others (L1C, L3A, L3B) are valid names but not ingested."""
DEFAULT_AOT_QUANTIFICATION = 200.0
DEFAULT_WVC_QUANTIFICATION = 20.0


def groups_for(platform: str) -> dict[str, tuple[str, ...]]:
    """Resolution groups and their bands for a platform name as written in product names."""
    if platform.startswith("LANDSAT8"):
        return dict(LANDSAT8_GROUPS)
    if platform.startswith("SENTINEL2"):
        return dict(SENTINEL2_GROUPS)
    raise NotAMuscateProduct(f"unknown platform {platform!r}")


@dataclass(frozen=True)
class ProductName:
    """The parts of a MUSCATE product name; the version is absent from some zip names."""

    platform: str
    date: dt.date
    time: dt.time
    level: str
    zone: str
    flag: str
    version: tuple[int, int] | None

    @classmethod
    def parse(cls, name: str) -> ProductName:
        stem = PurePosixPath(name.strip()).name
        if stem.lower().endswith(".zip"):
            stem = stem[:-4]
        match = PRODUCT_NAME.match(stem)
        if match is None:
            raise NotAMuscateProduct(f"{name!r} is not a MUSCATE product name")
        try:
            date = dt.datetime.strptime(match["date"], "%Y%m%d").date()
            clock = dt.datetime.strptime(match["time"] + match["ms"], "%H%M%S%f").time()
        except ValueError as exc:
            raise NotAMuscateProduct(f"{name!r} has an impossible date or time: {exc}") from exc
        version = None
        if match["vmaj"] is not None:
            version = (int(match["vmaj"]), int(match["vmin"]))
        return cls(
            platform=match["platform"],
            date=date,
            time=clock,
            level=match["level"],
            zone=match["zone"],
            flag=match["flag"],
            version=version,
        )

    @property
    def tile(self) -> str:
        """The MGRS tile without its leading "T" ("31TCJ"); other zones are returned as written."""
        match = TILE_ZONE.match(self.zone)
        return match.group(1) if match else self.zone

    @property
    def acquired(self) -> dt.datetime:
        return dt.datetime.combine(self.date, self.time, tzinfo=dt.UTC)

    @property
    def acquisition(self) -> str:
        """The name without flag and version: every version of one acquisition shares it."""
        stamp = f"{self.date:%Y%m%d}-{self.time:%H%M%S}-{self.time.microsecond // 1000:03d}"
        return f"{self.platform}_{stamp}_{self.level}_{self.zone}"

    @property
    def product_id(self) -> str:
        stamp = f"{self.date:%Y%m%d}-{self.time:%H%M%S}-{self.time.microsecond // 1000:03d}"
        name = f"{self.platform}_{stamp}_{self.level}_{self.zone}_{self.flag}"
        if self.version is not None:
            name += f"_V{self.version[0]}-{self.version[1]}"
        return name


@dataclass(frozen=True)
class GroupGeometry:
    """The pixel grid of one resolution group (ULX/ULY are pixel corners)."""

    ulx: float
    uly: float
    xdim: float
    ydim: float
    nrows: int
    ncols: int

    @property
    def transform(self) -> Affine:
        return Affine(self.xdim, 0.0, self.ulx, 0.0, self.ydim, self.uly)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nrows, self.ncols)

    @property
    def resolution(self) -> float:
        return abs(self.xdim)


@dataclass(frozen=True)
class MuscateMetadata:
    """What sansnuages needs from _MTD_ALL.xml, typed; angles in degrees."""

    product_id: str
    level: str
    platform: str
    acquired: dt.datetime
    produced: dt.datetime | None
    product_version: str
    tile: str
    epsg: int
    groups: dict[str, GroupGeometry]
    cloud_percent: float | None
    snow_percent: float | None
    sun_zenith: float | None
    sun_azimuth: float | None
    view_zenith: float | None
    view_azimuth: float | None
    orbit_number: int | None
    reflectance_scale: float
    reflectance_nodata: float
    aot_scale: float
    wvc_scale: float
    atb_nodata: float
    level_written: str | None = None
    """PRODUCT_LEVEL as written (`level` prefers the one in the product id)."""


def check_agrees_with_name(meta: MuscateMetadata, name: ProductName) -> None:
    """The metadata must describe the product its name says, field by field: an upload is
    filed by its name, so a product must never pass for another tile, date or platform."""
    if meta.product_id != name.product_id:
        raise InconsistentMetadata(
            f"PRODUCT_ID: metadata names {meta.product_id}, the archive holds {name.product_id}"
        )
    if not TILE_ZONE.match(f"T{meta.tile}"):
        raise InconsistentMetadata(f"GEOGRAPHICAL_ZONE: {meta.tile[:20]!r} is not an MGRS tile")
    if meta.tile != name.tile:
        raise InconsistentMetadata(
            f"GEOGRAPHICAL_ZONE: metadata says {meta.tile}, the name says {name.tile}"
        )
    if name.platform != meta.platform and not name.platform.startswith(f"{meta.platform}-"):
        raise InconsistentMetadata(
            f"PLATFORM: metadata says {meta.platform[:40]!r}, the name says {name.platform}"
        )
    if abs((meta.acquired - name.acquired).total_seconds()) > 1.0:
        raise InconsistentMetadata(
            f"ACQUISITION_DATE: metadata says {meta.acquired:%Y-%m-%dT%H:%M:%S}, the name says "
            f"{name.acquired:%Y-%m-%dT%H:%M:%S}"
        )
    if meta.level_written and meta.level_written not in (name.level, name.level.split("-")[0]):
        raise InconsistentMetadata(
            f"PRODUCT_LEVEL: metadata says {meta.level_written[:20]!r}, the name says {name.level}"
        )
    if name.version is not None and meta.product_version:
        written = meta.product_version.upper().removeprefix("V").replace("-", ".")
        if written != f"{name.version[0]}.{name.version[1]}":
            raise InconsistentMetadata(
                f"PRODUCT_VERSION: metadata says {meta.product_version[:20]!r}, the name says "
                f"V{name.version[0]}-{name.version[1]}"
            )


def _parse_xml(xml: bytes) -> ET.Element:
    """Parse untrusted XML with a parser that refuses any DTD, and so entity expansion and
    external entities, whatever the text's encoding (a byte search for "<!DOCTYPE" is blind
    to UTF-16): MUSCATE metadata never needs one."""
    data = xml if isinstance(xml, bytes) else str(xml).encode("utf-8")
    try:
        root = parse_untrusted_xml(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InconsistentMetadata(f"metadata XML refused: {type(exc).__name__}") from exc
    except ET.ParseError as exc:
        raise InconsistentMetadata(f"metadata is not well-formed XML: {exc}") from exc
    if _local(root.tag) != "Muscate_Metadata_Document":
        raise NotAMuscateProduct(
            f"metadata root is <{_local(root.tag)}>, not <Muscate_Metadata_Document>"
        )
    _strip_namespaces(root)
    return root


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _strip_namespaces(root: ET.Element) -> None:
    for element in root.iter():
        element.tag = _local(element.tag)


def _text(root: ET.Element, path: str, required: bool = True) -> str | None:
    node = root.find(path)
    if node is None or node.text is None or not node.text.strip():
        if required:
            raise InconsistentMetadata(f"metadata lacks {path.lstrip('./')}")
        return None
    return node.text.strip()


def _required(root: ET.Element, path: str) -> str:
    value = _text(root, path)
    assert value is not None  # _text raised otherwise
    return value


def _number(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise InconsistentMetadata(f"{what} is not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise InconsistentMetadata(f"{what} is not finite: {text!r}")
    return value


def _datetime(text: str | None, what: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InconsistentMetadata(f"{what} is not an ISO date-time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _group_geometry(node: ET.Element) -> GroupGeometry:
    group = node.get("group_id", "?")
    values = {}
    for key in ("ULX", "ULY", "XDIM", "YDIM", "NROWS", "NCOLS"):
        values[key] = _number(_text(node, key), f"{key} of group {group}")
    rows, cols = values["NROWS"], values["NCOLS"]
    if rows is None or cols is None or rows <= 0 or cols <= 0 or rows % 1 or cols % 1:
        raise InconsistentMetadata(f"group {group} has an impossible size {rows} x {cols}")
    if values["XDIM"] == 0 or values["YDIM"] == 0:
        raise InconsistentMetadata(f"group {group} has a zero pixel size")
    return GroupGeometry(
        ulx=float(values["ULX"] or 0.0),
        uly=float(values["ULY"] or 0.0),
        xdim=float(values["XDIM"] or 0.0),
        ydim=float(values["YDIM"] or 0.0),
        nrows=int(rows),
        ncols=int(cols),
    )


def _groups(root: ET.Element) -> dict[str, GroupGeometry]:
    nodes = root.findall(".//Group_Geopositioning_List/Group_Geopositioning")
    groups = {node.get("group_id", ""): _group_geometry(node) for node in nodes}
    if not groups or "" in groups:
        raise InconsistentMetadata("metadata has no Group_Geopositioning with a group_id")
    return groups


def _epsg(root: ET.Element) -> int:
    code = _required(root, ".//Horizontal_Coordinate_System/HORIZONTAL_CS_CODE")
    digits = re.search(r"(\d{4,6})$", code)
    if digits is None:
        raise InconsistentMetadata(f"HORIZONTAL_CS_CODE {code!r} is not an EPSG code")
    return int(digits.group(1))


def _tile(root: ET.Element) -> str:
    zone = _required(root, "./Dataset_Identification/GEOGRAPHICAL_ZONE")
    match = TILE_ZONE.match(zone)
    return match.group(1) if match else zone


def _quality(root: ET.Element, name: str) -> float | None:
    path = f"QUALITY_INDEX[@name='{name}']"
    node = root.find(f".//Current_Product//{path}")
    if node is None:
        node = root.find(f".//{path}")
    if node is None:
        return None
    return _number(node.text.strip() if node.text else None, name)


def _sun_angles(root: ET.Element) -> tuple[float | None, float | None]:
    base = ".//Mean_Value_List/Sun_Angles/"
    zenith = _number(_text(root, base + "ZENITH_ANGLE", False), "sun zenith")
    azimuth = _number(_text(root, base + "AZIMUTH_ANGLE", False), "sun azimuth")
    return zenith, azimuth


def _view_angles(root: ET.Element) -> tuple[float | None, float | None]:
    """Mean over bands; azimuths are averaged on the circle so that 359 and 1 give 0."""
    nodes = root.findall(".//Mean_Viewing_Incidence_Angle_List/Mean_Viewing_Incidence_Angle")
    zeniths = [_number(_text(n, "ZENITH_ANGLE", False), "view zenith") for n in nodes]
    azimuths = [_number(_text(n, "AZIMUTH_ANGLE", False), "view azimuth") for n in nodes]
    zs = [z for z in zeniths if z is not None]
    azs = [math.radians(a) for a in azimuths if a is not None]
    zenith = sum(zs) / len(zs) if zs else None
    azimuth = None
    if azs:
        mean = math.atan2(sum(map(math.sin, azs)), sum(map(math.cos, azs)))
        azimuth = math.degrees(mean) % 360.0
    return zenith, azimuth


def _orbit(root: ET.Element) -> int | None:
    nodes = root.findall(".//Product_Characteristics/ORBIT_NUMBER")
    absolute = [n for n in nodes if n.get("type", "Absolute").lower() == "absolute"]
    for node in absolute or nodes:
        value = _number(node.text.strip() if node.text else None, "ORBIT_NUMBER")
        if value is not None and value >= 1:  # orbits count from 1; anything else is unknown
            return int(value)
    return None


def _quantification(root: ET.Element, names: tuple[str, ...], default: float | None) -> float:
    for name in names:
        value = _number(_text(root, f".//Radiometric_Informations/{name}", False), name)
        if value is not None:
            if value <= 0:
                raise InconsistentMetadata(f"{name} must be positive, not {value}")
            return value
    if default is None:
        raise InconsistentMetadata(f"metadata lacks Radiometric_Informations/{names[0]}")
    return default


def _special(root: ET.Element, names: tuple[str, ...], default: float) -> float:
    for name in names:
        node = root.find(f".//Special_Values_List/SPECIAL_VALUE[@name='{name}']")
        if node is not None:
            value = _number(node.text.strip() if node.text else None, f"special value {name}")
            if value is not None:
                return value
    return default


def _level(root: ET.Element, product_id: str) -> str:
    """PRODUCT_LEVEL when present, else the level in the product id; snow products write
    "L2B-SNOW" or "L2B" depending on the Let-It-Snow version."""
    try:
        named = ProductName.parse(product_id).level
    except NotAMuscateProduct:
        named = None
    written = _text(root, "./Product_Characteristics/PRODUCT_LEVEL", False)
    level = named or written
    if level is None:
        raise InconsistentMetadata(f"cannot tell the level of {product_id!r}")
    return level


def parse_metadata(xml: bytes) -> MuscateMetadata:
    """Read a MUSCATE _MTD_ALL.xml. Missing essentials raise InconsistentMetadata."""
    root = _parse_xml(xml)
    product_id = _required(root, "./Product_Characteristics/PRODUCT_ID")
    level = _level(root, product_id)
    acquired = _datetime(_required(root, "./Product_Characteristics/ACQUISITION_DATE"), "date")
    assert acquired is not None
    produced_text = _text(root, "./Product_Characteristics/PRODUCTION_DATE", False)
    sun_zenith, sun_azimuth = _sun_angles(root)
    view_zenith, view_azimuth = _view_angles(root)
    return MuscateMetadata(
        product_id=product_id,
        level=level,
        platform=_required(root, "./Product_Characteristics/PLATFORM"),
        acquired=acquired,
        produced=_datetime(produced_text, "PRODUCTION_DATE"),
        product_version=_text(root, "./Product_Characteristics/PRODUCT_VERSION", False) or "",
        tile=_tile(root),
        epsg=_epsg(root),
        groups=_groups(root),
        cloud_percent=_quality(root, "CloudPercent"),
        snow_percent=_quality(root, "SnowPercent"),
        sun_zenith=sun_zenith,
        sun_azimuth=sun_azimuth,
        view_zenith=view_zenith,
        view_azimuth=view_azimuth,
        orbit_number=_orbit(root),
        reflectance_scale=1.0
        / _quantification(
            root, ("REFLECTANCE_QUANTIFICATION_VALUE",), None if level == "L2A" else 1.0
        ),
        reflectance_nodata=_special(root, ("nodata",), -10000.0),
        aot_scale=1.0
        / _quantification(
            root,
            ("AEROSOL_OPTICAL_THICKNESS_QUANTIFICATION_VALUE", "AOT_QUANTIFICATION_VALUE"),
            DEFAULT_AOT_QUANTIFICATION,
        ),
        wvc_scale=1.0
        / _quantification(
            root,
            (
                "WATER_VAPOR_CONTENT_QUANTIFICATION_VALUE",
                "WATER_VAPOUR_CONTENT_QUANTIFICATION_VALUE",
            ),
            DEFAULT_WVC_QUANTIFICATION,
        ),
        atb_nodata=_special(
            root, ("aerosol_optical_thickness_nodata", "water_vapor_content_nodata"), 0.0
        ),
        level_written=_text(root, "./Product_Characteristics/PRODUCT_LEVEL", False),
    )


def view_angle_grid(xml: bytes) -> AngleGrid | None:
    """The 5 km view angle grids (`Angles_Grids_List`) of a product, merged over bands and
    detectors into one grid of view directions; None when the metadata has none.

    Each detector's grid holds values only where that detector sees (NaN elsewhere); view
    directions are averaged as tangent vectors, which is exact across the nadir track.
    """
    root = _parse_xml(xml)
    east: list[np.ndarray] = []
    north: list[np.ndarray] = []
    step = None
    path = ".//Viewing_Incidence_Angles_Grids_List//Viewing_Incidence_Angles_Grids"
    for grid in root.findall(path):
        zenith, azimuth = (_angle_values(grid, tag) for tag in ("Zenith", "Azimuth"))
        if zenith is None or azimuth is None or zenith.shape != azimuth.shape:
            continue
        step = step or _number(_text(grid, "Zenith/COL_STEP", False), "angle grid step")
        tangent = np.tan(np.radians(zenith))
        east.append(tangent * np.sin(np.radians(azimuth)))
        north.append(tangent * np.cos(np.radians(azimuth)))
    if not east or not step or len({e.shape for e in east}) != 1:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nodes no detector sees stay NaN
        e, n = np.nanmean(east, axis=0), np.nanmean(north, axis=0)
    zenith = np.degrees(np.arctan(np.hypot(e, n)))
    azimuth = np.degrees(np.arctan2(e, n))
    groups = _groups(root)
    corner = groups.get("R1") or next(iter(groups.values()))
    return AngleGrid.from_angles(zenith, azimuth, corner.ulx, corner.uly, float(step))


def _angle_values(grid: ET.Element, tag: str) -> np.ndarray | None:
    rows = grid.findall(f"{tag}/Values_List/VALUES")
    try:
        values = [[float(v) for v in (row.text or "").split()] for row in rows]
        array = np.array(values, dtype=np.float64)
    except ValueError:
        return None
    return array if array.ndim == 2 and array.size else None


@dataclass(frozen=True)
class ProductLayout:
    """Where each file of a product sits in its zip; `rasters` maps asset keys to member names.

    Keys: FRE_<band>, SRE_<band>, ATB_<group>, CLM_<group>, MG2_<group>, EDG_<group>,
    SAT_<group>, DFP_<group>, IAB_<group>, DTF_<group>-D<detector> (those present). Member names are kept exactly as in
    the zip (with their "./" if they had one) so that they can be opened as they are.
    """

    root: str
    name: ProductName
    metadata: str
    quicklook: str | None
    rasters: dict[str, str]

    @property
    def product_id(self) -> str:
        return self.name.product_id

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        return groups_for(self.name.platform)

    @classmethod
    def from_members(cls, names: list[str]) -> ProductLayout:
        clean = {_safe_member(name): name for name in names if name.strip("./")}
        root = _single_root(list(clean))
        metadata = [p for p in clean if p.parent == PurePosixPath(root) and _is_mtd(p.name)]
        if not metadata:
            raise NotAMuscateProduct(f"no *_MTD_ALL.xml in the top folder {root!r}")
        mtd = metadata[0]
        product_id = mtd.name[: -len("_MTD_ALL.xml")]
        name = ProductName.parse(product_id)
        rasters = _rasters(clean, PurePosixPath(root), product_id)
        quicklook = clean.get(PurePosixPath(root, f"{product_id}_QKL_ALL.jpg"))
        layout = cls(root, name, clean[mtd], quicklook, rasters)
        layout.check_complete()
        return layout

    def check_complete(self) -> None:
        """Every FRE band and the CLM, EDG and ATB of every group (L2A), or the snow map of
        one group (L2B-SNOW), must be there; other levels are not ingested."""
        if self.name.level not in INGESTED_LEVELS:
            raise NotAMuscateProduct(
                f"{self.product_id}: level {self.name.level} is not ingested "
                f"(only {', '.join(INGESTED_LEVELS)})"
            )
        if self.name.level == "L2B-SNOW":
            if not any(key.startswith("SNW_") for key in self.rasters):
                raise MissingBand(f"{self.product_id}: no snow map (_SNW_R2.tif or _SNW_XS.tif)")
            return
        for group, bands in self.groups.items():
            for band in bands:
                if f"FRE_{band}" not in self.rasters:
                    raise MissingBand(f"{self.product_id}: band FRE_{band} is missing")
            for kind in (*REQUIRED_MASKS, "ATB"):
                if f"{kind}_{group}" not in self.rasters:
                    raise MissingBand(f"{self.product_id}: {kind}_{group} is missing")


def vsi_member(name: str) -> str:
    """A member's path as GDAL's /vsizip/ knows it: GDAL drops a leading "./" that zipfile
    keeps, so a path has to be normalised before GDAL can open it."""
    return _safe_member(name).as_posix()


def _is_mtd(filename: str) -> bool:
    return filename.endswith("_MTD_ALL.xml")


def _safe_member(name: str) -> PurePosixPath:
    """Normalise a member name; refuse anything that could escape the extraction folder."""
    unix = name.replace("\\", "/")
    if unix.startswith("/") or re.match(r"^[A-Za-z]:", unix):
        raise UnsafeArchive(f"absolute path in archive: {name!r}")
    parts = [part for part in unix.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"'..' in archive path: {name!r}")
    return PurePosixPath(*parts)


def _single_root(paths: list[PurePosixPath]) -> str:
    if not paths:
        raise NotAMuscateProduct("the archive is empty")
    roots = {path.parts[0] for path in paths}
    if len(roots) != 1 or all(len(path.parts) == 1 for path in paths):
        raise NotAMuscateProduct(
            f"a MUSCATE product has exactly one top folder, found {sorted(roots)[:5]}"
        )
    return roots.pop()


def _rasters(
    members: dict[PurePosixPath, str], root: PurePosixPath, product_id: str
) -> dict[str, str]:
    # <what> is a band, a group, or a group and a detector (DTF masks: "R1-D04")
    pattern = re.compile(
        rf"^{re.escape(product_id)}_(?P<kind>[A-Z0-9]+)_(?P<what>[A-Z0-9]+(?:-D\d\d)?)\.tif$"
    )
    rasters = {}
    for path, original in members.items():
        if path.parent not in (root, root / "MASKS"):
            continue
        match = pattern.match(path.name)
        if match is not None:
            rasters[f"{match['kind']}_{match['what']}"] = original
    return rasters
