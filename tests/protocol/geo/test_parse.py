"""GeoJSON and CSV parsing: every geometry type, and every way input can be wrong."""

from __future__ import annotations

import json
import math

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.parse import features_from_geojson, read_features
from hexpsi.protocol.geo.parse_csv import features_from_csv
from hexpsi.protocol.geo.shapes import Area, Circle, Path


def feature(geometry: object, *, fid: object = None, **properties: object) -> dict[str, object]:
    out: dict[str, object] = {"type": "Feature", "properties": properties, "geometry": geometry}
    if fid is not None:
        out["id"] = fid
    return out


def collection(*features: object) -> dict[str, object]:
    return {"type": "FeatureCollection", "features": list(features)}


def point(lng: float, lat: float) -> dict[str, object]:
    return {"type": "Point", "coordinates": [lng, lat]}


SQUARE = [[36.57, 35.98], [36.70, 35.98], [36.70, 35.87], [36.57, 35.87], [36.57, 35.98]]
HOLE = [[36.62, 35.94], [36.65, 35.94], [36.65, 35.91], [36.62, 35.91], [36.62, 35.94]]


# --- geometry types ------------------------------------------------------------


def test_point_swaps_to_lat_lng_and_takes_its_radius() -> None:
    [f] = features_from_geojson(
        collection(feature(point(38.618, 33.506), fid="tanf", radius_m=5000)), default_radius_m=7
    )
    assert f.id == "tanf"
    assert f.shapes == (Circle(center=(33.506, 38.618), radius_m=5000.0),)


def test_point_without_radius_uses_the_default_and_ignores_altitude() -> None:
    geometry = {"type": "Point", "coordinates": [10.0, 20.0, 350.5]}
    [f] = features_from_geojson(collection(feature(geometry)), default_radius_m=250)
    assert f.shapes == (Circle(center=(20.0, 10.0), radius_m=250.0),)


def test_null_radius_means_default() -> None:
    [f] = features_from_geojson(collection(feature(point(1, 2), radius_m=None)), default_radius_m=9)
    assert f.shapes == (Circle((2.0, 1.0), 9.0),)


def test_multipoint_gives_one_circle_per_position() -> None:
    geometry = {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4], [5, 6]]}
    [f] = features_from_geojson(collection(feature(geometry, radius_m=10)), default_radius_m=0)
    assert f.shapes == (
        Circle((2.0, 1.0), 10.0),
        Circle((4.0, 3.0), 10.0),
        Circle((6.0, 5.0), 10.0),
    )


def test_linestring_takes_buffer_not_radius() -> None:
    geometry = {"type": "LineString", "coordinates": [[1, 2], [3, 4], [5, 6]]}
    [f] = features_from_geojson(
        collection(feature(geometry, buffer_m=300, radius_m=99)), default_radius_m=0
    )
    assert f.shapes == (Path(points=((2.0, 1.0), (4.0, 3.0), (6.0, 5.0)), buffer_m=300.0),)


def test_multilinestring_gives_one_path_per_line() -> None:
    geometry = {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}
    [f] = features_from_geojson(collection(feature(geometry)), default_radius_m=50)
    assert f.shapes == (
        Path(((0.0, 0.0), (1.0, 1.0)), 50.0),
        Path(((2.0, 2.0), (3.0, 3.0)), 50.0),
    )


def test_polygon_with_hole_drops_the_closing_position() -> None:
    geometry = {"type": "Polygon", "coordinates": [SQUARE, HOLE]}
    [f] = features_from_geojson(collection(feature(geometry, buffer_m=1000)), default_radius_m=0)
    [area] = f.shapes
    assert isinstance(area, Area)
    assert area.exterior == ((35.98, 36.57), (35.98, 36.70), (35.87, 36.70), (35.87, 36.57))
    assert area.holes == (((35.94, 36.62), (35.94, 36.65), (35.91, 36.65), (35.91, 36.62)),)
    assert area.buffer_m == 1000.0


def test_multipolygon_gives_one_area_per_polygon() -> None:
    geometry = {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE, HOLE]]}
    [f] = features_from_geojson(collection(feature(geometry)), default_radius_m=0)
    assert [type(s) for s in f.shapes] == [Area, Area]
    assert [len(s.holes) for s in f.shapes if isinstance(s, Area)] == [0, 1]


