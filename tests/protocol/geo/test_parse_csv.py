"""CSV as spreadsheets write it: headers by name, sniffed delimiters, BOM, CRLF, decimal commas."""

from __future__ import annotations

from pathlib import Path

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.fields import FieldNames
from hexpsi.protocol.geo.parse import read_features
from hexpsi.protocol.geo.parse_csv import features_from_csv
from hexpsi.protocol.geo.shapes import Circle

GIS = Path(__file__).resolve().parents[2] / "fixtures" / "gis"
SITES = [Circle((33.506, 38.618), 3000.0), Circle((33.487, 38.672), 1500.0)]


def read(name: str, **options: object) -> list[tuple[object, object]]:
    features = read_features((GIS / name).read_bytes(), source=name, **options)  # type: ignore[arg-type]
    return [(f.id, f.shapes[0]) for f in features]


def refusal(text: str, *, default_radius_m: float | None = 0, **fields: str) -> str:
    with pytest.raises(InputError) as caught:
        features_from_csv(text, default_radius_m=default_radius_m, fields=FieldNames(**fields))  # type: ignore[arg-type]
    message = caught.value.explain()
    assert "\n" not in message
    return message


def test_excel_german_semicolons_decimal_commas_bom_and_crlf() -> None:
    data = (GIS / "excel_de.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbfName;Latitude;Longitude;Radius_m\r\n")
    assert read("excel_de.csv", default_radius_m=None) == [
        ("At-Tanf garrison", SITES[0]),
        ("Tanf supply point", SITES[1]),
    ]


def test_excel_x_y_columns_with_a_radius_column_of_its_own() -> None:
    with pytest.raises(InputError) as caught:
        read("excel_xy.csv", default_radius_m=0)
    assert caught.value.explain() == (
        "excel_xy.csv: line 2: column 'Radius' looks like a distance, but hexpsi reads a point's "
        "radius in metres from column 'radius_m' (if it holds the radius in metres, read it "
        "with --radius-field Radius; if it is not a distance, --ignore-field Radius)"
    )
    assert read("excel_xy.csv", default_radius_m=None, fields=FieldNames(radius="Radius")) == [
        ("T1", SITES[0]),
        ("T2", SITES[1]),
    ]


@pytest.mark.parametrize(
    "header",
    ["lat,lng", "LNG,LAT", "Longitude,Latitude", "x,y", "Y,X", "lon,latitude", " Long , Lat "],
)
def test_latitude_and_longitude_columns_in_any_order_and_case(header: str) -> None:
    names = [name.strip().lower() for name in header.split(",")]
    values = {"lat": "33.5", "latitude": "33.5", "y": "33.5"}
    row = ",".join(values.get(name, "38.6") for name in names)
    [f] = features_from_csv(f"{header}\n{row}\n", default_radius_m=0)
    assert f.shapes == (Circle((33.5, 38.6), 0.0),)


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_sniffed(delimiter: str) -> None:
    text = delimiter.join(["name", "lat", "lng", "radius_m"]) + "\n"
    text += delimiter.join(["Tartus, port" if delimiter != "," else '"Tartus, port"', "34.89"])
    text += delimiter + delimiter.join(["35.87", "250"]) + "\n"
    [f] = features_from_csv(text, default_radius_m=None)
    assert (f.id, f.shapes) == ("Tartus, port", (Circle((34.89, 35.87), 250.0),))


def test_a_sep_line_names_the_delimiter_and_lines_are_counted_from_the_file() -> None:
    text = "sep=;\r\nlat;lng\r\n1;2\r\n3;north\r\n"
    assert "line 4: lng must be a number, got 'north'" in refusal(text)
    [f] = features_from_csv("sep=;\nlat;lng;id\n1,5;2;a\n", default_radius_m=0)
    assert (f.id, f.shapes) == ("a", (Circle((1.5, 2.0), 0.0),))


def test_decimal_commas_only_where_a_comma_is_not_the_delimiter() -> None:
    [f] = features_from_csv("lat\tlng\tradius_m\n-33,5\t38,25\t1,5\n", default_radius_m=0)
    assert f.shapes == (Circle((-33.5, 38.25), 1.5),)
    assert "line 2: lat must be a number without thousands separators, got '1.234,5'" in refusal(
        "lat;lng\n1.234,5;2\n"
    )
    assert "line 2: expected 2 fields as in the header, got 3" in refusal("lat,lng\n33,5,38\n")


def test_ids_come_from_id_then_fid_then_name_columns() -> None:
    text = "Name,FID,lat,lng\nAlpha,7,1,2\nBravo,,1,2\n,,1,2\n"
    assert [f.id for f in features_from_csv(text, default_radius_m=0)] == ["7", "Bravo", 2]
    by_name = features_from_csv(text, default_radius_m=0, fields=FieldNames(id="name"))
    assert [f.id for f in by_name] == ["Alpha", "Bravo", 2]


def test_a_header_without_latitude_and_longitude_lists_what_is_accepted() -> None:
    message = refusal("north;east\n1;2\n")
    assert message == (
        "line 1: the CSV header must name a latitude column (lat, latitude, y) and a longitude "
        "column (lng, lon, long, longitude, x), in any case; got ['north', 'east']"
    )
    assert refusal("33.5,38.6\n34.0,39.0\n").startswith("line 1: the CSV header must name")


def test_two_columns_for_one_axis_are_refused() -> None:
    assert refusal("lat,lng,Y\n1,2,3\n") == (
        "line 1: columns 'lat' and 'Y' both name the latitude; keep one"
    )


def test_without_a_default_every_row_needs_a_radius() -> None:
    assert refusal("lat,lng\n1,2\n", default_radius_m=None).startswith(
        "line 2: a point needs a radius in metres, but the CSV has no column 'radius_m' ("
    )
    assert refusal("lat,lng,Radius_M\n1,2,5\n3,4,\n", default_radius_m=None).startswith(
        "line 3: a point needs a radius in metres, but its 'Radius_M' is empty"
    )


def test_distance_columns_are_refused_once_filled_and_buffers_are_not_read() -> None:
    [f] = features_from_csv("lat,lng,range\n1,2,\n", default_radius_m=0)
    assert f.shapes == (Circle((1.0, 2.0), 0.0),)
    assert refusal("lat,lng,range\n1,2,\n3,4,9\n").startswith(
        "line 3: column 'range' looks like a distance"
    )
    assert refusal("lat,lng,buffer_m\n1,2,9\n").startswith(
        "line 2: column 'buffer_m' looks like a distance, but hexpsi reads a point's radius"
    )
    [g] = features_from_csv(
        "lat,lng,Dist\n1,2,9\n", default_radius_m=0, fields=FieldNames(radius="dist")
    )
    assert g.shapes == (Circle((1.0, 2.0), 9.0),)
