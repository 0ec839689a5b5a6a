"""Figures and the HTML report: surface maps (nilearn, embedded fsaverage5), MEG sensor
topomaps (MNE), time courses, training curves, source-recovery bars, fMRI slice grids, and
``mne.Report``.

All figures are ``matplotlib.figure.Figure`` objects rendered with Agg (no display needed).
"""

from .ecog import ecog_report_items, plot_electrode_map, plot_fraction_curve
from .figures import (
    format_cnr,
    plot_recovery_bars,
    plot_sensor_topomaps,
    plot_time_courses,
    plot_training_curves,
)
from .report import REPORT_SECTIONS, make_report, results_tables_html, rows_to_html
from .scaling import plot_scaling_curves
from .slices import plot_slice_grid, plot_slice_snapshots
from .surface import plot_source_map, spread_to_mesh

__all__ = [
    "REPORT_SECTIONS", "ecog_report_items", "format_cnr", "make_report", "plot_electrode_map",
    "plot_fraction_curve", "plot_recovery_bars", "plot_scaling_curves", "plot_sensor_topomaps",
    "plot_slice_grid", "plot_slice_snapshots", "plot_source_map",
    "plot_time_courses", "plot_training_curves", "results_tables_html", "rows_to_html",
    "spread_to_mesh",
]