def test_geometry_collection_flattens_nested_members_with_their_own_distances() -> None:
    geometry = {
        "type": "GeometryCollection",
        "geometries": [
            point(1, 2),
            {
                "type": "GeometryCollection",
                "geometries": [
                    {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                    {"type": "Polygon", "coordinates": [SQUARE]},
                ],
            },
        ],
    }
    [f] = features_from_geojson(
        collection(feature(geometry, radius_m=5, buffer_m=6)), default_radius_m=0
    )
    assert f.shapes[0] == Circle((2.0, 1.0), 5.0)
    assert f.shapes[1] == Path(((0.0, 0.0), (1.0, 1.0)), 6.0)
    assert isinstance(f.shapes[2], Area)
    assert f.shapes[2].buffer_m == 6.0


def test_single_feature_and_bare_geometry_are_accepted() -> None:
    [f] = features_from_geojson(feature(point(1, 2), fid="only"), default_radius_m=3)
    assert (f.id, f.shapes) == ("only", (Circle((2.0, 1.0), 3.0),))
    [g] = features_from_geojson(point(1, 2), default_radius_m=3)
    assert (g.id, g.shapes) == (0, (Circle((2.0, 1.0), 3.0),))


def test_ids_are_kept_as_given_or_default_to_the_index() -> None:
    features = features_from_geojson(
        collection(
            feature(point(0, 0), fid="a"),
            feature(point(0, 0)),
            feature(point(0, 0), fid=17),
            feature(point(0, 0), fid=4.0),
        ),
        default_radius_m=0,
    )
    assert [f.id for f in features] == ["a", 1, 17, 4]


def test_boundary_coordinates_are_valid() -> None:
    features = features_from_geojson(
        collection(feature(point(180, 90)), feature(point(-180, -90))), default_radius_m=0
    )
    assert [f.shapes[0] for f in features] == [
        Circle((90.0, 180.0), 0.0),
        Circle((-90.0, -180.0), 0.0),
    ]


# --- CSV -----------------------------------------------------------------------


def test_csv_rows_become_circle_features() -> None:
    text = "lat,lng,radius_m,id\n33.506,38.618,5000,tanf\n35.41,35.94,,\n"
    features = features_from_csv(text, default_radius_m=100)
    assert [(f.id, f.shapes) for f in features] == [
        ("tanf", (Circle((33.506, 38.618), 5000.0),)),
        (1, (Circle((35.41, 35.94), 100.0),)),
    ]


def test_csv_header_is_forgiving_about_case_order_aliases_and_extra_columns() -> None:
    text = '\ufeffName, LON ,Latitude,Colour\n"Tartus, port",35.87,34.89,red\n\n"",1,2,\n'
    features = features_from_csv(text, default_radius_m=0)
    assert [(f.id, f.shapes) for f in features] == [
        ("Tartus, port", (Circle((34.89, 35.87), 0.0),)),
        (1, (Circle((2.0, 1.0), 0.0),)),
    ]


# --- detection -----------------------------------------------------------------


def test_read_features_detects_geojson_by_content_whatever_the_name() -> None:
    data = json.dumps(collection(feature(point(1, 2), fid="p"))).encode()
    [f] = read_features(data, source="upload.txt", default_radius_m=0)
    assert f.id == "p"


def test_read_features_detects_csv_by_content() -> None:
    [f] = read_features(b"lat,lng\n1,2\n", source="positions.dat", default_radius_m=4)
    assert f.shapes == (Circle((1.0, 2.0), 4.0),)


def test_a_geojson_name_makes_broken_content_a_json_error() -> None:
    with pytest.raises(InputError, match=r"^zones\.geojson: not valid JSON: .* line 1 column 1"):
        read_features(b"lat,lng\n1,2\n", source="zones.geojson", default_radius_m=0)


# --- bad GeoJSON ---------------------------------------------------------------

BAD_GEOJSON: list[tuple[object, str]] = [
    (
        collection(feature(point(38.618, 33.506), fid="tanf", radius_m=-5)),
        "feature 'tanf' (index 0): properties.radius_m must be a finite number >= 0, got -5",
    ),
    (
        collection(feature(point(0, 0)), feature(point(0, 0), radius_m=math.nan)),
        "feature at index 1: properties.radius_m must be a finite number >= 0, got nan",
    ),
    (
        collection(feature({"type": "Polygon", "coordinates": [SQUARE]}, fid=3, buffer_m="1km")),
        'feature 3 (index 0): properties.buffer_m must be a number of metres, got "1km"',
    ),
    (
        collection(feature({"type": "Circle", "coordinates": [0, 0]}, fid="c")),
        "feature 'c' (index 0): geometry.type: \"Circle\" is not a GeoJSON geometry type",
    ),
    (
        collection(feature({"type": "Point"}, fid="p")),
        "feature 'p' (index 0): geometry: a Point needs a 'coordinates' member",
    ),
    (
        collection(feature(None, fid="nowhere")),
        "feature 'nowhere' (index 0): has no geometry",
    ),
    (
        collection(feature(point(0, 95), fid="n")),
        "feature 'n' (index 0): geometry.coordinates: latitude 95.0 is outside -90..90",
    ),
    (
        collection(feature(point(-181, 0))),
        "feature at index 0: geometry.coordinates: longitude -181.0 is outside -180..180",
    ),
    (
        collection(feature(point(math.inf, 0))),
        "feature at index 0: geometry.coordinates: longitude must be a finite number, got inf",
    ),
    (
        collection(feature(point(1, math.nan))),
        "geometry.coordinates: latitude must be a finite number, got nan",
    ),
    (
        collection(feature({"type": "Point", "coordinates": ["1", 2]})),
        'geometry.coordinates: longitude must be a number, got "1"',
    ),
    (
        collection(feature({"type": "Point", "coordinates": [True, 2]})),
        "geometry.coordinates: longitude must be a number, got true",
    ),
    (
        collection(feature({"type": "Point", "coordinates": [1]})),
        "geometry.coordinates: a position must be an array [longitude, latitude], got [1]",
    ),
    (
        collection(feature({"type": "LineString", "coordinates": [[0, 0]]}, fid="l")),
        "feature 'l' (index 0): geometry.coordinates: a line needs at least 2 positions, got 1",
    ),
    (
        collection(feature({"type": "MultiPoint", "coordinates": []})),
        "geometry.coordinates: has no positions",
    ),
    (
        collection(feature({"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE[:-1]]]})),
        "geometry.coordinates[1][0]: ring is not closed: its last position [36.57, 35.87] "
        "must repeat its first [36.57, 35.98]",
    ),
    (
        collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]})),
        "geometry.coordinates[0]: a polygon ring (3 corners plus the first repeated) needs at "
        "least 4 positions, got 3",
    ),
    (
        collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 1], [0, 0]]]})),
        "geometry.coordinates[0]: a polygon ring needs at least three distinct corners",
    ),
    (
        collection(feature({"type": "Polygon", "coordinates": [SQUARE, HOLE[:-1]]})),
        "geometry.coordinates[1]: ring is not closed",
    ),
    (
        collection(feature({"type": "Polygon", "coordinates": []})),
        "geometry.coordinates: a polygon must be a non-empty array of rings",
    ),
    (
        collection(feature({"type": "GeometryCollection", "geometries": []}, fid="g")),
        "feature 'g' (index 0): geometry.geometries: has no geometries",
    ),
    (
        collection(
            feature(
                {
                    "type": "GeometryCollection",
                    "geometries": [point(0, 0), {"type": "Point", "coordinates": [0, -91]}],
                },
                fid="g",
            )
        ),
        "feature 'g' (index 0): geometry.geometries[1].coordinates: latitude -91.0 is outside",
    ),
    (collection(), "the FeatureCollection has no features"),
    ({"type": "FeatureCollection"}, "'features' must be an array, got null"),
    ([point(0, 0)], "GeoJSON must be an object with a 'type' member"),
    ({"type": "Topology"}, 'type "Topology" is not GeoJSON'),
    (
        collection(feature(point(0, 0)), {"type": "Point", "coordinates": [0, 0]}),
        'feature at index 1: must be a GeoJSON Feature object, got "Point"',
    ),
    (
        collection({"type": "Feature", "properties": [], "geometry": point(0, 0)}),
        "feature at index 0: properties must be an object or null, got []",
    ),
    (
        collection(feature(point(0, 0), fid=True)),
        "feature at index 0: id must be a non-empty string or an integer, got true",
    ),
    (
        collection(feature(point(0, 0), fid="a"), feature(point(1, 1), fid="a")),
        "feature 'a' (index 1): id 'a' is already used by feature 'a' (index 0)",
    ),
    (
        collection(feature(point(0, 0), fid="1"), feature(point(1, 1))),
        "feature at index 1: has no id and its default id 1 (its index) is already used by "
        "feature '1' (index 0)",
    ),
]


