"""A simulated study's memory and disk, estimated from its config before any work."""

import time
import tracemalloc

import pytest

from neurofuse._resources import ResourceError
from neurofuse.cli.main import main
from neurofuse.simulation.resources import N_SOURCES, check_study_resources, estimate_study
from neurofuse.simulation.study import StudyConfig, simulate_study

GiB = 1024 ** 3


def _size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_disk_estimate_matches_the_written_study(tiny_study):
    _, disk = estimate_study(StudyConfig.preset("tiny"))
    size = _size(tiny_study)
    assert abs(disk["total"] - size) < 0.1 * size, (disk, size)


def test_memory_estimate_is_honest(tmp_path):
    """Within a factor 2 of the peak of numpy allocations (tracemalloc) of a whole run with
    stories long enough for the story loop, not the anatomy, to set the peak."""
    config = StudyConfig.preset("tiny", story_duration=120.0)
    tracemalloc.start()
    try:
        out = simulate_study(config, tmp_path / "s", verbose="warning")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    memory, disk = estimate_study(config)
    assert 0.5 < memory["total"] / peak < 2, (memory, peak)
    assert abs(disk["total"] - _size(out)) < 0.1 * _size(out)


def test_source_counts():
    from neurofuse.anatomy import get_source_space, make_template_subject

    src = get_source_space(make_template_subject(meg=False), "oct5")
    assert N_SOURCES["oct5"] == sum(s["nuse"] for s in src)


@pytest.mark.parametrize("field, value, part", [
    ("story_duration", 1e9, "BOLD transients"),
    ("n_train", 10 ** 9, "MEG recordings"),
    ("n_meg_subjects", 10 ** 9, "forward models and gains"),
    ("n_fmri_subjects", 10 ** 9, "fMRI recordings"),
])
def test_absurd_studies_are_refused_at_once(field, value, part, tmp_path):
    config = StudyConfig.preset("tiny", **{field: value})
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match=r"^Simulating .* (needs|writes) about [\d,.]+ TiB"):
        check_study_resources(config, tmp_path / "s")
    assert time.perf_counter() - t0 < 5  # no story plan of a billion stories
    memory, disk = estimate_study(config)
    assert part in memory or part in disk


@pytest.mark.parametrize("text, message", [
    ('{"preset": "tiny", "story_duration": -5}', "'StudyConfig.story_duration' must be > 0"),
    ('{"preset": "tiny", "story_duration": NaN}', "story_duration' must be a finite"),
    ('{"preset": "tiny", "n_meg_subjects": 1e9}', "'StudyConfig.n_meg_subjects' must be an int"),
    ('{"preset": "tiny", "n_train": 1000000000}', "writes about"),
    ('{"preset": "tiny", "story_duration": 1e9}', "needs about"),
])
def test_cli_refuses_absurd_values(text, message, tmp_path, capsys):
    cfg = tmp_path / "study.json"
    cfg.write_text(text)
    assert main(["simulate", "study", str(cfg), "--out", str(tmp_path / "s"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neurofuse simulate study: error: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_cli_force_skips_the_refusal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("neurofuse._resources.available_memory", lambda: 2 ** 20)
    out = tmp_path / "s"
    assert main(["simulate", "study", "tiny", "--out", str(out), "-q"]) == 1
    assert "1 MiB available" in capsys.readouterr().err and not out.exists()
    assert main(["simulate", "study", "tiny", "--out", str(out), "-q", "--force"]) == 0
    assert (out / "neurofuse-dataset.json").is_file()


def test_cli_refuses_a_study_larger_than_the_free_disk(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("neurofuse._resources.free_disk", lambda path: 2 ** 18)
    out = tmp_path / "s"
    assert main(["simulate", "study", "tiny", "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    from neurofuse._resources import format_bytes

    need = format_bytes(estimate_study(StudyConfig.preset("tiny"))[1]["total"])
    assert f"writes about {need} to '{out}', 256 KiB free there (largest: " in err
    assert "choose another location, free some space, or reduce story_duration" in err
    assert not out.exists()
