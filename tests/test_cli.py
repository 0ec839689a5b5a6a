"""The command-line interface: each subcommand on small inputs, exit codes and messages."""

import json

import pytest

from neurofuse.cli import main


def test_anatomy_json(capsys):
    assert main(["anatomy", "--json", "-q"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["n_sources"] == 8196 and desc["n_sources_per_hemi"] == [4098, 4098]
    assert desc["n_meg_channels"] == 306 and desc["n_magnetometers"] == 102
    assert desc["n_eeg_channels"] > 0
    assert desc["leadfield_shape"] == [306, 8196]


def test_simulate_then_info(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["simulate", "tiny", "--out", str(out), "--meg-cnr", "inf", "-q"]) == 0
    text = capsys.readouterr().out
    assert "S01" in text and "meg CNR inf" in text
    assert main(["info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["subjects"]) == {"S01", "S02"}
    assert summary["subjects"]["S01"]["cnr"]["meg"] == "inf"
    assert summary["subjects"]["S02"]["cnr"]["fmri"] == 0.3
    assert {s["split"] for s in summary["stories"].values()} == {"train", "val", "test"}
    # A second run into the same folder is refused with a clear message, not overwritten.
    assert main(["simulate", "tiny", "--out", str(out), "-q"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_trian": 3}')
    assert main(["simulate", str(bad), "--out", str(tmp_path / "x"), "-q"]) == 1
    assert "did you mean 'n_train'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "tiny", "--out", str(tmp_path / "y"), "--meg-cnr", "-1"])
    assert main(["info", str(tmp_path)]) == 1
    assert "dataset" in capsys.readouterr().err.lower()
