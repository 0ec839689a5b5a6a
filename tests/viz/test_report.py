"""Figures and the HTML report, on synthetic values over the real template geometry."""

import csv
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from neurofuse.viz import (
    REPORT_SECTIONS,
    make_report,
    plot_recovery_bars,
    plot_sensor_topomaps,
    plot_slice_grid,
    plot_source_map,
    plot_time_courses,
    plot_training_curves,
    results_tables_html,
    spread_to_mesh,
)
from neurofuse.viz.figures import _pair_gradiometers
from neurofuse.viz.surface import N_MESH_VERTICES, _surface

INF = float("inf")


@pytest.fixture(scope="module")
def src():
    from neurofuse.anatomy import get_source_space, make_template_subject

    return get_source_space(make_template_subject(meg=False))


@pytest.fixture(scope="module")
def vertices(src):
    return [s["vertno"] for s in src]


@pytest.fixture(scope="module")
def info():
    from neurofuse.anatomy import make_meg_info

    return make_meg_info()


@pytest.fixture(scope="module")
def recovery_rows():
    rng = np.random.default_rng(3)
    rows = []
    for method in ("neurofuse", "fMNE"):
        for meg_cnr in (INF, 1.0, 0.1):
            for fmri_cnr in (INF, 0.3):
                rows.append({"method": method, "meg_cnr": meg_cnr, "fmri_cnr": fmri_cnr,
                             "temporal_r": float(rng.uniform(0, 1)),
                             "spatial_r": float(rng.uniform(0, 1))})
    return rows


@pytest.fixture(scope="module")
def history():
    return [{"epoch": e + 1, "train_total": 2.0 - 0.05 * e, "val_total": 2.1 - 0.04 * e,
             "val_meg_r": 0.01 * e, "alpha_fmri": 0.0 if e < 4 else 1.0,
             **({"val_fmri_r": 0.02 * e} if e >= 4 else {})} for e in range(8)]


def _meg_r(info, seed=0):
    return np.random.default_rng(seed).uniform(-0.05, 0.2, len(info["ch_names"]))


# ---------------------------------------------------------------------------- surface


def test_spread_to_mesh_nearest_source(vertices):
    rng = np.random.default_rng(0)
    n_src = sum(len(v) for v in vertices)
    values = rng.standard_normal(n_src)
    mesh = spread_to_mesh(values, vertices)
    assert [m.shape for m in mesh] == [(N_MESH_VERTICES,)] * 2
    start = 0
    for hemi, vertno, mesh_vals in zip(("lh", "rh"), vertices, mesh):
        own = values[start:start + len(vertno)]
        start += len(vertno)
        # Source vertices keep their own value, exactly.
        np.testing.assert_array_equal(mesh_vals[vertno], own)
        # Every other vertex takes the value of its nearest source on the sphere (brute force).
        sphere, _ = _surface("sphere", hemi)
        check = rng.choice(N_MESH_VERTICES, 300, replace=False)
        dist = np.linalg.norm(sphere[check, None] - sphere[None, vertno], axis=-1)
        np.testing.assert_array_equal(mesh_vals[check], own[dist.argmin(axis=1)])
        # oct6 covers 4098 of the 10242 vertices, so the map is spread, not copied.
        assert len(vertno) == 4098 and np.isfinite(mesh_vals).all()


def test_spread_to_mesh_checks(vertices, src):
    n_src = sum(len(v) for v in vertices)
    with pytest.raises(ValueError, match="one entry per source"):
        spread_to_mesh(np.zeros(n_src - 1), vertices)
    with pytest.raises(ValueError, match="fsaverage5 mesh"):
        spread_to_mesh(np.zeros(2), [np.array([0]), np.array([20000])])
    # An mne.SourceSpaces is accepted too; a hemisphere without sources is all NaN.
    np.testing.assert_array_equal(spread_to_mesh(np.arange(n_src, dtype=float), src)[0][vertices[0]],
                                  np.arange(len(vertices[0])))
    lh_only = spread_to_mesh(np.ones(3), [vertices[0][:3], np.array([], int)])
    assert np.isnan(lh_only[1]).all() and (lh_only[0] == 1).all()


def test_plot_source_map_layout(vertices):
    values = np.random.default_rng(1).uniform(-0.2, 0.6, sum(len(v) for v in vertices))
    fig = plot_source_map(values, vertices, title="r", cbar_label="r", threshold=0.1)
    assert isinstance(fig, Figure)
    axes3d = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(axes3d) == 4  # lh/rh x lateral/medial
    assert len(fig.axes) == 5  # + one colour bar
    cbar = fig.axes[-1]
    amax = np.abs(values).max()
    assert cbar.get_ylim() == pytest.approx((-amax, amax))  # symmetric around 0
    fig_lh = plot_source_map(np.abs(values), vertices, hemi="lh", views="lateral", colorbar=False)
    assert len(fig_lh.axes) == 1
    with pytest.raises(ValueError, match="views"):
        plot_source_map(values, vertices, views=("sideways",))
    plt.close("all")


