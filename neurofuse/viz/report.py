"""The HTML report of a run (``mne.Report``): figures, captions and result tables in fixed sections.

:func:`make_report` lays the content out in these sections, in this order (each optional):

===================== =====================================================================
"Summary"             a paragraph and the result tables
"Source recovery"     recovery bars (Fig. 3) and their table
"Cortical maps"       surface maps: prediction r, temporal r of source recovery (ours, fMNE,
                      fMNE+smooth)
"MEG sensor topomaps" per-sensor r (Fig. 2, top)
"Source time courses" ground truth vs estimates
"Training curves"     loss and validation r per epoch
"ECoG"                zero-shot and trained prediction of ECoG (Fig. 4)
"Synthesized slices"  MEG→fMRI slices: targets vs methods, and over training (system C)
"Tables"              ``results.json`` as HTML tables (:func:`results_tables_html`)
===================== =====================================================================
"""

from __future__ import annotations

import html
import math
import numbers
from pathlib import Path

from .._io import atomic_path
from .._logging import logger, verbose
from .figures import format_cnr

#: Section titles of :func:`make_report`, in the order they appear.
REPORT_SECTIONS = (
    "Summary",
    "Source recovery",
    "Cortical maps",
    "MEG sensor topomaps",
    "Source time courses",
    "Training curves",
    "ECoG",
    "Synthesized slices",
    "Tables",
)

#: Leading columns of the two result tables (any other keys follow, in order of appearance).
SOURCE_RECOVERY_COLUMNS = ("method", "meg_cnr", "fmri_cnr", "temporal_r", "spatial_r")
PREDICTION_COLUMNS = ("subject", "modality", "method", "r_mean", "r_sd")
_TABLE_TITLES = {"source_recovery": "Source recovery", "prediction": "Predictive performance"}


def _format_cell(key, value) -> str:
    if key.endswith("cnr") and value is not None and not isinstance(value, bool):
        try:
            return html.escape(format_cnr(value))
        except (TypeError, ValueError):
            pass
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    return html.escape(str(value))


def rows_to_html(rows, columns=(), *, caption=None) -> str:
    """One list of dicts as an HTML table (text escaped; CNR ``inf`` written as ``inf``).

    Parameters
    ----------
    rows : list of dict
    columns : sequence of str
        Columns shown first; keys not listed follow in order of appearance.
    caption : str | None
        Table caption.
    """
    keys = list(columns)
    for row in rows:
        keys += [k for k in row if k not in keys]
    out = ['<table class="table table-sm table-striped table-hover">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
               + "</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td>{_format_cell(str(k), row.get(k)) if k in row else ''}</td>" for k in keys)
            + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def results_tables_html(results: dict) -> str:
    """Render the ``results.json`` structure as HTML tables.

    Parameters
    ----------
    results : dict
        ``{"source_recovery": [{"method", "meg_cnr", "fmri_cnr", "temporal_r",
        "spatial_r"}, ...], "prediction": [{"subject", "modality", "method", "r_mean",
        "r_sd"}, ...]}``; either list may be missing. Other lists of dicts are rendered
        after them under their key; other entries are ignored.

    Returns
    -------
    html : str
        One ``<h4>`` heading and ``<table>`` per list; text is HTML-escaped, CNR infinity
        (``inf``, ``'inf'`` or ``'Infinity'``) is written ``inf`` and r with 3 decimals.
    """
    if not isinstance(results, dict):
        raise TypeError(f"'results' must be a dict (the content of results.json), got {type(results).__name__}.")
    parts = []
    columns = {"source_recovery": SOURCE_RECOVERY_COLUMNS, "prediction": PREDICTION_COLUMNS}
    keys = [k for k in columns if k in results] + [k for k in results if k not in columns]
    for key in keys:
        rows = results[key]
        if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
            continue
        heading = _TABLE_TITLES.get(key, str(key).replace("_", " ").capitalize())
        parts.append(f"<h4>{html.escape(heading)}</h4>")
        if rows:
            parts.append(rows_to_html(rows, columns.get(key, ())))
        else:
            parts.append("<p><em>No results.</em></p>")
    if not parts:
        parts.append("<p><em>No result tables.</em></p>")
    return '<div class="neurofuse-results">\n' + "\n".join(parts) + "\n</div>"


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


@verbose
def make_report(out_html, *, title="neurofuse demo", sections=None, results=None,
                image_format="png", close_figures=True, verbose=None) -> Path:
    """Build an HTML report with ``mne.Report`` and save it atomically.

    Parameters
    ----------
    out_html : str | Path
        Output file, ending in ``.html``; its folder is created if needed. An existing file
        is replaced only once the new report is completely written.
    title : str
        Report title.
    sections : dict of str -> list of tuple | None
        Section title -> items. Titles must be among :data:`REPORT_SECTIONS` ("Summary",
        "Source recovery", "Cortical maps", "MEG sensor topomaps", "Source time courses",
        "Training curves", "ECoG", "Synthesized slices", "Tables"); they are laid out in that
        order whatever the dict order. Each item is ``(title, content)`` or ``(title, content, caption)`` where
        ``content`` is a matplotlib Figure, an HTML string, or the ``Path`` of an image file.
    results : dict | None
        ``results.json`` content; if given, :func:`results_tables_html` is appended to the
        "Tables" section.
    image_format : 'png' | 'svg' | 'webp'
        How figures are embedded.
    close_figures : bool
        Close pyplot-managed figures once embedded (figures from :mod:`neurofuse.viz` are not
        managed by pyplot and are simply released).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    path : Path
        The written report.
    """
    import mne
    from matplotlib.figure import Figure

    out_html = Path(out_html).expanduser()
    if out_html.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"'out_html' must end in .html, got '{out_html}'.")
    sections = dict(sections or {})
    unknown = [s for s in sections if s not in REPORT_SECTIONS]
    if unknown:
        raise ValueError(
            f"Unknown report section(s) {unknown}: expected titles among {list(REPORT_SECTIONS)}."
        )
    if results is not None:
        sections["Tables"] = list(sections.get("Tables", [])) + [
            ("Results", results_tables_html(results))]

    report = mne.Report(title=title, verbose="error")
    figures = []
    n_items = 0
    for section in REPORT_SECTIONS:
        items = sections.get(section)
        if not items:
            continue
        tag = _slug(section)
        for i, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise TypeError(
                    f"Items of section {section!r} must be (title, content) or (title, content, "
                    f"caption) tuples; item {i} is {type(item).__name__}."
                )
            item_title, content = str(item[0]), item[1]
            caption = item[2] if len(item) == 3 else None
            if isinstance(content, Figure):
                report.add_figure(content, title=item_title, caption=caption, section=section,
                                  image_format=image_format, tags=(tag,))
                figures.append(content)
            elif isinstance(content, str):
                body = content if caption is None else f"{content}\n<p>{html.escape(caption)}</p>"
                report.add_html(body, title=item_title, section=section, tags=(tag,))
            elif isinstance(content, Path):
                report.add_image(content, title=item_title, caption=caption, section=section,
                                 tags=(tag,))
            else:
                raise TypeError(
                    f"The content of item {item_title!r} in section {section!r} must be a "
                    f"matplotlib Figure, an HTML string or an image Path, got "
                    f"{type(content).__name__}."
                )
            n_items += 1
    with atomic_path(out_html, what="HTML report") as tmp:
        report.save(tmp, overwrite=True, open_browser=False, verbose="error")
    logger.info("Wrote the report (%d items) to %s", n_items, out_html)
    if close_figures:
        import matplotlib.pyplot as plt

        for fig in figures:
            plt.close(fig)
    return out_html
