"""Calendar budget periods in the configured time zone."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from lynkr_extproc.config import parse_config
from lynkr_extproc.gateway import Gateway
from lynkr_extproc.periods import period_bounds
from tests.support import cases

UTC = ZoneInfo("UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("period", "now", "key", "resets"),
    [
        ("day", "2026-12-04T16:00:00", "day:2026-12-04", "2026-12-05T00:00:00"),
        ("week", "2026-12-04T16:00:00", "week:2026-W49", "2026-12-07T00:00:00"),
        ("week", "2026-12-07T00:00:00", "week:2026-W50", "2026-12-14T00:00:00"),
        ("month", "2026-12-31T23:59:59", "month:2026-12", "2027-01-01T00:00:00"),
        ("month", "2026-03-31T23:00:00", "month:2026-03", "2026-04-01T00:00:00"),
    ],
)
def test_utc_periods(period, now, key, resets):
    """Day, week from Monday and month keys and their reset moments in UTC."""
    assert period_bounds(period, at(now), UTC) == (key, at(resets))


def test_total_never_resets():
    """The total window has one key and no reset."""
    assert period_bounds("total", at("2026-12-04T00:00:00"), UTC) == ("total", None)


def test_day_follows_configured_zone():
    """At 23:30 UTC it is already tomorrow in Berlin, which resets at Berlin midnight."""
    key, resets = period_bounds("day", at("2026-12-04T23:30:00"), ZoneInfo("Europe/Berlin"))
    assert key == "day:2026-12-05"
    assert resets == at("2026-12-05T23:00:00")


def test_day_across_daylight_saving_change():
    """The 23-hour day of a spring DST change resets at local midnight."""
    key, resets = period_bounds("day", at("2026-03-08T12:00:00"), ZoneInfo("America/New_York"))
    assert key == "day:2026-03-08"
    assert resets == at("2026-03-09T04:00:00")


def test_gateway_charges_roll_over(tmp_path):
    """Charges switch to the next day and month keys at the first instant of the new period."""
    document = cases.document(tmp_path / "store.db")
    document["budgets"] = {
        "team": {"t1": [{"period": "day", "limit_usd": 1}, {"period": "month", "limit_usd": 5}]}
    }
    now = [at("2026-03-31T23:59:59.999999")]
    gateway = Gateway(parse_config(document), store=None, clock=lambda: now[0])
    tenant = gateway.authenticate({"x-api-key": cases.secret("vk-a")})

    before = [charge.period for charge in gateway.charges(tenant)]
    now[0] = at("2026-04-01T00:00:00")
    after = [charge.period for charge in gateway.charges(tenant)]

    assert before == ["day:2026-03-31", "month:2026-03"]
    assert after == ["day:2026-04-01", "month:2026-04"]