# ---------------------------------------------------------------------------- figures


def test_sensor_topomaps(info):
    pairs = _pair_gradiometers(info, [i for i, t in enumerate(info.get_channel_types())
                                      if t == "grad"])
    assert len(pairs) == 102 and all(len(p) == 2 for p in pairs)
    for p in pairs:  # the two gradiometers of one triplet (MEG0112/MEG0113 ...)
        names = [info["ch_names"][i] for i in p]
        assert names[0][:-1] == names[1][:-1]
    fig = plot_sensor_topomaps(_meg_r(info), info, title="MEG r")
    titles = [ax.get_title() for ax in fig.axes]
    assert "Magnetometers (n=102)" in titles
    assert "Gradiometers (mean of pair) (n=102)" in titles
    with pytest.raises(ValueError, match="one entry per channel"):
        plot_sensor_topomaps(np.zeros(10), info)
    plt.close("all")


def test_time_courses_zscored_with_r():
    rng = np.random.default_rng(2)
    truth = rng.standard_normal((6, 800))
    est = {"neurofuse": truth + 0.5 * rng.standard_normal(truth.shape),
           "fMNE": 1e-9 * (truth + 2 * rng.standard_normal(truth.shape))}
    fig = plot_time_courses(truth, est, [1, 4], sfreq=50.0, max_seconds=10)
    axes = fig.axes
    assert len(axes) == 2
    lines = axes[0].get_lines()
    assert len(lines) == 3 and lines[0].get_xdata()[-1] == pytest.approx(499 / 50.0)
    for line in lines:  # z-scored over the samples shown, whatever the units (A·m or not)
        y = line.get_ydata()
        assert abs(y.mean()) < 1e-9 and y.std() == pytest.approx(1.0)
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    r = np.corrcoef(est["fMNE"][4], truth[4])[0, 1]
    assert f"fMNE (r = {r:.2f})" in labels
    assert "z-scored" in axes[0].get_ylabel()
    with pytest.raises(ValueError, match="shape of 'truth'"):
        plot_time_courses(truth, {"x": truth[:2]}, [0], 50.0)
    plt.close("all")


def test_training_curves_from_csv(tmp_path, history):
    fname = tmp_path / "history.csv"
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(fname, "w", newline="") as fid:
        writer = csv.DictWriter(fid, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)  # val_fmri_r empty in the MEG-only epochs, as the trainer
    for source in (history, fname, str(fname)):
        fig = plot_training_curves(source)
        ax_loss, ax_r = fig.axes
        switch = [ln for ln in ax_r.get_lines() if "fMRI loss on" in ln.get_label()]
        assert len(switch) == 1 and switch[0].get_xdata()[0] == 5  # first epoch with alpha>0
        fmri = next(ln for ln in ax_r.get_lines() if ln.get_label() == "validation fMRI r")
        np.testing.assert_array_equal(fmri.get_xdata(), [5, 6, 7, 8])
        assert len(ax_loss.get_lines()) == 3
    # Without a curriculum (fMRI on from the start) there is no marker.
    fig = plot_training_curves([{**row, "alpha_fmri": 1.0} for row in history])
    assert not [ln for ln in fig.axes[1].get_lines() if "fMRI loss on" in ln.get_label()]
    with pytest.raises(FileNotFoundError):
        plot_training_curves(tmp_path / "missing.csv")
    plt.close("all")


def test_recovery_bars(recovery_rows):
    rows = [dict(r) for r in recovery_rows]
    rows[0]["meg_cnr"] = "inf"  # as a JSON writer may store it
    rows[0]["fmri_cnr"] = "Infinity"
    fig = plot_recovery_bars(rows)
    ax_t, ax_s = fig.axes
    assert len(ax_t.patches) == len(ax_s.patches) == 2 * 6
    ticks = [t.get_text() for t in ax_t.get_xticklabels()]
    assert ticks[0] == "MEG ∞\nfMRI ∞" and ticks[-1] == "MEG 0.1\nfMRI 0.3"
    heights = {(p.get_x(), p.get_height()) for p in ax_t.patches}
    assert any(h == pytest.approx(recovery_rows[0]["temporal_r"]) for _, h in heights)
    with pytest.raises(ValueError, match="lacks the keys"):
        plot_recovery_bars([{"method": "x"}])
    plt.close("all")


# ---------------------------------------------------------------------------- report


