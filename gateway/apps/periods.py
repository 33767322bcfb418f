"""Budget periods: calendar windows in UTC. A daily period starts at 00:00,
a weekly one on Monday at 00:00, a monthly one on the 1st at 00:00; "none"
never resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def window(period: str, now: float) -> tuple[int, int | None]:
    """(start, end) in epoch seconds of the period that holds `now`; end is
    None for "none". ValueError for an unknown period."""
    if period == "none":
        return 0, None
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return int(start.timestamp()), int(end.timestamp())


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
