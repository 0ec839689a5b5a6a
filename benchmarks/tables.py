"""Markdown tables of a simulation benchmark's ``results.json`` (the README's System A tables).

Prints, from ``neurofuse joint benchmark simulation``'s results (or
``benchmarks/results/simulation.json``), the source-recovery table (one row per MEG x fMRI CNR
condition, temporal r / spatial r per method, the best of each metric in a row in bold) and the
held-out prediction table (neurofuse and its variants beside the ridge ceiling). Nothing is
computed: the tables are the JSON's numbers, rounded.

    python benchmarks/tables.py benchmarks/results/simulation.json
    python benchmarks/tables.py benchmarks/results/worlds.json      # methods x worlds
    python benchmarks/tables.py bench/results.json --methods neurofuse "neurofuse[mixture]" fMNE
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

#: Column order when ``--methods`` is not given: the joint model and its variants, the
#: prior-mean inverses, the smoothed inverses, then the classical inverses.
_GROUPS = (lambda m: m == "neurofuse", lambda m: m.startswith("neurofuse["),
           lambda m: m.startswith("neurofuse+"), lambda m: m.endswith("+smooth"),
           lambda m: True)


_MODALITY = {"meg": "MEG", "eeg": "EEG", "fmri": "fMRI"}


def _cnr(value) -> float:
    return math.inf if value in ("inf", math.inf) else float(value)


def _fmt_cnr(value) -> str:
    value = _cnr(value)
    return "∞" if math.isinf(value) else f"{value:g}"


def _order(methods):
    out = []
    for group in _GROUPS:
        out += [m for m in methods if group(m) and m not in out]
    return out


def recovery_table(rows, methods=None) -> str:
    """Markdown table of source-recovery rows ``{"method", "meg_cnr", "fmri_cnr",
    "temporal_r", "spatial_r"}``; per row the best temporal r and best spatial r among the
    columns shown are bold."""
    seen = list(dict.fromkeys(r["method"] for r in rows))
    methods = _order(seen) if methods is None else list(methods)
    unknown = sorted(set(methods) - set(seen))
    if unknown:
        raise SystemExit(f"--methods: {unknown} are not in the results (they have {seen}).")
    conditions = list(dict.fromkeys((_cnr(r["meg_cnr"]), _cnr(r["fmri_cnr"])) for r in rows))
    conditions.sort(key=lambda c: (-c[0], -c[1]))
    cell = {(r["method"], _cnr(r["meg_cnr"]), _cnr(r["fmri_cnr"])): r for r in rows}
    lines = ["| MEG CNR | fMRI CNR | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for meg, fmri in conditions:
        here = {m: cell[(m, meg, fmri)] for m in methods if (m, meg, fmri) in cell}
        # bold: the best among the columns shown
        best = {k: max((r[k] for r in here.values()), default=None)
                for k in ("temporal_r", "spatial_r")}
        cells = []
        for m in methods:
            if m not in here:
                cells.append("–")
                continue
            parts = [f"{here[m][k]:.3f}" for k in ("temporal_r", "spatial_r")]
            parts = [f"**{p}**" if here[m][k] == best[k] else p
                     for p, k in zip(parts, ("temporal_r", "spatial_r"))]
            cells.append(" / ".join(parts))
        lines.append(f"| {_fmt_cnr(meg)} | {_fmt_cnr(fmri)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prediction_table(rows) -> str:
    """Markdown table of held-out prediction rows: each subject's mean r ± sd per method."""
    methods = _order(list(dict.fromkeys(r["method"] for r in rows)))
    keys = list(dict.fromkeys((_cnr(r["meg_cnr"]), _cnr(r["fmri_cnr"]), r["subject"],
                               r["modality"]) for r in rows))
    cell = {(_cnr(r["meg_cnr"]), _cnr(r["fmri_cnr"]), r["subject"], r["modality"],
             r["method"]): r for r in rows}
    lines = ["| MEG CNR | fMRI CNR | subject | modality | " + " | ".join(methods) + " |",
             "|---|---|---|---|" + "---|" * len(methods)]
    for meg, fmri, subject, modality in keys:
        cells = [f"{cell[k]['r_mean']:.3f} ± {cell[k]['r_sd']:.3f}" if k in cell else "–"
                 for k in ((meg, fmri, subject, modality, m) for m in methods)]
        lines.append(f"| {_fmt_cnr(meg)} | {_fmt_cnr(fmri)} | {subject} | "
                     f"{_MODALITY.get(modality, modality)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def worlds_table(rows, prediction=(), methods=None) -> str:
    """Markdown table of ``bench_worlds.py`` rows ``{"world", "method", "temporal_r",
    "spatial_r"}``: one row per method, one column per world (temporal r / spatial r; the best
    of each metric per world among the rows shown in bold), then the mean held-out MEG r of
    the joint model(s) and the ridge ceiling per world from ``prediction`` rows."""
    seen = list(dict.fromkeys(r["method"] for r in rows))
    methods = _order(seen) if methods is None else list(methods)
    unknown = sorted(set(methods) - set(seen))
    if unknown:
        raise SystemExit(f"--methods: {unknown} are not in the results (they have {seen}).")
    worlds = list(dict.fromkeys(r["world"] for r in rows))
    cell = {(r["world"], r["method"]): r for r in rows}
    best = {(w, k): max((cell[(w, m)][k] for m in methods if (w, m) in cell), default=None)
            for w in worlds for k in ("temporal_r", "spatial_r")}
    lines = ["| method | " + " | ".join(worlds) + " |", "|---|" + "---|" * len(worlds)]
    for m in methods:
        cells = []
        for w in worlds:
            if (w, m) not in cell:
                cells.append("–")
                continue
            parts = [f"{cell[(w, m)][k]:.3f}" for k in ("temporal_r", "spatial_r")]
            cells.append(" / ".join(f"**{p}**" if cell[(w, m)][k] == best[(w, k)] else p
                                    for p, k in zip(parts, ("temporal_r", "spatial_r"))))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    meg = [r for r in prediction if r["modality"] == "meg"]
    for m in _order(list(dict.fromkeys(r["method"] for r in meg))):
        cells = []
        for w in worlds:
            r_ = [r["r_mean"] for r in meg if r["world"] == w and r["method"] == m]
            cells.append(f"{sum(r_) / len(r_):.3f}" if r_ else "–")
        lines.append(f"| held-out MEG r: {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="a simulation benchmark's results.json, or "
                                              "bench_worlds.py's JSON")
    p.add_argument("--methods", nargs="+", help="source-recovery columns, in order")
    args = p.parse_args(argv)
    res = json.loads(args.results.read_text())
    if res.get("benchmark") == "worlds":  # benchmarks/bench_worlds.py's output
        print(worlds_table(res["rows"], res.get("prediction", ()), args.methods))
        return
    print(recovery_table(res["source_recovery"], args.methods))
    print()
    print(prediction_table(res["prediction"]))


if __name__ == "__main__":
    main()
