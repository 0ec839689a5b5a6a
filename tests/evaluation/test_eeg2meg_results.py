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
