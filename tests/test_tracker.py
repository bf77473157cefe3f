import numpy as np
import pytest

from streamdetect.faces import tracker as tracker_mod
from streamdetect.faces.tracker import FaceTracker, TrackUpdate
from streamdetect.faces.types import Box, Detection


def det(cx: float, cy: float, size: float = 60.0, score: float = 0.9) -> Detection:
    """A square face centred at (cx, cy) with keypoints placed relative to the centre."""
    h = size / 2
    kp = np.array([[cx - 10, cy - 8], [cx + 10, cy - 8], [cx, cy], [cx, cy + 12], [cx - 25, cy], [cx + 25, cy]])
    return Detection(Box(cx - h, cy - h, cx + h, cy + h), score, kp)


def by_id(update: TrackUpdate) -> dict:
    return {t.track_id: t for t in update.active}


def test_two_moving_faces_keep_their_ids():
    tr = FaceTracker()
    for f in range(30):
        u = tr.update([det(100 + 6 * f, 100), det(500 - 4 * f, 300 + 3 * f)])
        tracks = by_id(u)
        assert set(tracks) == {1, 2}
        assert tracks[1].box.center == pytest.approx((100 + 6 * f, 100))
        assert tracks[2].box.center == pytest.approx((500 - 4 * f, 300 + 3 * f))
        assert all(t.missed == 0 and t.hits == f + 1 and t.age == f for t in u.active)
        assert u.ended == ()


def crossing_ids(tr: FaceTracker) -> list[tuple[int, int]]:
    """Faces A (left, moving right) and B (right, moving left) swap sides; returns (id of A, id of B) per frame.
    The detector lists them left-to-right, as a real one would, so list order gives no hint after they cross."""
    out = []
    for f in range(21):
        a, b = det(12 * f, 100), det(246 - 12 * f, 100)  # centres pass at f = 10.25
        u = tr.update(sorted([a, b], key=lambda d: d.box.x0))
        ids = {t.detection is a: t.track_id for t in u.active}
        out.append((ids[True], ids[False]))
    return out


def test_crossing_faces_keep_ids_thanks_to_motion():
    assert crossing_ids(FaceTracker()) == [(1, 2)] * 21


def test_crossing_faces_swap_without_motion(monkeypatch):
    # Sanity check that the scene above is hard: with the motion model switched off, ids swap at the crossing.
    monkeypatch.setattr(tracker_mod._State, "predicted", lambda self: self.est.copy())
    assert crossing_ids(FaceTracker())[-1] == (2, 1)


def test_fast_face_between_detector_runs_keeps_id():
    # 15 px/frame, detector every 4th frame: 60 px between detections, so the last real box does not overlap
    # the new one at all; only the predicted box does.
    tr = FaceTracker()
    for f in range(40):
        d = det(100 + 15 * f, 200)
        u = tr.update([d]) if f < 2 or f % 4 == 0 else tr.predict_only()
        assert [t.track_id for t in u.active] == [1]
        assert u.active[0].box.center == pytest.approx((100 + 15 * f, 200))


def test_missed_up_to_max_missed_keeps_id_then_ends_once():
    tr = FaceTracker(max_missed=3)
    for _ in range(3):
        tr.update([det(100, 100)])
    for m in range(1, 4):
        u = tr.update([])
        assert [(t.track_id, t.missed) for t in u.active] == [(1, m)] and u.ended == ()
    u = tr.update([det(100, 100)])
    assert [(t.track_id, t.missed) for t in u.active] == [(1, 0)]

    ended = []
    for _ in range(6):
        u = tr.update([])
        ended += u.ended
        assert all(t.track_id not in ended for t in u.active)
    assert ended == [1]
    u = tr.update([det(100, 100)])
    assert [t.track_id for t in u.active] == [2]


