"""stcformer.infer readers, joint-set conversions, gap filling, tracks; export.smoothing."""
import json

import numpy as np
import pytest

from stcformer.errors import DataError, UsageError
from stcformer.export.smoothing import jitter, savgol
from stcformer.infer.gaps import fill_gaps
from stcformer.infer.joints import coco_to_h36m, halpe26_to_h36m, to_h36m
from stcformer.infer.pipeline import window_stride
from stcformer.infer.readers import read_keypoints


def coco_pose(dx=0.0):
    """A COCO-17 pose with easy numbers (pixels)."""
    c = np.array([[100, 40], [104, 36], [96, 36], [110, 38], [90, 38],        # nose, eyes, ears
                  [120, 70], [80, 70], [126, 100], [74, 100], [130, 130], [70, 130],  # shoulders..wrists
                  [112, 140], [88, 140], [114, 190], [86, 190], [116, 240], [84, 240]], dtype=np.float64)
    c[:, 0] += dx
    return c


def test_coco_to_h36m_hand_computed():
    h = coco_to_h36m(coco_pose())
    np.testing.assert_allclose(h[0], [100, 140])                 # pelvis: mid-hip
    np.testing.assert_allclose(h[1], [88, 140])                  # RHip = COCO 12
    np.testing.assert_allclose(h[6], [116, 240])                 # LAnkle = COCO 15
    np.testing.assert_allclose(h[11], [120, 70])                 # LShoulder = COCO 5
    np.testing.assert_allclose(h[16], [70, 130])                 # RWrist = COCO 10
    # thorax: mid-shoulder (100, 70) + (nose - mid)/3 = (100, 60); y -= (eye y 36 - nose y 40)*2/3
    np.testing.assert_allclose(h[8], [100, 60 + 8 / 3])
    # neck/nose: nose - (nose - mid-shoulder)/4 = (100, 40 + 7.5)
    np.testing.assert_allclose(h[9], [100, 47.5])
    # head: mean x of eyes and ears = 100; y = 36 + 36 - 40 = 32
    np.testing.assert_allclose(h[10], [100, 32])
    # spine: mean of shoulders and hips = (100, 105); symmetric, so x stays
    np.testing.assert_allclose(h[7], [100, 105])


def test_coco_spine_pushed_sideways():
    c = coco_pose()
    c[0, 0] += 6  # nose 6 px right: thorax x = 100 + 2 = 102, mid (pelvis, thorax) x = 101
    h = coco_to_h36m(c)
    assert h[8, 0] == pytest.approx(102)
    assert h[7, 0] == pytest.approx(100 + 2 * (100 - 101))


def halpe_pose():
    a = np.zeros((26, 2))
    a[:17] = coco_pose()
    a[17] = [100, 20]   # head top
    a[18] = [100, 66]   # neck
    a[19] = [100, 138]  # hip (pelvis)
    a[20:] = [[116, 250], [84, 250], [120, 248], [80, 248], [114, 244], [86, 244]]
    return a


def test_halpe26_to_h36m_hand_computed():
    h = halpe26_to_h36m(halpe_pose())
    np.testing.assert_allclose(h[0], [100, 138])                  # Halpe 19 Hip
    np.testing.assert_allclose(h[8], [100, 66])                   # Halpe 18 Neck
    np.testing.assert_allclose(h[7], [100, 102])                  # midpoint of 19 and 18
    np.testing.assert_allclose(h[9], [100, 40 + (66 - 40) / 4])   # nose a quarter towards the neck
    np.testing.assert_allclose(h[10], [100, 20])                  # Halpe 17 Head
    np.testing.assert_allclose(h[[1, 2, 3, 4, 5, 6]], coco_pose()[[12, 14, 16, 11, 13, 15]])
    np.testing.assert_allclose(h[[11, 12, 13, 14, 15, 16]], coco_pose()[[5, 7, 9, 6, 8, 10]])


def test_derived_joint_scores_are_the_lowest_source():
    xy = coco_pose()[None].astype(np.float32)
    sc = np.linspace(0.1, 0.9, 17, dtype=np.float32)[None]
    _, out = to_h36m(xy, sc, "coco")
    assert out[0, 0] == pytest.approx(min(sc[0, 11], sc[0, 12]))   # pelvis from the hips
    assert out[0, 10] == pytest.approx(sc[0, :5].min())             # head from nose, eyes, ears
    assert out[0, 3] == pytest.approx(sc[0, 16])


