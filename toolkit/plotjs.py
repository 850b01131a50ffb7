"""The charting library the HTML reports inline: plotly.js's *basic* bundle, vendored.

Python plotly inlines its full plotly.js (4.6 MB) into every page; the basic bundle (scatter,
bar, pie: every chart asrtk draws; histograms are drawn as bars of precomputed bins) is 1.2 MB,
so a report with its data stays under 1.5 MB and still opens offline. The bundle's version
matches the plotly.js that the installed Python plotly targets (checked by a unit test), so the
figure JSON it writes is what the bundle reads.

Source: npm ``plotly.js-basic-dist-min`` 4.1.1 (MIT, ``toolkit/_vendor/plotly.js-LICENSE``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

VERSION = "4.1.1"
BUNDLE = Path(__file__).with_name("_vendor") / f"plotly-basic-{VERSION}.min.js"


@lru_cache(maxsize=1)
def script_tag() -> str:
    """``<script>`` with the whole bundle, once per page, before any figure's div."""
    return f'<script type="text/javascript">{BUNDLE.read_text(encoding="utf-8")}</script>'


# plotly's named templates carry defaults for every trace type (~10 KB a figure): this is the part we use
LAYOUT = {
    "template": None,
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "font": {"color": "#2a3f5f"},
    "xaxis": {"gridcolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "linecolor": "#EBF0F8"},
    "yaxis": {"gridcolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "linecolor": "#EBF0F8"},
    "colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880"],
}


def compact(values: list, digits: int = 4) -> list:
    """Numbers to ``digits`` significant digits (plotted, not tabulated: the tables keep full precision)."""
    return [v if v is None or not isinstance(v, float) else float(f"{v:.{digits}g}") for v in values]


def figure_html(fig: object, div_id: str | None = None, config: dict | None = None) -> str:
    """A figure's div and its ``Plotly.newPlot`` call, without any library (see :func:`script_tag`)."""
    kw: dict = {"full_html": False, "include_plotlyjs": False}
    if div_id is not None:
        kw["div_id"] = div_id
    if config is not None:
        kw["config"] = config
    return fig.to_html(**kw)  # type: ignore[attr-defined]


def page(title: str, body: str) -> str:
    """A whole self-contained page around figure divs."""
    import html

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"{script_tag()}</head><body>{body}</body></html>\n")
