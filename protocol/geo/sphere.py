"""Spherical geometry on H3's sphere, the ground truth the cover is built and tested against.

H3 places every cell on a sphere of radius ``EARTH_RADIUS_M`` (the WGS84 authalic
radius) and treats input (lat, lng) as coordinates on that sphere. Every distance
here is a great-circle distance on that same sphere, so "within r metres" means
the same thing to the cover code, to the tests and to ``h3.great_circle_distance``.
Because users measure in WGS84, ``wgs84_stretch`` says how much a WGS84 distance
can grow when measured on this sphere.

Points are (lat, lng) in degrees at the edges; internally unit vectors, which
keep arc computations exact near the poles and across the antimeridian.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hexpsi.protocol.geo.shapes import LatLng

EARTH_RADIUS_M = 6_371_007.180918475
"""H3's sphere: the authalic radius of WGS84 (h3 ``EARTH_RADIUS_KM``)."""

WGS84_A_M = 6_378_137.0
WGS84_E2 = 6.69437999014e-3
"""WGS84 semi-major axis and first eccentricity squared."""

Vec = tuple[float, float, float]
NORTH_POLE: Vec = (0.0, 0.0, 1.0)
SOUTH_POLE: Vec = (0.0, 0.0, -1.0)


def to_vector(point: LatLng) -> Vec:
    """The unit vector of a (lat, lng) point in degrees."""
    lat, lng = math.radians(point[0]), math.radians(point[1])
    cos_lat = math.cos(lat)
    return (cos_lat * math.cos(lng), cos_lat * math.sin(lng), math.sin(lat))


def to_latlng(v: Vec) -> LatLng:
    """The (lat, lng) in degrees of a (not necessarily unit) vector; lng in -180..180."""
    x, y, z = v
    return (math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x)))


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _arc_normal(a: Vec, b: Vec) -> Vec:
    """A normal of the plane through ``a`` and ``b``, precise even for very short arcs.

    (a + b) x (b - a) equals 2 (a x b), but the short difference keeps full
    relative precision where a x b would lose it to cancellation.
    """
    return _cross((a[0] + b[0], a[1] + b[1], a[2] + b[2]), (b[0] - a[0], b[1] - a[1], b[2] - a[2]))


def _unit(a: Vec) -> Vec:
    length = _norm(a) or 1.0
    return (a[0] / length, a[1] / length, a[2] / length)


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _norm(a: Vec) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def angle_between(a: Vec, b: Vec) -> float:
    """Central angle in radians between two unit vectors (atan2 form: exact at 0 and pi)."""
    return math.atan2(_norm(_cross(a, b)), _dot(a, b))


def haversine_m(a: LatLng, b: LatLng) -> float:
    """Great-circle distance in metres on H3's sphere (the haversine formula)."""
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlat, dlng = lat2 - lat1, math.radians(b[1] - a[1])
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def initial_bearing_deg(a: LatLng, b: LatLng) -> float:
    """Bearing in degrees clockwise from north of the great circle from ``a`` to ``b``."""
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlng = math.radians(b[1] - a[1])
    y = math.sin(dlng) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlng)
    return math.degrees(math.atan2(y, x))


def destination(start: LatLng, bearing_deg: float, distance_m: float) -> LatLng:
    """The point ``distance_m`` from ``start`` along the great circle leaving at ``bearing_deg``.

    Computed on vectors (start turned towards its local north/east direction), so
    it stays exact at the poles, where "north" is the direction of ``start``'s
    meridian continued over the pole.
    """
    lat, lng = math.radians(start[0]), math.radians(start[1])
    theta, delta = math.radians(bearing_deg), distance_m / EARTH_RADIUS_M
    sin_lat, cos_lat, sin_lng, cos_lng = math.sin(lat), math.cos(lat), math.sin(lng), math.cos(lng)
    along, across = math.cos(theta), math.sin(theta)
    cos_d, sin_d = math.cos(delta), math.sin(delta)
    # Unit tangent at the start pointing along the bearing, then turn by delta.
    tx = along * -sin_lat * cos_lng - across * sin_lng
    ty = along * -sin_lat * sin_lng + across * cos_lng
    tz = along * cos_lat
    return to_latlng(
        (
            cos_d * cos_lat * cos_lng + sin_d * tx,
            cos_d * cos_lat * sin_lng + sin_d * ty,
            cos_d * sin_lat + sin_d * tz,
        )
    )


def normalize_lng(lng: float) -> float:
    """Longitude folded into -180..180."""
    folded = math.fmod(lng + 180.0, 360.0)
    return (folded + 360.0 if folded < 0 else folded) - 180.0


def densify(a: LatLng, b: LatLng, max_step_m: float) -> list[LatLng]:
    """Points along the great-circle arc from ``a`` to ``b``, both ends included.

    Consecutive points are at most ``max_step_m`` apart. Interpolation is on unit
    vectors (slerp), so it is exact on the arc and well behaved at the poles.
    """
    va, vb = to_vector(a), to_vector(b)
    omega = angle_between(va, vb)
    steps = max(1, math.ceil(omega * EARTH_RADIUS_M / max_step_m))
    if omega < 1e-15:
        return [a, b]
    sin_omega = math.sin(omega)
    points = [a]
    for i in range(1, steps):
        t = i / steps
        wa, wb = math.sin((1 - t) * omega) / sin_omega, math.sin(t * omega) / sin_omega
        points.append(
            to_latlng((wa * va[0] + wb * vb[0], wa * va[1] + wb * vb[1], wa * va[2] + wb * vb[2]))
        )
    points.append(b)
    return points