# ---------------------------------------------------------------- readers

def test_array_readers(tmp_path):
    xy = np.random.default_rng(0).uniform(10, 500, size=(6, 17, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", xy)
    kp = read_keypoints(tmp_path / "a.npy")
    assert kp.format == "array" and kp.joints == "h36m" and kp.fps is None and kp.size is None
    np.testing.assert_array_equal(kp.xy, xy)
    assert (kp.scores == 1).all()
    sc = np.random.default_rng(1).uniform(0, 1, size=(6, 17, 1)).astype(np.float32)
    np.save(tmp_path / "b.npy", np.concatenate([xy, sc], -1)[None])  # (1, T, 17, 3)
    np.testing.assert_array_equal(read_keypoints(tmp_path / "b.npy").scores, sc[..., 0])
    np.savez(tmp_path / "c.npz", keypoints=xy, scores=sc[..., 0], fps=25.0, width=640, height=480)
    kp = read_keypoints(tmp_path / "c.npz")
    assert kp.fps == 25.0 and kp.size == (640, 480)
    np.testing.assert_array_equal(kp.scores, sc[..., 0])
    kp = read_keypoints(tmp_path / "a.npy", joints="coco")  # COCO order converted
    np.testing.assert_allclose(kp.xy, coco_to_h36m(xy), rtol=1e-6)


def test_demo_reader(tmp_path):
    xy = np.random.default_rng(2).uniform(10, 500, size=(1, 5, 17, 2)).astype(np.float32)
    np.savez_compressed(tmp_path / "input_keypoints_2d.npz", reconstruction=xy)
    kp = read_keypoints(tmp_path / "input_keypoints_2d.npz")
    assert kp.format == "demo" and kp.joints == "h36m"
    np.testing.assert_array_equal(kp.xy, xy[0])


def test_videopose3d_reader(tmp_path):
    coco = np.stack([coco_pose(dx) for dx in range(4)]).astype(np.float32)
    meta = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1, 3, 5], [2, 4, 6]],
            "video_metadata": {"walk.mp4": {"w": 1280, "h": 720}}}
    np.savez_compressed(tmp_path / "data_2d_custom_myvideos.npz",
                        positions_2d={"walk.mp4": {"custom": [coco]}}, metadata=meta)
    kp = read_keypoints(tmp_path / "data_2d_custom_myvideos.npz")
    assert kp.format == "videopose3d" and kp.joints == "coco" and kp.size == (1280, 720)
    np.testing.assert_allclose(kp.xy, coco_to_h36m(coco), rtol=1e-6)


def detection(frame, pose, score=0.9, box=None, **extra):
    kp = np.concatenate([pose, np.full((len(pose), 1), score)], 1).reshape(-1).tolist()
    rec = {"keypoints": kp, "score": 2.5, **extra}
    if isinstance(frame, str):
        rec["image_id"] = frame
    else:
        rec["image_id"] = frame
    if box is not None:
        rec["bbox"] = box
    return rec


def test_json_alphapose_tracks_and_gaps(tmp_path):
    recs = []
    for f in range(5):
        if f == 2:
            continue  # nobody detected in frame 2
        recs.append(detection(f"{f}.jpg", coco_pose(f), box=[50, 20, 100, 240], idx=1))
        recs.append(detection(f"{f}.jpg", coco_pose(300 + f) / 2, box=[300, 10, 40, 120], idx=2))
    (tmp_path / "alphapose-results.json").write_text(json.dumps(recs))
    kp = read_keypoints(tmp_path / "alphapose-results.json")
    assert kp.format == "json" and kp.joints == "coco" and len(kp) == 5
    assert "track 1" in kp.notes[0] and "largest total box area" in kp.notes[0]
    np.testing.assert_allclose(kp.xy[3], coco_to_h36m(coco_pose(3)), rtol=1e-6)
    assert (kp.scores[2] == 0).all() and np.isnan(kp.xy[2]).all()
    kp2 = read_keypoints(tmp_path / "alphapose-results.json", person=2)
    np.testing.assert_allclose(kp2.xy[0], coco_to_h36m(coco_pose(300) / 2), rtol=1e-6)
    with pytest.raises(DataError, match="no track 7"):
        read_keypoints(tmp_path / "alphapose-results.json", person=7)


