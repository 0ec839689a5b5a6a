"""One reader of training set-ups for every system: presets, files, overrides, errors."""

import json

import pytest

from neurofuse.training.presets import check_not_from_data, read_fit_config

PRESETS = {"paper": {"train": {"epochs": 125, "lr": 1e-4}, "model": {}},
           "tiny": {"train": {"epochs": 3, "lr": 1e-3}, "model": {"hidden": [8]}}}


def test_preset_file_and_dict_give_the_same_set_up(tmp_path):
    want = {"train": {"epochs": 3, "lr": 0.5}, "model": {"hidden": [8]}}
    config = {"preset": "tiny", "train": {"lr": 0.5}}
    assert read_fit_config(config, PRESETS, ("train", "model")) == want
    (tmp_path / "fit.json").write_text(json.dumps(config))
    (tmp_path / "fit.toml").write_text('preset = "tiny"\n[train]\nlr = 0.5\n')
    for name in ("fit.json", "fit.toml"):
        assert read_fit_config(tmp_path / name, PRESETS, ("train", "model")) == want
    # a bare name is the preset; no preset key starts from the paper's
    assert read_fit_config("tiny", PRESETS, ("train", "model")) == PRESETS["tiny"]
    assert read_fit_config({"model": {"hidden": [4]}}, PRESETS, ("train", "model")) == {
        "train": PRESETS["paper"]["train"], "model": {"hidden": [4]}}
    assert PRESETS["tiny"]["train"]["lr"] == 1e-3  # presets are not modified


def test_bad_set_ups_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"section\(s\) \['encoder'\].*'preset', 'train'"):
        read_fit_config({"encoder": {}}, PRESETS, ("train", "model"))
    with pytest.raises(ValueError, match="preset"):
        read_fit_config({"preset": "huge"}, PRESETS, ("train", "model"))
    with pytest.raises(FileNotFoundError, match="paper, tiny"):
        read_fit_config(str(tmp_path / "nope.toml"), PRESETS, ("train", "model"))


def test_fields_that_come_from_the_data_are_refused():
    check_not_from_data("model", {"hidden": [4]}, ("n_channels",), "data")  # passes
    with pytest.raises(ValueError, match=r"'model' section must not set \['n_a', 'n_b'\].*"
                                         r"from the data set \(its shape\)"):
        check_not_from_data("model", {"n_b": 1, "hidden": [4], "n_a": 2}, ("n_a", "n_b"),
                            "data set (its shape)")
