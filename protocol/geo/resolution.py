"""H3 resolutions: the one range check every layer uses.

A resolution reaches hexpsi from a user (``--res``, ``config.toml``), from a
peer (a declared group, a descriptor, a statement) and from our own code; each
caller picks the error that says whose fault it is, the range is written once.
"""

from __future__ import annotations

from hexpsi.protocol.errors import HexpsiError, InputError

MIN_RES = 0
MAX_RES = 15
DEFAULT_RES = 9
"""The finest resolution a deployment protects at unless told otherwise: ~0.1 km² cells."""
DEFAULT_RES_MIN = 5
"""The coarsest token resolution unless told otherwise: ~250 km² cells."""


def is_resolution(value: object) -> bool:
    """Whether ``value`` is an H3 resolution: a plain int in 0..15 (never a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_RES <= value <= MAX_RES


def check_resolution(
    value: object, what: str = "resolution", *, error: type[HexpsiError] = InputError
) -> int:
    """``value`` if it is a resolution, else ``error`` naming ``what``."""
    if not is_resolution(value):
        raise error(f"{what} must be an integer {MIN_RES}..{MAX_RES}, got {value!r}")
    assert isinstance(value, int)
    return value


def check_resolutions(
    res: object, res_min: object, *, error: type[HexpsiError] = InputError
) -> None:
    """``MIN_RES <= res_min <= res <= MAX_RES``."""
    fine = check_resolution(res, "res", error=error)
    coarse = check_resolution(res_min, "res_min", error=error)
    if coarse > fine:
        raise error(f"res_min ({coarse}) must not be finer than res ({fine})")