def test_json_detectron2_ranks_by_box_area(tmp_path):
    # integer image ids, no track ids: the largest box per frame, or --person = rank by area
    recs = [detection(1, coco_pose(0), box=[0, 0, 10, 10]), detection(1, coco_pose(5), box=[0, 0, 50, 50]),
            detection(2, coco_pose(1), box=[0, 0, 60, 60]), detection(2, coco_pose(6), box=[0, 0, 20, 20])]
    (tmp_path / "d2.json").write_text(json.dumps(recs))
    kp = read_keypoints(tmp_path / "d2.json")
    assert len(kp) == 3  # frames 0..2: output frame i is the file's frame i; frame 0 is a gap
    assert (kp.scores[0] == 0).all()
    np.testing.assert_allclose(kp.xy[1], coco_to_h36m(coco_pose(5)), rtol=1e-6)
    np.testing.assert_allclose(kp.xy[2], coco_to_h36m(coco_pose(1)), rtol=1e-6)
    kp = read_keypoints(tmp_path / "d2.json", person=1)
    np.testing.assert_allclose(kp.xy[1], coco_to_h36m(coco_pose(0)), rtol=1e-6)
    assert "ranked 2" in kp.notes[0]


def test_json_mmpose_and_halpe26(tmp_path):
    doc = {"meta_info": {}, "instance_info": [
        {"frame_id": f, "instances": [{"keypoints": halpe_pose().tolist(), "keypoint_scores": [0.8] * 26,
                                       "bbox": [[10, 10, 200, 300]], "bbox_score": 0.9}]}
        for f in range(3)]}
    (tmp_path / "mmpose.json").write_text(json.dumps(doc))
    kp = read_keypoints(tmp_path / "mmpose.json")
    assert kp.joints == "halpe26" and len(kp) == 3
    np.testing.assert_allclose(kp.xy[0], halpe26_to_h36m(halpe_pose()), rtol=1e-6)
    np.testing.assert_allclose(kp.scores, 0.8, rtol=1e-6)


@pytest.mark.parametrize("content,match", [
    ("[]", "no people"),
    ("{not json", "not a readable JSON"),
    ('[{"image_id": 0, "keypoints": [1, 2]}]', "triples"),
    ('[{"keypoints": [1, 2, 0.5]}]', "no 'image_id'"),
    ('{"something": 1}', "expected a list"),
])
def test_bad_json(tmp_path, content, match):
    (tmp_path / "k.json").write_text(content)
    with pytest.raises(DataError, match=match) as e:
        read_keypoints(tmp_path / "k.json")
    assert str(tmp_path / "k.json") in str(e.value)


def test_bad_arrays(tmp_path):
    np.save(tmp_path / "j.npy", np.zeros((4, 16, 2)))
    with pytest.raises(DataError, match="16 joints"):
        read_keypoints(tmp_path / "j.npy")
    with pytest.raises(DataError, match="no such file"):
        read_keypoints(tmp_path / "missing.npz")
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable"):
        read_keypoints(tmp_path / "x.npz")
    with pytest.raises(UsageError):
        read_keypoints(tmp_path / "j.npy", format="nope")


# ---------------------------------------------------------------- gaps

def test_fill_gaps_interpolates_inside_and_holds_at_the_ends(tmp_path):
    T = 8
    xy = np.zeros((T, 17, 2), np.float32)
    xy[:, :, 0] = np.arange(T, dtype=np.float32)[:, None] * 10 + 5
    xy[:, :, 1] = 100
    sc = np.ones((T, 17, 1), np.float32)
    sc[3:5] = 0.0        # frames 3, 4: no detection
    sc[0, 2] = 0.1       # joint 2 of frame 0 under the threshold: held at frame 1's value
    sc[6, 5] = 0.2       # joint 5 of frame 6: interpolated between frames 5 and 7
    np.save(tmp_path / "k.npy", np.concatenate([xy, sc], -1))
    kp = read_keypoints(tmp_path / "k.npy")
    out, rep = fill_gaps(kp, 0.3)
    assert rep.frames_filled == 2 and rep.joints_filled == 2 and rep.frames == T
    np.testing.assert_allclose(out[3:5, :, 0], xy[3:5, :, 0])    # linear across the gap
    assert out[0, 2, 0] == pytest.approx(15) and out[6, 5, 0] == pytest.approx(65)
    assert rep.filled[3].all() and rep.filled[0, 2] and not rep.filled[0, 3]
    assert "filled 2 of 8 frames" in str(rep)


