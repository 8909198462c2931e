"""Several files read as one: ids kept where they are unique, prefixed where they clash."""

from __future__ import annotations

import pytest

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.shapes import Circle, Feature, FeatureId
from hexpsi.protocol.geo.sources import Source, base_name, merge_sources


def source(name: str, *ids: FeatureId) -> Source:
    return Source(name, tuple(Feature(i, (Circle((1.0, 2.0), 0.0),)) for i in ids))


def ids(*sources: Source) -> list[FeatureId]:
    return [feature.id for feature in merge_sources(sources)]


def test_one_file_is_read_as_it_is() -> None:
    assert ids(source("usa.geojson", 0, 1, "x")) == [0, 1, "x"]


def test_only_clashing_ids_get_their_files_name() -> None:
    assert ids(
        source("maps/usa.geojson", 3, "garrison", 7),
        source("can.csv", "3", "depot"),
        source("<stdin>", 3),
    ) == ["usa.geojson:3", "garrison", 7, "can.csv:3", "depot", "<stdin>:3"]


def test_files_with_one_base_name_are_told_apart_by_their_path() -> None:
    assert ids(source("a/x.csv", 0), source("b/x.csv", 0)) == ["a/x.csv:0", "b/x.csv:0"]


def test_a_prefixed_id_that_meets_another_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        merge_sources([source("a.csv", 1, "b.csv:1"), source("b.csv", 1)])
    assert caught.value.explain() == (
        "feature id 'b.csv:1' of b.csv is also an id in a.csv "
        "(give the features of different files different ids)"
    )


def test_the_same_file_twice_is_refused() -> None:
    with pytest.raises(InputError, match=r"feature id 'a\.csv:1' of a\.csv is also an id"):
        merge_sources([source("a.csv", 1), source("a.csv", 1)])


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("usa.geojson", "usa.geojson"),
        ("/tmp/x/usa.geojson", "usa.geojson"),
        (r"C:\gis\a.csv", "a.csv"),
        ("<stdin>", "<stdin>"),
    ],
)
def test_base_name(name: str, base: str) -> None:
    assert base_name(name) == base
