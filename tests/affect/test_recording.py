"""The recording format: what the camera's sinks write is what the dashboard reads."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from affect.recording import (
    FaceRow,
    RecordingError,
    au_columns,
    csv_columns,
    read_recording,
    write_csv_header,
)

LABELS = ["Neutral", "Happy", "Sad"]

# Lines as the camera wrote them before the format moved into affect/ (kept verbatim:
# old recordings must still load).
OLD_CSV = """frame,t_ms,track_id,x,y,w,h,det_score,expression,confidence,p_Neutral,p_Happy,p_Sad,valence,arousal
1,33.3,2,10.0,20.0,30.0,30.0,0.9100,Happy,0.7000,0.2000,0.7000,0.1000,0.4000,0.1000
0,0.0,1,11.0,21.0,31.0,31.0,0.9000,Neutral,0.6000,0.6000,0.3000,0.1000,-0.1000,0.0500
"""
OLD_JSONL = ('{"frame": 0, "t_ms": 0.0, "track_id": 1, "x": 11.0, "y": 21.0, "w": 31.0, "h": 31.0, '
             '"det_score": 0.9, "expression": "Neutral", "confidence": 0.6, "p_Neutral": 0.6, "p_Happy": 0.3, '
             '"p_Sad": 0.1, "valence": -0.1, "arousal": 0.05, "landmarks": [[1.0, 2.0, 0.0]], '
             '"blendshapes": {"jawOpen": 0.1}}\n')


def _rows():
    return [FaceRow(3, 100.04, 1, 10.0, 20.0, 30.0, 30.0, 0.91, "Happy", 0.7, [0.2, 0.7, 0.1], 0.4, 0.1),
            FaceRow(2, 66.7, 4, 1.0, 2.0, 3.0, 3.0, 0.5, "Sad", 0.5, [0.2, 0.3, 0.5], -0.3, 0.2)]


def test_csv_written_by_face_rows_reads_back_sorted_by_time(tmp_path):
    buf = io.StringIO()
    writer = write_csv_header(buf, LABELS)
    for row in _rows():
        writer.writerow(row.as_csv_row())
    path = tmp_path / "rec.csv"
    path.write_text(buf.getvalue())
    df = read_recording(path)
    assert list(df.columns) == csv_columns(LABELS)
    assert df["frame"].tolist() == [2, 3] and df["track_id"].dtype.kind == "i"
    assert df.loc[1, "t_ms"] == pytest.approx(100.0) and df.loc[0, "p_Sad"] == pytest.approx(0.5)


def test_jsonl_has_the_csv_keys_and_the_extras(tmp_path):
    row = _rows()[0]
    obj = row.as_json(LABELS, landmarks=np.array([[1.234, 2.0, 0.5]]), blendshapes={"jawOpen": 0.123456})
    assert list(obj)[:len(csv_columns(LABELS))] == csv_columns(LABELS)
    assert obj["landmarks"] == [[1.23, 2.0, 0.5]] and obj["blendshapes"] == {"jawOpen": 0.1235}
    assert "landmarks" not in row.as_json(LABELS)
    path = tmp_path / "rec.jsonl"
    path.write_text(json.dumps(obj) + "\n" + json.dumps(_rows()[1].as_json(LABELS)) + "\n")
    df = read_recording(path)
    assert df["frame"].tolist() == [2, 3] and df.loc[1, "p_Happy"] == pytest.approx(0.7)


def test_recordings_written_before_still_load(tmp_path):
    (tmp_path / "old.csv").write_text(OLD_CSV)
    (tmp_path / "old.jsonl").write_text(OLD_JSONL)
    csv_df, jsonl_df = read_recording(tmp_path / "old.csv"), read_recording(tmp_path / "old.jsonl")
    assert csv_df["expression"].tolist() == ["Neutral", "Happy"]
    assert jsonl_df.loc[0, ["p_Neutral", "valence"]].tolist() == pytest.approx([0.6, -0.1])
    legacy = json.loads(OLD_JSONL)
    legacy["probabilities"] = {k[2:]: legacy.pop(k) for k in list(legacy) if k.startswith("p_")}
    (tmp_path / "nested.jsonl").write_text(json.dumps(legacy) + "\n")
    assert read_recording(tmp_path / "nested.jsonl").loc[0, "p_Happy"] == pytest.approx(0.3)


@pytest.mark.parametrize("name, text, problem", [
    ("empty.csv", "", "not a readable CSV recording"),
    ("other.csv", "a,b\n1,2\n", "missing columns"),
    ("noprob.jsonl", '{"frame": 0}\n', "missing keys"),
    ("header.csv", OLD_CSV.splitlines()[0] + "\n", "no rows"),
    ("text.csv", OLD_CSV.replace("33.3", "soon"), "non-numeric values"),
    # Issue 24 item 14: a cast to int called 1e30 "negative", cut 1.7 to 1, took frame 1e300.
    ("huge_track.csv", OLD_CSV.replace("33.3,2,", "33.3,1e30,"), "track_id is not a whole number below 2147483648"),
    ("part_track.csv", OLD_CSV.replace("33.3,2,", "33.3,1.7,"), "track_id is not a whole number"),
    ("inf_track.csv", OLD_CSV.replace("33.3,2,", "33.3,inf,"), "track_id is not a whole number"),
    ("huge_frame.csv", OLD_CSV.replace("\n1,", "\n1e300,", 1), "frame is not a whole number"),
    ("huge_frame.jsonl", OLD_JSONL.replace('"frame": 0', '"frame": 1e300'), "frame is not a whole number"),
])
def test_bad_recordings_are_one_line_naming_the_file(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(RecordingError) as info:
        read_recording(path)
    assert str(info.value).startswith(str(path)) and problem in str(info.value) and "\n" not in str(info.value)


# --- action units (python -m realtime.cam --aus) ---------------------------------------------
AUS = ["AU1", "AU12", "AU25"]


def test_au_columns_read_back_with_empty_where_a_face_has_none(tmp_path):
    rows = _rows()
    rows[0].aus = [0.1, 0.9, 0.55]  # the other face has none (the landmarker missed it)
    buf = io.StringIO()
    writer = write_csv_header(buf, LABELS, AUS)
    for row in rows:
        writer.writerow(row.as_csv_row(AUS))
    (tmp_path / "rec.csv").write_text(buf.getvalue())
    (tmp_path / "rec.jsonl").write_text("".join(json.dumps(r.as_json(LABELS, au_names=AUS)) + "\n" for r in rows))
    for name in ("rec.csv", "rec.jsonl"):
        df = read_recording(tmp_path / name)
        assert au_columns(df.columns) == AUS
        assert df.loc[1, "AU12"] == pytest.approx(0.9) and df.loc[0, ["AU1", "AU12", "AU25"]].isna().all()
    assert buf.getvalue().splitlines()[0].endswith("valence,arousal,AU1,AU12,AU25")
    assert buf.getvalue().splitlines()[2].endswith(",,,")  # empty, not 0: "no AUs" is not "AU absent"


def test_recordings_without_au_columns_have_none_and_still_load(tmp_path):
    (tmp_path / "old.csv").write_text(OLD_CSV)
    assert au_columns(read_recording(tmp_path / "old.csv").columns) == []


def test_an_au_value_outside_0_1_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    header, first, second = OLD_CSV.splitlines()
    path.write_text(f"{header},AU4\n{first},1.5\n{second},\n")
    with pytest.raises(RecordingError, match=r"bad\.csv: AU columns \['AU4'\]") as err:
        read_recording(path)
    assert "\n" not in str(err.value)


def test_au_thresholds_beside_a_recording_decide_which_aus_are_active(tmp_path):
    from affect.recording import au_thresholds_path, read_au_thresholds, write_au_thresholds
    from affect.session_stats import session_stats
    from dashboard.data import DashboardError, load_recording
    from dashboard.summary import au_activity

    rows = _rows()
    for row in rows:
        row.aus = [0.1, 0.6, 0.45]
    path = tmp_path / "rec.csv"
    buf = io.StringIO()
    writer = write_csv_header(buf, LABELS, AUS)
    for row in rows:
        writer.writerow(row.as_csv_row(AUS))
    path.write_text(buf.getvalue())
    # no thresholds file: every AU active at 0.5, as before
    assert read_au_thresholds(path) is None and load_recording(path).au_thresholds is None
    df = read_recording(path)
    plain = au_activity(df, AUS, 33.3).groupby("au").mean(numeric_only=True)  # the same AUs on every track
    assert plain.loc["AU12", "active_share"] == 1.0 and plain.loc["AU25", "active_share"] == 0.0
    assert session_stats(df, LABELS)["active_AU25"] == 0.0
    # the model's own thresholds: AU12 needs 0.7, AU25 0.4 (AU1 not listed: 0.5)
    written = write_au_thresholds(path, {"AU12": 0.7, "AU25": 0.4}, "model")
    assert written == au_thresholds_path(path) == tmp_path / "rec.au_thresholds.json"
    thresholds = load_recording(path).au_thresholds
    assert thresholds == {"AU12": 0.7, "AU25": 0.4}
    own = au_activity(df, AUS, 33.3, thresholds).groupby("au").mean(numeric_only=True)
    assert own.loc["AU12", "active_share"] == 0.0 and own.loc["AU25", "active_share"] == 1.0
    assert own.loc["AU1", "threshold"] == 0.5 and own.loc["AU12", "threshold"] == 0.7
    stats = session_stats(df, LABELS, thresholds)
    assert stats["active_AU12"] == 0.0 and stats["active_AU25"] == 1.0
    # a broken thresholds file: one line naming it
    written.write_text('{"format": "affectcam.au_thresholds", "thresholds": {"AU12": 7}}')
    with pytest.raises(RecordingError, match=r"rec\.au_thresholds\.json: not an AU thresholds file") as err:
        read_au_thresholds(path)
    assert "\n" not in str(err.value)
    with pytest.raises(DashboardError, match=r"rec\.au_thresholds\.json"):
        load_recording(path)
