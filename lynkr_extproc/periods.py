"""Calendar budget periods in a configured time zone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo


def period_range(
    period: str, now: datetime, zone: ZoneInfo
) -> tuple[str, datetime | None, datetime | None]:
    """Return the counter key of the period containing `now`, its start and end in UTC.

    Days start at local midnight, weeks on Monday, months on the 1st.
    "total" never resets and has neither start nor end.
    """
    if period == "total":
        return "total", None, None
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        key = f"day:{local:%Y-%m-%d}"
        start, end = midnight, _add_days(midnight, 1, zone)
    elif period == "week":
        start = _add_days(midnight, -local.weekday(), zone)
        year, week, _ = start.isocalendar()
        key = f"week:{year}-W{week:02d}"
        end = _add_days(start, 7, zone)
    elif period == "month":
        key = f"month:{local:%Y-%m}"
        start = midnight.replace(day=1)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
    else:
        raise ValueError(f"unknown period {period!r}")
    return key, _wall_to_utc(start, zone), _wall_to_utc(end, zone)


def period_bounds(period: str, now: datetime, zone: ZoneInfo) -> tuple[str, datetime | None]:
    """Return the counter key of the period containing `now` and its end in UTC."""
    key, _, end = period_range(period, now, zone)
    return key, end


def _add_days(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    # Calendar arithmetic on the wall clock, so a DST change keeps midnight.
    return (moment.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=zone)


def _wall_to_utc(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=zone).astimezone(timezone.utc)
