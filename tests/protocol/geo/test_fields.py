"""Which attributes hold radii, buffers and ids; distances nobody reads are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.cover import cover_area_km2
from hexpsi.protocol.geo.estimate import bounded_cover
from hexpsi.protocol.geo.fields import FieldNames, looks_like_distance
from hexpsi.protocol.geo.parse import features_from_geojson, read_features
from hexpsi.protocol.geo.shapes import Area, Circle
from hexpsi.protocol.geo.shapes import Path as Line

GIS = Path(__file__).resolve().parents[2] / "fixtures" / "gis"
SQUARE = [[36.57, 35.98], [36.70, 35.98], [36.70, 35.87], [36.57, 35.87], [36.57, 35.98]]


def feature(geometry: object, *, own_id: object = None, **properties: object) -> dict[str, object]:
    """A GeoJSON Feature; ``own_id`` is its ``id`` member, ``properties`` its attributes."""
    out: dict[str, object] = {"type": "Feature", "properties": properties, "geometry": geometry}
    if own_id is not None:
        out["id"] = own_id
    return out


def collection(*features: object) -> dict[str, object]:
    return {"type": "FeatureCollection", "features": list(features)}


POINT = {"type": "Point", "coordinates": [38.618, 33.506]}
POLYGON = {"type": "Polygon", "coordinates": [SQUARE]}
LINE = {"type": "LineString", "coordinates": [[36.5, 35.9], [36.6, 35.95]]}


def refusal(document: object, fields: FieldNames | None = None) -> str:
    with pytest.raises(InputError) as caught:
        features_from_geojson(document, default_radius_m=0, fields=fields)
    return caught.value.explain()


# --- the regression: a radius under another name -----------------------------


def test_a_qgis_radius_attribute_is_refused_by_name_not_ignored() -> None:
    """Before: ``Radius_m`` was ignored and the two sites covered 2 cells, 0.23 km²."""
    with pytest.raises(InputError) as caught:
        read_features(
            (GIS / "qgis_sites.geojson").read_bytes(),
            source="qgis_sites.geojson",
            default_radius_m=0,
        )
    message = caught.value.explain()
    assert message.startswith(
        "qgis_sites.geojson: feature 1 (index 0): properties.Radius_m looks like a distance, but "
        "hexpsi reads a point's radius from properties.radius_m"
    )
    assert message.endswith(
        "(if it holds metres, read it with --radius-field Radius_m for points or --buffer-field "
        "Radius_m for lines and polygons; if it is not a distance, --ignore-field Radius_m)"
    )


def test_mapping_the_qgis_radius_restores_the_protected_area() -> None:
    features = read_features(
        (GIS / "qgis_sites.geojson").read_bytes(),
        source="qgis_sites.geojson",
        default_radius_m=0,
        fields=FieldNames(radius="Radius_m"),
    )
    assert [(f.id, f.shapes) for f in features] == [
        (1, (Circle((33.506, 38.618), 3000.0),)),
        (2, (Circle((33.487, 38.672), 1500.0),)),
    ]
    area = cover_area_km2(bounded_cover(features, 9, 10**6))
    assert 38 < area < 46  # read as radius 0 it was 0.23 km²


@pytest.mark.parametrize(
    "name",
    ["radius", "Radius_m", "RADIUS_M", "buffer", "BUFFER_DIST", "distance", "Range", "width_m"],
)
def test_any_property_that_looks_like_a_distance_is_refused(name: str) -> None:
    message = refusal(collection(feature(POINT, own_id="a", **{name: 2000})))
    assert message.startswith(f"feature 'a' (index 0): properties.{name} looks like a distance")


def test_lines_and_polygons_are_held_to_the_same_rule() -> None:
    assert "properties.buffer looks like a distance" in refusal(
        collection(feature(POLYGON, buffer=200))
    )
    assert "properties.width looks like a distance" in refusal(collection(feature(LINE, width=8)))


def test_an_empty_or_null_distance_attribute_holds_nothing_to_lose() -> None:
    [f] = features_from_geojson(
        collection(feature(POINT, radius=None, range="", radius_m=10)), default_radius_m=0
    )
    assert f.shapes == (Circle((33.506, 38.618), 10.0),)


def test_ignore_says_an_attribute_is_not_a_distance() -> None:
    document = collection(feature(POINT, district="Homs", radius_m=10))
    assert "properties.district looks like a distance" in refusal(document)
    [f] = features_from_geojson(
        document, default_radius_m=0, fields=FieldNames(ignore=frozenset({"district"}))
    )
    assert f.shapes == (Circle((33.506, 38.618), 10.0),)


def test_radius_and_buffer_fields_map_a_layers_own_names() -> None:
    fields = FieldNames(radius="Radius", buffer="BUF_M")
    point, polygon, line = features_from_geojson(
        collection(
            feature(POINT, Radius=2000, BUF_M=5),
            feature(POLYGON, BUF_M=300, Radius=None),
            feature(LINE, BUF_M=40),
        ),
        default_radius_m=7,
        fields=fields,
    )
    assert point.shapes == (Circle((33.506, 38.618), 2000.0),)
    assert isinstance(polygon.shapes[0], Area)
    assert polygon.shapes[0].buffer_m == 300.0
    assert line.shapes[0] == Line(((35.9, 36.5), (35.95, 36.6)), 40.0)
    # The default names are no longer read, so they are strays now.
    assert "properties.radius_m looks like a distance" in refusal(
        collection(feature(POINT, radius_m=5)), fields
    )


def test_geojson_property_names_are_matched_exactly() -> None:
    assert "properties.RADIUS_M looks like" in refusal(collection(feature(POINT, RADIUS_M=9)))
    message = refusal(collection(feature(POINT, Radius="far")), FieldNames(radius="Radius"))
    assert "properties.Radius must be a number of metres" in message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"radius": "radius_km"}, "--radius-field radius_km looks like a distance in km"),
        ({"radius": "RangeNm"}, "--radius-field RangeNm looks like a distance in nm"),
        ({"buffer": "buffer_ft"}, "--buffer-field buffer_ft looks like a distance in ft"),
        ({"buffer": "Width (miles)"}, "in miles, but hexpsi reads metres"),
        ({"radius": " "}, "--radius-field must name an attribute"),
        ({"id": ""}, "--id-field must name an attribute"),
    ],
)
def test_a_field_in_another_unit_is_refused(fields: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FieldNames(**fields)  # type: ignore[arg-type]


def test_metre_fields_are_fine() -> None:
    for name in ("radius_m", "Radius_m", "RadiusMetres", "buffer", "dist_m"):
        assert FieldNames(radius=name, buffer=name).radius == name


def test_looks_like_distance() -> None:
    assert looks_like_distance("Safety_Radius")
    assert looks_like_distance("BufferDist")
    assert not looks_like_distance("name")
    assert not looks_like_distance("category")


# --- ids -----------------------------------------------------------------------


def test_ids_come_from_id_then_fid_then_name_then_the_index() -> None:
    features = features_from_geojson(
        collection(
            feature(POINT, own_id="own", id="prop", fid=1, name="n0"),
            feature(POINT, id="prop", fid=7, name="n1"),
            feature(POINT, fid=8.0, name="n2"),
            feature(POINT, name="Checkpoint"),
            feature(POINT, name=""),
            feature(POINT),
        ),
        default_radius_m=0,
    )
    assert [f.id for f in features] == ["own", "prop", 8, "Checkpoint", 4, 5]


def test_id_field_names_the_attribute_ids_come_from() -> None:
    document = collection(
        feature(POINT, own_id="own", site="S1", name="a"), feature(POINT, site="S2", name="a")
    )
    features = features_from_geojson(document, default_radius_m=0, fields=FieldNames(id="site"))
    assert [f.id for f in features] == ["S1", "S2"]
    by_id = features_from_geojson(document, default_radius_m=0, fields=FieldNames(id="id"))
    assert [f.id for f in by_id] == ["own", 1]


def test_names_that_clash_say_how_to_choose_another_id() -> None:
    message = refusal(
        collection(feature(POINT, name="Checkpoint"), feature(POINT, name="Checkpoint"))
    )
    assert "id 'Checkpoint' is already used by feature 'Checkpoint' (index 0)" in message
    assert "--id-field NAME" in message


def test_a_bad_id_attribute_names_the_property() -> None:
    message = refusal(collection(feature(POINT, fid=[1])))
    assert "properties.fid must be a non-empty string or an integer, got [1]" in message


# --- no default radius ----------------------------------------------------------


def test_without_a_default_a_point_needs_its_own_radius() -> None:
    with pytest.raises(InputError) as caught:
        features_from_geojson(collection(feature(POINT, own_id="p")), default_radius_m=None)
    message = caught.value.explain()
    assert message.startswith(
        "feature 'p' (index 0): a point needs a radius in metres, but properties.radius_m is "
        "not set"
    )
    assert "--radius-field NAME" in message
    assert "--radius-m 0: a point is just its cell" in message
    with pytest.raises(InputError, match="a bare geometry has no properties"):
        features_from_geojson(POINT, default_radius_m=None)


def test_without_a_default_lines_and_polygons_are_themselves() -> None:
    point, polygon, line = features_from_geojson(
        collection(feature(POINT, radius_m=0), feature(POLYGON), feature(LINE)),
        default_radius_m=None,
    )
    assert point.shapes == (Circle((33.506, 38.618), 0.0),)
    assert [s.buffer_m for s in (*polygon.shapes, *line.shapes) if not isinstance(s, Circle)] == [
        0.0,
        0.0,
    ]
