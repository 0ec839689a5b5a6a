"""System B's committed benchmark: the schema issue 12 names, and the README's table is its."""

import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "eeg2meg.json"
BANDS = ("delta", "theta", "alpha", "beta", "gamma")
SIGNAL = {"method", "band", "pearson", "rmse", "nmi", "ssim"}
DECODING = {"method", "task", "accuracy", "f1"}
GENERATED = ("generator", "no_pretrained", "no_sfm", "no_bsc", "no_diffusion", "physics",
             "ridge")


def _results():
    return json.loads(RESULTS.read_text())


def test_rows_have_the_issues_schema():
    rows = _results()["rows"]
    signal = [r for r in rows if "band" in r]
    decoding = [r for r in rows if "task" in r]
    assert len(signal) + len(decoding) == len(rows)
    assert all(set(r) == SIGNAL for r in signal)
    assert all(DECODING <= set(r) for r in decoding)
    # every method that makes MEG, in every band; every feature set on both tasks
    assert {(r["method"], r["band"]) for r in signal} == {
        (m, b) for m in GENERATED for b in BANDS}
    assert {(r["method"], r["task"]) for r in decoding} == {
        (m, t) for m in (*GENERATED, "eeg_only", "real_meg") for t in ("faces", "somatomotor")}
    for r in signal:
        assert -1 <= r["pearson"] <= 1 and r["rmse"] >= 0 and 0 <= r["nmi"] <= 1
        assert -1 <= r["ssim"] <= 1
    for r in decoding:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["f1"] <= 1


def _cell(text):
    return float(text.strip().strip("*").replace("−", "-"))


def test_the_readme_table_is_the_committed_result():
    """The README's per-band System B table (its first six number columns) holds the JSON's
    Pearson r, rounded: a rerun that updates one but not the other fails here."""
    pearson = {(r["method"], r["band"]): r["pearson"] for r in _results()["rows"]
               if "band" in r}
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### System B")[1].split("\n### ")[0]
    seen = set()
    for line in section.splitlines():
        method = next((m for m in GENERATED if line.startswith(f"| `{m}`")), None)
        if method is None or method in seen:
            continue
        seen.add(method)
        cells = [_cell(c) for c in line.split("|")[2:8]]
        want = [pearson[method, b] for b in BANDS]
        want.append(float(np.mean(want)))
        for got, value in zip(cells, want):
            assert math.isclose(got, round(value, 2), abs_tol=1e-9), (method, cells, want)
    assert seen == set(GENERATED)


def test_paper_rows_put_the_papers_numbers_beside_ours():
    from neurofuse.evaluation.eeg2meg.paper import PAPER_TABLE_I, paper_rows

    decoding = [{"method": m, "task": t, "accuracy": a, "f1": a - 0.01}
                for m, a in (("eeg_only", 0.6), ("no_sfm", 0.55), ("physics", 0.7))
                for t in ("somatomotor", "faces")]
    rows = paper_rows(decoding)
    # only EEG alone and the paper's variants that were scored; physics is ours alone
    assert [r["method"] for r in rows] == ["eeg_only", "no_sfm"]
    assert rows[1]["paper_accuracy_somatomotor"] == PAPER_TABLE_I["no_sfm"] == 0.65
    assert rows[0]["paper_accuracy_somatomotor"] is None
    assert (rows[0]["paper_f1_somatomotor"], rows[0]["paper_f1_faces"]) == (0.646, 0.39)
    assert rows[1]["paper_f1_faces"] is None  # NOD-MEG: F1 of the full model only
    assert rows[1]["paper_f1_somatomotor"] == 0.6644  # Table I
    assert (rows[1]["accuracy_faces"], rows[1]["f1_somatomotor"]) == (0.55, 0.55 - 0.01)
    # the committed benchmark's Table I, as the README shows it
    committed = {r["method"]: r for r in paper_rows(
        [r for r in _results()["rows"] if "task" in r])}
    assert set(committed) == {"eeg_only", *PAPER_TABLE_I}


def test_the_decoding_controls_share_the_benchmarks_folds():
    """The controls' EEG-alone, real-MEG and physics rows are the benchmark's own numbers
    (same subjects, folds and seed): the controls differ from them in the second modality
    alone."""
    controls = json.loads((RESULTS.parent / "eeg2meg_decoding_controls.json").read_text())
    ours = {(r["method"], r["task"]): r for r in _results()["rows"] if "task" in r}
    rows = {(r["method"], r["task"]): r for r in controls["rows"]}
    assert {m for m, _ in rows} == {"eeg_only", "real_meg", "physics", "eeg_copy",
                                    "eeg_random_mix"}
    for key in [k for k in rows if k[0] in ("eeg_only", "real_meg", "physics")]:
        for score in ("accuracy", "f1", "n_correct", "n_trials"):
            assert rows[key][score] == ours[key][score], (key, score)