def test_results_tables_html(recovery_rows):
    results = {"source_recovery": recovery_rows,
               "prediction": [{"subject": "S1", "modality": "meg", "method": "<ridge>",
                               "r_mean": 0.0741, "r_sd": 0.041},
                              {"subject": "S6", "modality": "fmri", "method": "neurofuse",
                               "r_mean": 0.236, "r_sd": float("nan")}]}
    text = results_tables_html(results)
    assert text.count("<table") == 2
    assert "&lt;ridge&gt;" in text and "<ridge>" not in text  # escaped
    assert "<td>inf</td>" in text and "<td>0.3</td>" in text and "<td>0.074</td>" in text
    assert "<td>n/a</td>" in text  # NaN sd
    header = re.findall(r"<th>(.*?)</th>", text)
    assert header[:5] == ["method", "meg_cnr", "fmri_cnr", "temporal_r", "spatial_r"]
    assert header[5:10] == ["subject", "modality", "method", "r_mean", "r_sd"]
    assert "No result tables" in results_tables_html({})


def _section_html(page, title):
    start = page.index(f'id="accordion-collapse-{title.replace(" ", "_")}"')
    end = page.find('class="accordion-item section"', start)
    return page[start:] if end < 0 else page[start:end]


def test_make_report_all_sections(tmp_path, vertices, info, recovery_rows, history):
    rng = np.random.default_rng(4)
    n_src = sum(len(v) for v in vertices)
    truth = rng.standard_normal((n_src, 300))
    ours = truth + rng.standard_normal(truth.shape)
    fmne = truth + 3 * rng.standard_normal(truth.shape)
    results = {"source_recovery": recovery_rows,
               "prediction": [{"subject": "S1", "modality": "meg", "method": "MEG ridge ceiling",
                               "r_mean": 0.07, "r_sd": 0.04}]}
    small = {"views": ("lateral",), "hemi": "lh"}  # keep the test fast: one panel per map
    sections = {
        "Training curves": [("Loss and validation r", plot_training_curves(history))],
        "Summary": [("Overview", "<p>A demo run on simulated data.</p>"),
                    ("Results", results_tables_html(results))],
        "Source recovery": [("Temporal and spatial r", plot_recovery_bars(recovery_rows),
                             "Mean Pearson r with the ground truth")],
        "Cortical maps": [
            ("Prediction r", plot_source_map(rng.uniform(-0.1, 0.4, n_src), vertices, **small)),
            ("Temporal r, neurofuse", plot_source_map(rng.uniform(0, 1, n_src), vertices, **small)),
            ("Temporal r, fMNE", plot_source_map(rng.uniform(0, 1, n_src), vertices, **small)),
        ],
        "MEG sensor topomaps": [("MEG r, S1", plot_sensor_topomaps(_meg_r(info), info))],
        "Source time courses": [("Three sources", plot_time_courses(
            truth, {"neurofuse": ours, "fMNE": fmne}, [0, 10, 5000], sfreq=50.0))],
        "ECoG": [("Zero-shot", "<p>12 of 16 electrodes significant.</p>")],
        "Synthesized slices": [("Target and cGAN", plot_slice_grid(
            {"target": rng.uniform(size=(3, 8, 8)), "cgan": rng.uniform(size=(3, 8, 8))},
            n_images=3))],
    }
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("old report")
    path = make_report(out, title="neurofuse demo", sections=sections, results=results)
    assert path == out and out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temp left over
    page = out.read_text()
    assert "neurofuse demo" in page
    for title in REPORT_SECTIONS:
        assert f">{title}</a>" in page, title
    # Sections are laid out in the fixed order, whatever the dict order.
    positions = [page.index(f'id="accordion-collapse-{t.replace(" ", "_")}"') for t in REPORT_SECTIONS]
    assert positions == sorted(positions)
    for title, items in sections.items():
        n_figures = sum(isinstance(item[1], Figure) for item in items)
        assert _section_html(page, title).count("data:image/png;base64,") >= n_figures, title
    tables = _section_html(page, "Tables")
    for method in ("neurofuse", "fMNE", "MEG ridge ceiling"):
        assert method in tables and method in _section_html(page, "Summary")
    assert "<td>inf</td>" in tables
    assert "Mean Pearson r with the ground truth" in _section_html(page, "Source recovery")
    plt.close("all")


def test_make_report_checks(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old report")
    with pytest.raises(ValueError, match="Unknown report section"):
        make_report(out, sections={"Results": [("x", "<p>x</p>")]})
    with pytest.raises(TypeError, match="must be a matplotlib Figure"):
        make_report(out, sections={"Summary": [("x", 3)]})
    with pytest.raises(ValueError, match=r"\.html"):
        make_report(tmp_path / "report.pdf", sections={})
    assert out.read_text() == "old report"  # failures never touch the previous report
    # An empty report is still a valid page.
    make_report(out, sections=None)
    assert "<html" in out.read_text().lower()
