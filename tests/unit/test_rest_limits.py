"""REST rate-limit and retry decisions: status and headers in, wait / back off / give up out."""

import pytest

from k2cli.exchanges import registry
from k2cli.exchanges.rest_dialect import RestLimits
from k2cli.exchanges.rest_limits import MAX_RETRY_AFTER, decide, label_of, pace_wait, retry_after, weight_pause

BINANCE_LIMITS = registry.get("binance").rest.limits


def test_labels():
    assert [label_of(s) for s in (200, 429, 418, 400, 404, 500, 503, 302)] == \
        ["200", "429", "418", "4xx", "4xx", "5xx", "5xx", "error"]


def test_ok():
    assert decide(200, {}).action == "ok"


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limited_waits_retry_after(status):
    d = decide(status, {"retry-after": "7"}, "-1003: Too many requests")
    assert (d.action, d.wait, d.label) == ("wait", 7.0, str(status))
    assert "Too many requests" in d.reason


def test_rate_limited_without_retry_after_waits_a_second():
    assert decide(429, {}).wait == 1.0


def test_a_ban_too_long_gives_up():
    d = decide(418, {"Retry-After": str(int(MAX_RETRY_AFTER) + 1)}, "banned")
    assert d.action == "give_up" and "Retry-After" in d.reason


def test_retry_after_as_an_http_date():
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now_epoch=1445412480.0) == 10.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({}) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_back_off(status):
    d = decide(status, {}, "Bad Gateway")
    assert (d.action, d.label) == ("backoff", "5xx")


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_client_errors_give_up_with_the_venues_words(status):
    d = decide(status, {}, "EQuery:Unknown asset pair")
    assert d.action == "give_up" and d.label == "4xx" and "Unknown asset pair" in d.reason


def test_binance_weight_stays_under_its_share_of_the_minute():
    assert BINANCE_LIMITS.weight_limit == 6000 and BINANCE_LIMITS.call_weight == 25
    assert weight_pause({"x-mbx-used-weight-1m": "100"}, BINANCE_LIMITS, epoch_s=1000.0) == 0.0
    share = int(6000 * 0.8)
    assert weight_pause({"x-mbx-used-weight-1m": str(share - 25)}, BINANCE_LIMITS, epoch_s=1000.0) == 0.0
    assert weight_pause({"x-mbx-used-weight-1m": str(share - 24)}, BINANCE_LIMITS, epoch_s=1000.0) == 20.0
    assert weight_pause({"X-MBX-USED-WEIGHT-1M": "5990"}, BINANCE_LIMITS, epoch_s=1019.5) == 0.5
    assert weight_pause({}, BINANCE_LIMITS, epoch_s=1000.0) == 0.0
    assert weight_pause({"x-mbx-used-weight-1m": "lots"}, BINANCE_LIMITS, epoch_s=1000.0) == 0.0
    assert weight_pause({"x-mbx-used-weight-1m": "5990"}, RestLimits(), epoch_s=1000.0) == 0.0


def test_kraken_pace():
    limits = registry.get("kraken").rest.limits
    assert pace_wait(None, 50.0, limits) == 0.0
    assert pace_wait(50.0, 50.25, limits) == 0.75
    assert pace_wait(50.0, 52.0, limits) == 0.0
    assert pace_wait(50.0, 50.1, RestLimits()) == 0.0
