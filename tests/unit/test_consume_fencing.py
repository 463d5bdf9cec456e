"""The rejoin policy after a static member is fenced (pure: error texts and clock values)."""

from k2cli.consume.fencing import Rejoins, is_fencing

FENCED = ("Fatal error: Broker: Static consumer fenced by other consumer with same group.instance.id: "
          "OffsetCommit failed: Broker: Static consumer fenced by other consumer with same group.instance.id")


def test_a_fencing_is_recognised_in_the_callback_and_the_log_forms():
    assert is_fencing(FENCED)
    assert is_fencing("FATAL [k2-consume-x#consumer-1] [thrd:main]: Fatal error: Broker: Static consumer fenced by "
                      "other consumer with same group.instance.id: Fatal consumer error")
    assert not is_fencing("Kafka fatal error: Local: Fatal error: idempotent producer")
    assert not is_fencing("Broker: Not coordinator")


def test_the_first_fencing_rejoins_and_a_second_within_the_window_does_not():
    rejoins = Rejoins(window=60)
    assert rejoins.allow(FENCED, 100.0)
    assert not rejoins.allow(FENCED, 159.9)
    assert rejoins.count == 1


def test_a_fencing_after_the_window_rejoins_again():
    rejoins = Rejoins(window=60)
    assert rejoins.allow(FENCED, 100.0)
    assert rejoins.allow(FENCED, 160.0)
    assert rejoins.count == 2


def test_other_fatal_errors_never_rejoin():
    assert not Rejoins().allow("Kafka fatal error: Broker: Invalid credentials", 0.0)


def test_the_refusal_names_the_other_holder_only_after_a_rejoin():
    rejoins = Rejoins(window=60)
    assert rejoins.refusal(FENCED, "g-host-0") == FENCED
    rejoins.allow(FENCED, 0.0)
    line = rejoins.refusal(FENCED, "g-host-0")
    assert line.startswith(FENCED) and "another consumer is running with group.instance.id g-host-0" in line
    assert rejoins.refusal("Broker: Invalid credentials", "g-host-0") == "Broker: Invalid credentials"
