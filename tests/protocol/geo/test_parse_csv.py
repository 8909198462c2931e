"""CSV as spreadsheets write it: headers by name, sniffed delimiters, BOM, CRLF, decimal commas,
and time columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.fields import FieldNames
from hexpsi.protocol.geo.parse import read_features
from hexpsi.protocol.geo.parse_csv import features_from_csv
from hexpsi.protocol.geo.shapes import Circle
from hexpsi.protocol.geo.timing import Role, TimeRules
from hexpsi.protocol.spacetime.interval import Interval

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


# --- time columns --------------------------------------------------------------------------

SIX = 1_796_450_400.0  # 2026-12-05T06:00:00Z


def test_valid_from_and_until_columns_time_a_row_and_empty_cells_leave_it_standing() -> None:
    text = (
        "id;lat;lng;Valid_From;VALID_UNTIL;time_buffer_s\r\n"
        "a;33,5;38,6;2026-12-05T06:00:00Z;2026-12-05T08:00:00Z;\r\n"
        "b;33,5;38,6;;;\r\n"
        "c;33,5;38,6;2026-12-05T06:00:00Z;2026-12-05T06:00:00Z;90,5\r\n"
    )
    a, b, c = features_from_csv(text, default_radius_m=0)
    assert a.when == (Interval(SIX, SIX + 7200),)
    assert b.when is None
    assert c.when == (Interval(SIX - 90.5, SIX + 90.5),)


def test_not_before_and_not_after_columns_are_a_strike_window_else_the_command_window() -> None:
    from hexpsi.protocol.geo.timing import Role, TimeRules

    window = Interval(SIX, SIX + 60)
    text = "lat,lng,not_before,not_after\n1,2,2026-12-05T07:00:00Z,2026-12-05T08:00:00Z\n3,4,,\n"
    own, default = features_from_csv(
        text, default_radius_m=0, timing=TimeRules(Role.STRIKES, window=window)
    )
    assert own.when == (Interval(SIX + 3600, SIX + 7200),)
    assert default.when == (window,)


@pytest.mark.parametrize(
    ("text", "role", "says"),
    [
        (
            "lat,lng,valid_from,valid_until\n1,2,2026-12-05T06:00:00Z,\n",
            "positions",
            "line 2: column 'valid_from' is given without column 'valid_until'; give both",
        ),
        (
            "lat,lng,valid_from\n1,2,2026-12-05T06:00:00Z\n",
            "positions",
            "line 2: column 'valid_from' is given without column 'valid_until'; give both",
        ),
        (
            "lat,lng,valid_from,valid_until\n1,2,2026-12-05T08:00:00Z,2026-12-05T06:00:00Z\n",
            "positions",
            "the times are out of order",
        ),
        (
            "lat,lng,Valid_From,valid_until\n1,2,2026-12-05 06:00,2026-12-05T08:00:00Z\n",
            "positions",
            "line 2: column 'Valid_From' '2026-12-05 06:00' has no time zone",
        ),
        (
            "lat,lng,not_before,not_after\n1,2,2026-12-05T06:00:00Z,2026-12-05T08:00:00Z\n",
            "positions",
            "line 2: column 'not_before' is a strike's window",
        ),
        (
            "lat,lng,valid_from,valid_until\n1,2,2026-12-05T06:00:00Z,2026-12-05T08:00:00Z\n",
            "strikes",
            "line 2: column 'valid_from' says when a protected position holds",
        ),
        (
            "lat,lng,times\n1,2,2026-12-05T06:00:00Z\n",
            "positions",
            "line 2: column 'times' is filled, but a CSV row is a point",
        ),
        (
            "lat,lng,time_buffer_s\n1,2,-5\n",
            "positions",
            "line 2: column 'time_buffer_s' must be a finite number of seconds >= 0",
        ),
        (
            "lat,lng,time_buffer_s\n1,2,ten\n",
            "positions",
            "line 2: column 'time_buffer_s' must be a number",
        ),
    ],
)
def test_bad_time_cells_name_the_line_and_column(text: str, role: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        features_from_csv(text, default_radius_m=0, timing=TimeRules(Role(role)))
    assert says in caught.value.explain()


def test_a_time_buffer_column_is_not_taken_for_a_distance() -> None:
    [f] = features_from_csv("lat,lng,time_buffer_s\n1,2,60\n", default_radius_m=0)
    assert f.when is None


def test_a_time_column_set_aside_is_not_read() -> None:
    text = "lat,lng,Times\n1,2,twice daily\n"
    with pytest.raises(InputError, match="column 'Times' is filled"):
        features_from_csv(text, default_radius_m=0)
    [f] = features_from_csv(
        text, default_radius_m=0, fields=FieldNames(ignore=frozenset({"Times"}))
    )
    assert f.when is None