def test_predict_only_moves_by_velocity_and_counts_no_miss():
    tr = FaceTracker(max_missed=2)
    tr.update([det(100, 100)])
    u = tr.update([det(110, 95)])  # velocity (+10, -5) px/frame
    kp0 = u.active[0].detection.keypoints
    for k in range(1, 6):  # more frames than max_missed: predict_only must not end the track
        u = tr.predict_only()
        (t,) = u.active
        assert t.box.center == pytest.approx((110 + 10 * k, 95 - 5 * k))
        assert t.box.width == pytest.approx(60) and t.box.height == pytest.approx(60)
        np.testing.assert_allclose(t.detection.keypoints, kp0 + [10 * k, -5 * k])
        assert (t.track_id, t.missed, t.hits, t.age) == (1, 0, 2, 1 + k)
        assert u.ended == ()
    # A real miss counts; predict_only afterwards keeps the count where it was.
    assert tr.update([]).active[0].missed == 1
    assert tr.predict_only().active[0].missed == 1


def test_low_score_keeps_track_alive_but_never_starts_one():
    tr = FaceTracker(max_missed=2, high_score=0.6)
    assert tr.update([det(300, 300, score=0.3)]).active == ()
    tr.update([det(100, 100)])
    for f in range(1, 8):  # longer than max_missed
        u = tr.update([det(100 + 2 * f, 100, score=0.3), det(400, 400, score=0.3)])
        assert [(t.track_id, t.missed, t.hits) for t in u.active] == [(1, 0, 1 + f)]
        assert u.active[0].detection.score == 0.3
    # The low-score detection consumed no id.
    assert [t.track_id for t in tr.update([det(114, 100), det(400, 400)]).active] == [1, 2]


def test_high_score_detections_win_tracks_before_low_score_ones():
    tr = FaceTracker()
    tr.update([det(100, 100)])
    weak_better_overlap, strong = det(100, 100, score=0.3), det(110, 100, score=0.9)
    u = tr.update([weak_better_overlap, strong])
    assert [t.track_id for t in u.active] == [1] and u.active[0].detection is strong


def test_min_hits_suppresses_one_frame_blip():
    tr = FaceTracker(min_hits=3)
    seen, ended = set(), []
    for f in range(15):
        dets = [det(100 + 2 * f, 100)] + ([det(400, 400)] if f == 0 else [])
        u = tr.update(dets)
        seen |= {t.track_id for t in u.active}
        ended += u.ended
        # Ids are assigned at creation (blip 2, face 1) but the face is only reported from its third hit.
        assert [t.track_id for t in u.active] == ([] if f < 2 else [1])
    assert seen == {1} and ended == []
    assert [t.track_id for t in tr.update([det(130, 100), det(600, 600)]).active] == [1]  # new one is id 3, unreported
    assert tr.reset() == (1,)


def test_reset_ends_everything_and_ids_continue():
    tr = FaceTracker()
    tr.update([det(100, 100), det(300, 300)])
    assert tr.reset() == (1, 2)
    assert tr.predict_only() == TrackUpdate((), ())
    assert tr.update([]).active == ()
    assert [t.track_id for t in tr.update([det(100, 100), det(300, 300)]).active] == [3, 4]
    assert tr.reset() == (3, 4) and tr.reset() == ()


def test_ids_never_reused_under_random_churn():
    rng = np.random.default_rng(0)
    tr = FaceTracker(max_missed=2)
    ended, last_max = set(), 0
    for f in range(300):
        dets = [det(*rng.uniform(0, 1000, 2), size=rng.uniform(30, 120), score=rng.uniform(0.2, 1.0))
                for _ in range(rng.integers(0, 5))]
        u = tr.update(dets) if f % 3 else tr.predict_only()
        ids = [t.track_id for t in u.active]
        assert ids == sorted(set(ids))
        assert not set(ids) & ended  # an ended id never comes back
        assert not set(u.ended) & ended  # and ends only once
        ended |= set(u.ended)
        new = [i for i in ids if i > last_max]
        assert new == list(range(last_max + 1, last_max + 1 + len(new)))  # increasing, no gaps (min_hits=1)
        last_max = max([last_max, *ids])
    assert len(ended) > 20
    assert not set(tr.reset()) & ended


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        FaceTracker(min_hits=0)
    with pytest.raises(ValueError):
        FaceTracker(max_missed=-1)
