"""``benchmarks/bench_min_epochs.py``: a work folder fitted under another set-up is refused."""

import json

import pytest


def test_a_fit_of_another_set_up_is_not_replayed(benchmark_script, tmp_path, capsys):
    from neurofuse.systems.joint.trainer import TrainConfig, load_fit_config

    bench = benchmark_script("bench_min_epochs")
    store = tmp_path / "s1" / "data"
    store.mkdir(parents=True)
    (tmp_path / "W" / "s1").mkdir(parents=True)
    config = tmp_path / "W" / "s1" / "config.json"
    old, _ = load_fit_config("demo-alpha1")  # the committed results' set-up, alpha_fmri 1
    full = TrainConfig.from_dict({**old.to_dict(), "patience": old.max_epochs})
    config.write_text(json.dumps({"train": full.to_dict()}))
    with pytest.raises(SystemExit):  # the demo preset now weighs the fMRI term 0.03
        bench.main(["--work", str(tmp_path / "W"), "--data", str(store)])
    assert "holds a fit of another training set-up than --fit 'demo'" in \
        capsys.readouterr().err
