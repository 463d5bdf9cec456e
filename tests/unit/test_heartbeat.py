"""Ping loop and pong tracking of a connection (k2cli.exchanges.heartbeat), with plain numbers."""

from __future__ import annotations

import pytest

from k2cli.exchanges.heartbeat import Action, Heartbeat


def _hb(ping: float = 180.0, pong: float = 10.0, idle: float = 30.0, start: float = 1000.0) -> Heartbeat:
    return Heartbeat(ping_interval=ping, pong_timeout=pong, idle_timeout=idle, started=start)


def test_ping_loop_first_ping_one_interval_after_connect():
    hb = _hb(ping=180, idle=600)
    assert hb.next_action(1179.9, last_frame=1179.0) is Action.WAIT
    assert hb.next_action(1180.0, last_frame=1179.0) is Action.PING


def test_ping_loop_pong_schedules_the_next_ping_a_full_interval_later():
    hb = _hb(ping=180, idle=600)
    hb.ping_sent(1180.0)
    hb.pong(1180.4)
    assert hb.next_ping == pytest.approx(1360.4)
    assert hb.next_action(1360.3, last_frame=1360.0) is Action.WAIT
    assert hb.next_action(1360.4, last_frame=1360.0) is Action.PING


def test_a_pong_clears_the_deadline_of_its_ping():
    hb = _hb()
    hb.ping_sent(1180.0)
    assert hb.pong_deadline() == 1190.0
    hb.pong(1180.25)
    assert hb.pong_deadline() is None


def test_pong_timeout_clears_the_outstanding_ping():
    hb = _hb(pong=10)
    hb.ping_sent(1180.0)
    assert hb.pong_deadline() == 1190.0
    hb.pong_missed()
    assert hb.pong_deadline() is None


def test_heartbeat_idle_link_is_dropped_before_any_ping():
    hb = _hb(ping=10, idle=30)
    # a ping is due, but no frame for 31 s: pinging a dead link would only delay the reconnect
    assert hb.next_action(1031.0, last_frame=1000.0) is Action.IDLE


def test_heartbeat_idle_boundary_is_strict():
    hb = _hb(idle=30)
    assert hb.next_action(1030.0, last_frame=1000.0) is Action.WAIT
    assert hb.next_action(1030.01, last_frame=1000.0) is Action.IDLE


def test_heartbeat_paused_postpones_pings_and_idle_checks():
    hb = _hb(ping=10, idle=30)
    assert hb.next_action(1050.0, last_frame=1000.0, paused=True) is Action.WAIT
    assert hb.next_ping == 1060.0
    assert hb.next_action(1055.0, last_frame=1050.0) is Action.WAIT
    assert hb.next_action(1060.0, last_frame=1059.0) is Action.PING


@pytest.mark.parametrize(("ping", "idle", "tick"), [(180, 30, 1.0), (1, 1, 0.25), (0.1, 30, 0.05), (180, 2, 0.5)])
def test_heartbeat_tick_catches_both_deadlines(ping, idle, tick):
    assert _hb(ping=ping, idle=idle).tick_seconds() == tick
