"""A finished joint-model fit is reused only under the settings it was trained with."""

import json

import pytest

from neurofuse.evaluation.pipeline import _check_done_fit, _fit_step
from neurofuse.systems.joint.trainer import load_fit_config


def _done(tmp_path, **train_changes):
    train, encoder = load_fit_config("tiny")
    fit_dir = tmp_path / "fit"
    fit_dir.mkdir()
    (fit_dir / "done.json").write_text(json.dumps(
        {"train": {**train.to_dict(), **train_changes}, "encoder": encoder,
         "denoised_fmri": train.fmri_denoise}))
    return fit_dir / "done.json"


def test_a_fit_under_other_settings_is_refused_before_anything_loads(tmp_path):
    _done(tmp_path, lr=0.5)
    with pytest.raises(ValueError, match=r"other settings \(differing: train\.lr\)"):
        _fit_step(None, tmp_path, fit_config="tiny", fmri_denoise=None, in_sample={},
                  device=None)


def test_the_same_settings_pass_and_unrecorded_ones_are_not_compared(tmp_path):
    done = _done(tmp_path)
    train, encoder = load_fit_config("tiny")
    _check_done_fit(done, {"train": train.to_dict(), "encoder": encoder})
    prev = json.loads(done.read_text())
    del prev["train"]["block_size"]  # a folder written before that setting existed
    done.write_text(json.dumps(prev))
    _check_done_fit(done, {"train": {**train.to_dict(), "block_size": 7}, "encoder": encoder})
    with pytest.raises(ValueError, match="encoder.d_model"):
        _check_done_fit(done, {"train": train.to_dict(),
                               "encoder": {**encoder, "d_model": encoder["d_model"] + 1}})