def test_fill_gaps_zero_and_nan_frames_and_too_few(tmp_path):
    xy = np.random.default_rng(3).uniform(10, 500, size=(20, 17, 2)).astype(np.float32)
    xy[0] = 0          # all-zero frame: no detection
    xy[5] = np.nan
    np.save(tmp_path / "k.npy", xy)
    out, rep = fill_gaps(read_keypoints(tmp_path / "k.npy"))
    assert rep.frames_filled == 2 and np.isfinite(out).all()
    np.testing.assert_allclose(out[0], xy[1])
    np.testing.assert_allclose(out[5], (xy[4] + xy[6]) / 2, rtol=1e-5)
    xy[1:] = 0
    np.save(tmp_path / "k.npy", xy)
    with pytest.raises(DataError, match="too few usable frames: 0 of 20"):
        fill_gaps(read_keypoints(tmp_path / "k.npy"))


def test_window_stride_rule():
    assert [window_stride(f) for f in (50, 60, 30, 25, 24, 10, 100)] == [3, 4, 2, 2, 1, 1, 6]


def test_savgol_keeps_quadratics_and_lowers_jitter():
    t = np.arange(40, dtype=np.float64)
    quad = np.stack([0.01 * t ** 2, -0.3 * t + 2, np.full_like(t, 0.5)], -1)[:, None]  # (T, 1, 3)
    np.testing.assert_allclose(savgol(quad, 9), quad, atol=1e-4)
    noisy = quad + np.random.default_rng(5).normal(scale=0.05, size=quad.shape)
    assert jitter(savgol(noisy, 9)) < 0.3 * jitter(noisy)
    assert savgol(noisy[:2], 9).shape == noisy[:2].shape  # shorter than the window: unchanged


def test_npz_layouts_that_are_refused(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 17, 2)), b=np.zeros((3, 17, 2)))
    with pytest.raises(DataError, match="not exactly one array"):
        read_keypoints(tmp_path / "two.npz")
    np.savez(tmp_path / "obj.npz", keypoints=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot read its arrays"):
        read_keypoints(tmp_path / "obj.npz")
    np.savez(tmp_path / "fps.npz", keypoints=np.ones((3, 17, 2)), fps=-1.0)
    with pytest.raises(DataError, match="'fps' must be positive"):
        read_keypoints(tmp_path / "fps.npz")


def test_coco_keypoint_file_round_trip(tmp_path):
    from stcformer.infer.coco_json import write_coco_keypoints

    rng = np.random.default_rng(20)
    xy = rng.uniform(-20, 700, size=(9, 33, 2)).astype(np.float32)
    sc = rng.uniform(0, 1, size=(9, 33)).astype(np.float32)
    xy[[3, 8]] = np.nan  # no detection, also in the last frame: the frame count must survive
    sc[[3, 8]] = 0
    write_coco_keypoints(tmp_path / "k.json", xy, sc, size=(640, 360), fps=29.97)
    kp = read_keypoints(tmp_path / "k.json")
    assert kp.joints == "blazepose" and kp.size == (640, 360) and kp.fps == pytest.approx(29.97) and len(kp) == 9
    from stcformer.infer.keypoints import convert_keypoints
    direct = convert_keypoints(xy, sc, "blazepose")
    np.testing.assert_array_equal(kp.xy, direct.xy)
    np.testing.assert_array_equal(kp.scores, direct.scores)
    # COCO-17 names in the category: read as COCO
    write_coco_keypoints(tmp_path / "c.json", xy[:, :17], sc[:, :17], size=(640, 360), joints="coco")
    assert read_keypoints(tmp_path / "c.json").joints == "coco"


def test_link_tracks_follows_boxes_through_a_gap():
    from stcformer.infer.tracks import Detection, box_area, link_tracks

    def det(frame, x):
        box = np.array([x, 100.0, x + 80, 300.0])
        kp = np.concatenate([np.stack([np.linspace(x, x + 80, 17), np.linspace(100, 300, 17)], -1),
                             np.ones((17, 1))], 1)
        return Detection(frame, None, box, box_area(box), kp)

    dets = []
    for f in range(12):
        people = [det(f, 100 + 5 * f), det(f, 500 - 5 * f)]  # walking towards each other, never overlapping
        if f in (4, 5, 6):
            people = people[:1]  # the second person is missed for three frames
        dets += people[::-1] if f % 2 else people  # and the order in the file changes
    ids = link_tracks(dets)
    for d, i in zip(dets, ids):
        assert i == (0 if d.box[0] < 300 else 1), (d.frame, d.box[0], i)
    assert set(ids) == {0, 1}
