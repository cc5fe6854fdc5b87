"""Parsing of message times into epoch milliseconds, UTC."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

# ISO-8601 as CDPs send it: a date, an optional time with T, t or a space, optional fractional
# seconds of any length, and an optional Z or numeric offset. A string without an offset is UTC.
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_EPOCH_DIGITS = re.compile(r"^\d{1,16}(\.\d+)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Epoch values at or above this are milliseconds: 1e11 seconds is the year 5138, while 1e11
# milliseconds is March 1973.
_MILLISECONDS_FROM = 100_000_000_000


class TimeParseError(ValueError):
    """A time value that is neither ISO-8601 nor epoch seconds or milliseconds."""


def parse_time_ms(value: object) -> int:
    """Parse an ISO-8601 string (any offset) or epoch seconds or milliseconds into epoch ms, UTC.

    Raises `TimeParseError` for anything else, including booleans, negative numbers and strings
    such as "NOW".
    """
    if isinstance(value, bool):
        raise TimeParseError(f"{value!r} is a boolean, not a time")
    if isinstance(value, (int, float)):
        return _epoch_ms(float(value), value)
    if not isinstance(value, str):
        raise TimeParseError(f"{type(value).__name__} value is not a time")

    text = value.strip()
    # Fast path for the form nearly every client sends: 2026-01-02T03:04:05.678Z.
    if len(text) in (20, 24) and text[10] == "T" and text[-1] == "Z" and text[4] == "-":
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            # floor() of the float timestamp is exact for whole seconds; the fraction comes from
            # the integer microseconds, truncated to milliseconds like the general path.
            return math.floor(moment.timestamp()) * 1000 + moment.microsecond // 1000
    if _EPOCH_DIGITS.match(text):
        return _epoch_ms(float(text), value)
    match = _ISO.match(text)
    if match is None:
        raise TimeParseError(f"{value!r} is not ISO-8601 or epoch time")

    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone.utc,
        )
    except ValueError as error:
        raise TimeParseError(f"{value!r} is not a valid date or time: {error}") from None
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
        if minutes >= 24 * 60:
            raise TimeParseError(f"{value!r} has an invalid UTC offset")
        moment -= sign * timedelta(minutes=minutes)
    return int((moment - _EPOCH) // timedelta(milliseconds=1))


def _epoch_ms(number: float, original: object) -> int:
    if number != number or number < 0 or number > 253_402_300_799_999:
        raise TimeParseError(f"{original!r} is out of the range of epoch times")
    if number >= _MILLISECONDS_FROM:
        return int(number)
    return int(number * 1000)


def format_ms(ms: int | None) -> str:
    """Format epoch ms as ISO-8601 UTC with a Z and millisecond precision; None gives ""."""
    if ms is None:
        return ""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_ms() -> int:
    """Return the current time as epoch ms."""
    return int(datetime.now(timezone.utc).timestamp() * 1000)
