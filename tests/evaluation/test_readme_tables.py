"""``benchmarks/tables.py``: the README's benchmark tables are the results' numbers, the best
of each metric per condition in bold."""

import json
import math

import pytest



@pytest.fixture(scope="module")
def tables(benchmark_script):
    return benchmark_script("tables")


def _rows():
    rng = __import__("numpy").random.default_rng(0)
    rows = []
    for meg, fmri in (("inf", "inf"), (1.0, 0.3), (0.1, "inf")):
        for method in ("fMNE", "neurofuse", "fMNE+smooth", "neurofuse[mixture]", "MNE"):
            t, s = rng.uniform(0, 1, 2)
            rows.append({"method": method, "meg_cnr": meg, "fmri_cnr": fmri,
                         "temporal_r": float(t), "spatial_r": float(s)})
    return rows


def test_recovery_table_numbers_order_and_bold(tables):
    rows = _rows()
    lines = tables.recovery_table(rows).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # the joint model, its variants, the smoothed inverses, then the classical ones
    assert header[2:] == ["neurofuse", "neurofuse[mixture]", "fMNE+smooth", "fMNE", "MNE"]
    body = lines[2:]
    assert [tuple(c.strip() for c in b.strip("|").split("|")[:2]) for b in body] == [
        ("∞", "∞"), ("1", "0.3"), ("0.1", "∞")]
    for line, (meg, fmri) in zip(body, (("inf", "inf"), (1.0, 0.3), (0.1, "inf"))):
        cells = [c.strip() for c in line.strip("|").split("|")[2:]]
        here = {r["method"]: r for r in rows if r["meg_cnr"] == meg and r["fmri_cnr"] == fmri}
        for method, text in zip(header[2:], cells):
            t, s = (p.strip() for p in text.split("/"))
            for part, key in ((t, "temporal_r"), (s, "spatial_r")):
                best = max(r[key] for r in here.values()) == here[method][key]
                assert part.startswith("**") == best
                assert math.isclose(float(part.strip("*")), here[method][key], abs_tol=5e-4)


def test_recovery_table_refuses_unknown_method(tables):
    with pytest.raises(SystemExit, match="not in the results"):
        tables.recovery_table(_rows(), ["neurofuse", "sLORETA"])


def test_main_prints_both_tables(tables, tmp_path, capsys):
    pred = [{"subject": "S01", "modality": "meg", "method": m, "meg_cnr": "inf",
             "fmri_cnr": "inf", "r_mean": v, "r_sd": 0.01} for m, v in
            (("ridge", 0.9), ("neurofuse", 0.8))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"source_recovery": _rows(), "prediction": pred}))
    tables.main([str(path)])
    out = capsys.readouterr().out
    assert "| ∞ | ∞ | S01 | MEG | 0.800 ± 0.010 | 0.900 ± 0.010 |" in out


def test_worlds_table_numbers_and_bold(tables):
    rows = [{"world": w, **{k: v for k, v in r.items() if k in ("method", "temporal_r",
                                                                 "spatial_r")}}
            for w, cond in (("short5", ("inf", "inf")), ("patches", (1.0, 0.3)))
            for r in _rows() if (r["meg_cnr"], r["fmri_cnr"]) == cond]
    pred = [{"world": "short5", "subject": s, "modality": "meg", "method": m, "r_mean": v}
            for s, m, v in (("S01", "neurofuse", 0.5), ("S02", "neurofuse", 0.7),
                            ("S01", "ridge", 0.8), ("S02", "ridge", 0.8))]
    lines = tables.worlds_table(rows, pred).splitlines()
    assert lines[0] == "| method | short5 | patches |"
    body = {b.strip("|").split("|")[0].strip(): [c.strip() for c in b.strip("|").split("|")[1:]]
            for b in lines[2:]}
    assert list(body)[:5] == ["neurofuse", "neurofuse[mixture]", "fMNE+smooth", "fMNE", "MNE"]
    for w, world in enumerate(("short5", "patches")):
        here = {r["method"]: r for r in rows if r["world"] == world}
        for k, key in enumerate(("temporal_r", "spatial_r")):
            top = max(here, key=lambda m: here[m][key])
            for m, r in here.items():
                shown = body[m][w].split(" / ")[k]
                assert shown.strip("*") == f"{r[key]:.3f}"
                assert shown.startswith("**") == (m == top)
    assert body["held-out MEG r: neurofuse"] == ["0.600", "–"]
    assert body["held-out MEG r: ridge"] == ["0.800", "–"]