def point_to_arc_m(p: Vec, a: Vec, b: Vec) -> float:
    """Distance in metres from ``p`` to the minor great-circle arc ``a``-``b`` (unit vectors)."""
    normal = _arc_normal(a, b)
    length = _norm(normal)
    # The foot of the perpendicular lies on the arc iff p is on the inner side of
    # both planes through the pole of the arc and each end.
    if length > 1e-15 and _dot(_cross(a, p), normal) >= 0 and _dot(_cross(p, b), normal) >= 0:
        return abs(math.asin(max(-1.0, min(1.0, _dot(p, normal) / length)))) * EARTH_RADIUS_M
    return min(angle_between(p, a), angle_between(p, b)) * EARTH_RADIUS_M


def arcs_cross(a: Vec, b: Vec, c: Vec, d: Vec) -> bool:
    """Whether the minor arcs ``a``-``b`` and ``c``-``d`` share a point (touching counts)."""
    n1, n2 = _arc_normal(a, b), _arc_normal(c, d)
    sa, sb = _dot(n2, a), _dot(n2, b)
    sc, sd = _dot(n1, c), _dot(n1, d)
    if sa * sb > 0 or sc * sd > 0:
        return False
    # Both great circles separate the other arc's ends; the arcs meet unless the
    # crossing is the antipode of where they point (arcs on opposite hemispheres).
    axis = _cross(_unit(n1), _unit(n2))
    if _norm(axis) < 1e-15:
        # One great circle: the arcs meet iff an end of one lies on the other.
        return (
            min(
                point_to_arc_m(a, c, d),
                point_to_arc_m(b, c, d),
                point_to_arc_m(c, a, b),
                point_to_arc_m(d, a, b),
            )
            < 1e-6
        )
    mid1 = (a[0] + b[0], a[1] + b[1], a[2] + b[2])
    mid2 = (c[0] + d[0], c[1] + d[1], c[2] + d[2])
    return _dot(axis, mid1) * _dot(axis, mid2) >= 0


def arc_to_arc_m(a: Vec, b: Vec, c: Vec, d: Vec) -> float:
    """Distance in metres between two minor arcs: 0 if they cross, else the closest end.

    Between two arcs shorter than a quarter turn that do not cross, the shortest
    link always has an end of one arc as one of its ends, so four point-to-arc
    distances settle it. A zero-length arc is a point.
    """
    if angle_between(c, d) < 1e-15:
        return point_to_arc_m(c, a, b)
    if angle_between(a, b) < 1e-15:
        return point_to_arc_m(a, c, d)
    if arcs_cross(a, b, c, d):
        return 0.0
    return min(
        point_to_arc_m(a, c, d),
        point_to_arc_m(b, c, d),
        point_to_arc_m(c, a, b),
        point_to_arc_m(d, a, b),
    )


def winding_number(p: Vec, ring: Sequence[Vec]) -> int:
    """How many times a closed ring of great-circle arcs winds around ``p``.

    Seen from ``p`` (in its tangent plane), the signed angles the edges sweep add
    up to a multiple of a full turn. It is non-zero exactly when the ring separates
    ``p`` from its antipode, i.e. for a ring that encloses less than a hemisphere,
    when ``p`` is inside.
    """
    total = 0.0
    for i, a in enumerate(ring):
        b = ring[(i + 1) % len(ring)]
        total += math.atan2(_dot(p, _cross(a, b)), _dot(a, b) - _dot(a, p) * _dot(b, p))
    return round(total / (2 * math.pi))


def meridional_radius_m(lat_deg: float) -> float:
    """WGS84 radius of curvature along the meridian, the smallest one at that latitude."""
    s = math.sin(math.radians(lat_deg))
    return WGS84_A_M * (1 - WGS84_E2) / math.pow(1 - WGS84_E2 * s * s, 1.5)


def wgs84_stretch(min_abs_lat_deg: float) -> float:
    """Bound on (distance on H3's sphere) / (WGS84 geodesic distance), never below 1.

    For the same coordinates, a short step costs R / rho(lat) times more on the
    sphere than on the ellipsoid in the worst direction, where rho is the
    meridional radius (the smaller principal radius). A geodesic between two
    points never goes closer to the equator than the nearer of its latitude bands,
    so bounding with the lowest latitude a shape reaches is safe. At the equator
    this is 1.0056; poleward of about 48 degrees the sphere is the larger one and
    the factor is 1 (kept at 1 so covers stay conservative on the sphere too).
    """
    return max(1.0, EARTH_RADIUS_M / meridional_radius_m(min(90.0, abs(min_abs_lat_deg))))


def flat_bow_m(edge_m: float, max_abs_lat_deg: float) -> float:
    """How far a great-circle edge can stray from the straight lat/lng segment H3 uses.

    H3's polygon functions treat edges as straight in (lat, lng); a great-circle arc
    of length L at latitude phi bulges from that line by about tan(phi) L^2 / (8 R)
    (the sagitta of a parallel, the worst direction). The factor 2 covers the
    higher-order terms for the edge lengths we pass (at most a coarse cell's edge).
    """
    lat = min(abs(max_abs_lat_deg), 89.0)
    return 2.0 * (math.tan(math.radians(lat)) + 0.05) * edge_m * edge_m / (8 * EARTH_RADIUS_M)


def max_abs_lat_deg(points: Sequence[LatLng]) -> float:
    """The largest |latitude| among ``points``."""
    return max(abs(lat) for lat, _ in points)


def min_abs_lat_deg(points: Sequence[LatLng]) -> float:
    """The smallest |latitude| among ``points``, 0 if they straddle the equator."""
    lats = [lat for lat, _ in points]
    if min(lats) <= 0 <= max(lats):
        return 0.0
    return min(abs(lat) for lat in lats)
