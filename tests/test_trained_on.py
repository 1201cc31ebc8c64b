"""What a checkpoint was trained on (stcformer.model.checkpoint.trained_on / synthetic_note)."""
import torch

from stcformer import STCFormer, save_checkpoint
from stcformer.model.checkpoint import load_checkpoint, synthetic_note, trained_on
from stcformer.train.config import TrainConfig


def _model():
    return STCFormer(layers=1, d_hid=32, num_heads=2)


def test_synthetic_run_says_so(tmp_path):
    config = TrainConfig(frames=9, layers=1, d_hid=32)
    save_checkpoint(_model(), tmp_path / "a.pth", extra={"args": config.to_dict(), "trained_on": config.trained_on()})
    m = load_checkpoint(tmp_path / "a.pth")
    info = trained_on(m)
    assert info["source"] == "stcformer.train" and info["synthetic"] is True and info["dataset"] == "h36m"
    note = synthetic_note(m)
    assert note and "\n" not in note and "synthetic" in note and "github.com/zhenhuat/STCFormer" in note


def test_older_checkpoint_judged_from_its_settings(tmp_path):
    config = TrainConfig(frames=9, layers=1, d_hid=32, data_dir="/data/h36m", keypoints="cpn_ft_h36m_dbb")
    save_checkpoint(_model(), tmp_path / "b.pth", extra={"args": config.to_dict()})
    m = load_checkpoint(tmp_path / "b.pth")
    assert trained_on(m)["synthetic"] is False and trained_on(m)["keypoints"] == "cpn_ft_h36m_dbb"
    assert synthetic_note(m) is None


def test_plain_state_dict_is_unknown(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "c.pth")
    m = load_checkpoint(tmp_path / "c.pth")
    assert trained_on(m)["source"] == "unknown" and trained_on(m)["synthetic"] is None
    assert synthetic_note(m) is None