@pytest.mark.parametrize(("document", "message"), BAD_GEOJSON)
def test_bad_geojson_names_the_feature_and_field(document: object, message: str) -> None:
    with pytest.raises(InputError) as caught:
        features_from_geojson(document, default_radius_m=0)
    assert message in caught.value.explain()
    assert "\n" not in caught.value.explain()


def test_nesting_beyond_the_limit_is_refused() -> None:
    geometry: dict[str, object] = point(0, 0)
    for _ in range(40):
        geometry = {"type": "GeometryCollection", "geometries": [geometry]}
    with pytest.raises(InputError, match="nested deeper than 16 levels"):
        features_from_geojson(geometry, default_radius_m=0)


def test_a_bad_default_radius_is_refused() -> None:
    with pytest.raises(InputError, match="default radius must be a finite number >= 0"):
        features_from_geojson(point(0, 0), default_radius_m=-1)


# --- bad files -----------------------------------------------------------------

BAD_FILES: list[tuple[bytes, str]] = [
    (b"", "in.csv: is empty; expected GeoJSON or CSV"),
    (b"  \n\t", "in.csv: is empty"),
    (b"\xff\xfe", "in.csv: is not UTF-8 text (bad byte at offset 0)"),
    (b'{"type": "FeatureCollection",', "in.csv: not valid JSON: "),
    (b"[" * 100_000, "in.csv: not usable JSON: nested too deeply"),
    (
        b"north,east\n1,2\n",
        "in.csv: line 1: the CSV header must name a latitude column (lat, latitude, y) and a "
        "longitude column (lng, lon, long, longitude, x), in any case; got ['north', 'east']",
    ),
    (b"\n\nlat,lng\n", "in.csv: the CSV has a header but no rows"),
    (b"lat,lng,lat\n1,2,3\n", "in.csv: line 1: the header repeats column(s) lat"),
    (b"lat,lng\n1,2\n3\n", "in.csv: line 3: expected 2 fields as in the header, got 1"),
    (b"lat,lng\n1,2\nabc,2\n", "in.csv: line 3: lat must be a number, got 'abc'"),
    (b"lat,lng\n1,2\n\n1,nan\n", "in.csv: line 4: lng must be a finite number, got 'nan'"),
    (b"lat,lng\n91,2\n", "in.csv: line 2: latitude 91.0 is outside -90..90"),
    (b"lat,lng\n1,200\n", "in.csv: line 2: longitude 200.0 is outside -180..180"),
    (b"lat,lng,radius_m\n1,2,-5\n", "in.csv: line 2: radius_m must be a finite number >= 0"),
    (b"lat,lng,radius_m\n1,2,inf\n", "in.csv: line 2: radius_m must be a finite number, got"),
    (b'lat,lng\n1,"2\n', "in.csv: line 2: malformed CSV"),
    (
        b"lat,lng,id\n1,2,a\n3,4,b\n5,6,a\n",
        "in.csv: line 4: id 'a' is already used by line 2",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_FILES)
def test_bad_files_name_the_source_and_line(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_features(data, source="in.csv", default_radius_m=0)
    assert caught.value.explain().startswith(message)
    assert "\n" not in caught.value.explain()


# --- crs -----------------------------------------------------------------------


def named_crs(name: str) -> dict[str, object]:
    return {"type": "name", "properties": {"name": name}}


@pytest.mark.parametrize(
    "name",
    [
        "urn:ogc:def:crs:OGC:1.3:CRS84",
        "urn:ogc:def:crs:OGC::CRS84",
        "EPSG:4326",
        "epsg:4326",
        "urn:ogc:def:crs:EPSG::4326",
        "urn:ogc:def:crs:EPSG:6.6:4326",
        "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
        "http://www.opengis.net/def/crs/EPSG/0/4326",
    ],
)
def test_a_wgs84_crs_member_is_read_as_longitude_then_latitude(name: str) -> None:
    document = {**collection(feature(point(38.618, 33.506))), "crs": named_crs(name)}
    [f] = features_from_geojson(document, default_radius_m=0)
    assert f.shapes == (Circle((33.506, 38.618), 0.0),)


@pytest.mark.parametrize(
    ("crs", "message"),
    [
        (
            named_crs("urn:ogc:def:crs:EPSG::3857"),
            "coordinates are in urn:ogc:def:crs:EPSG::3857",
        ),
        (named_crs("EPSG:32637"), "coordinates are in EPSG:32637, not longitude and latitude"),
        (
            {"type": "link", "properties": {"href": "http://example.com/crs/42"}},
            'the crs member {"type": "link", ',
        ),
        ({"type": "name"}, "does not name a coordinate reference system"),
    ],
)
def test_any_other_crs_is_refused_by_name(crs: object, message: str) -> None:
    for document in (
        {**collection(feature(point(0, 0))), "crs": crs},
        collection({**feature(point(0, 0), fid="f"), "crs": crs}),
        {**point(0, 0), "crs": crs},
    ):
        with pytest.raises(InputError) as caught:
            features_from_geojson(document, default_radius_m=0)
        assert message in caught.value.explain()
        assert caught.value.explain().endswith(
            "(export the layer as EPSG:4326 (WGS 84) GeoJSON; in QGIS: Export, Save Features As, "
            "CRS EPSG:4326)"
        )
    with pytest.raises(InputError, match=r"^feature 'f' \(index 0\): "):
        features_from_geojson(
            collection({**feature(point(0, 0), fid="f"), "crs": crs}), default_radius_m=0
        )
