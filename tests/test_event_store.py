"""The event store's contract, on SQLite and on a real PostgreSQL server: the same schema and answers."""

import json
import time

import pytest

from streamdetect.events.store import EventFilter, open_store
from tests.support.postgres import binaries, postgres_server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(tmp_path / "events")
        yield s
        s.close()
        return
    if binaries() is None:
        pytest.skip("PostgreSQL binaries are absent: apt-get install postgresql (.ci/run installs them)")
    pytest.importorskip("psycopg", reason="pip install 'streamdetect[postgres]'")
    with postgres_server() as url:
        s = open_store(tmp_path / "unused", url)
        yield s
        s.close()


def alert(track, verdict, previous, confidence, ts, stream="cam"):
    data = {"v": 1, "type": "alert", "stream": stream, "track": track, "verdict": verdict, "previous": previous,
            "confidence": confidence, "box": [1.0, 2.0, 3.0, 4.0], "pts": None, "thumbnail": None, "ts": ts}
    return data, json.dumps(data)


def test_events_changes_filters_and_deletion(store):
    t0 = time.time() - 100
    first = store.open_event("cam", 1, t0, "suspicious", 0.6, [1, 2, 3, 4], b"\xff\xd8\xffjpeg", "pending")
    store.add_change(first, *alert(1, "suspicious", "clear", 0.6, t0))
    store.add_change(first, *alert(1, "alert", "suspicious", 0.9, t0 + 1))
    store.add_change(first, *alert(1, "suspicious", "alert", 0.7, t0 + 2))  # coming down keeps the peak verdict
    store.update_event(first, ended=t0 + 5, final_verdict="suspicious", final_confidence=0.7, frames=40,
                       timeline=[[t0, 0.6], [t0 + 1, 0.9]], peak_confidence=0.9)
    second = store.record_track("door", 7, t0 + 10, t0 + 20, "clear", 0.1, 25)

    event = store.get(first)
    assert event["verdict"] == "alert" and event["final_verdict"] == "suspicious" and event["ended"] == t0 + 5
    assert [c["verdict"] for c in event["changes"]] == ["suspicious", "alert", "suspicious"]
    assert event["timeline"] == [[t0, 0.6], [t0 + 1, 0.9]] and event["has_thumbnail"] and event["box"] == [1, 2, 3, 4]
    assert store.file(first, "thumbnail") == b"\xff\xd8\xffjpeg"
    assert store.file(first, "clip") is None  # pending: nothing to download yet

    def ids(**kw):
        return [e["id"] for e in store.list(EventFilter(**kw))[0]]

    assert ids() == [second, first]  # newest first
    assert ids(stream="cam") == [first] and ids(verdict="clear") == [second]
    assert ids(min_confidence=0.8) == [first] and ids(since=t0 + 5) == [second] and ids(until=t0 + 5) == [first]
    assert ids(limit=1) == [second] and ids(limit=1, offset=1) == [first]
    assert store.list(EventFilter(limit=1))[1] == 2

    replay = store.recent_alerts(2)
    assert [d["verdict"] for d, _ in replay] == ["alert", "suspicious"] and json.loads(replay[-1][1]) == replay[-1][0]

    assert store.mark_interrupted() == 1  # the pending clip of a killed process
    assert store.get(first)["clip_state"] == "incomplete"
    assert [r["id"] for r in store.older_than(t0 + 6)] == [first]
    assert store.delete(first)["id"] == first and store.get(first) is None and store.delete(first) is None
    assert store.recent_alerts(10) == []  # its changes went with it


def test_bad_filters_name_the_problem():
    with pytest.raises(ValueError, match="verdict must be one of"):
        EventFilter(verdict="fake")
    with pytest.raises(ValueError, match="limit must be 1..500"):
        EventFilter(limit=0)
