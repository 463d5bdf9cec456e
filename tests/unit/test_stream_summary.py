"""The run summary: the first stop reason wins, and the final status follows from it."""

from k2cli.stream.summary import StreamSummary


def summary() -> StreamSummary:
    return StreamSummary(exchange="x", topic="t", url="ws://h", symbols=["A"])


def test_the_first_stop_reason_wins():
    s = summary()
    s.note_stop("max_messages")
    s.note_stop("signal")
    assert s.stopped_by == "max_messages"
    s.finish(None)
    assert s.status == "completed"


def test_a_signal_is_an_interruption_and_an_error_a_failure():
    s = summary()
    s.note_stop("signal")
    s.finish(None)
    assert (s.status, s.stopped_by) == ("interrupted", "signal")
    f = summary()
    f.note_stop("duration")
    f.finish(RuntimeError("boom"))
    assert (f.status, f.stopped_by, f.error) == ("failed", "error", "boom")
    assert f.as_dict()["status"] == "failed"
