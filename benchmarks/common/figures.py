"""Figures of the benchmark records for docs/figures/: one look, one house style.

Figures are drawn with matplotlib's Agg backend (no display), from committed records only
(the scripts' `--figures` modes train nothing), at a size a page shows without scaling
(`WIDTH` inches at `DPI`), and carry their provenance in a footer: the command that redraws
them and the records (with dates) they come from.
"""

import os
import textwrap

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, whatever the environment's backend

# pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import patches
from matplotlib import pyplot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIGURES_DIR = os.path.join(ROOT, "docs", "figures")
WIDTH = 10.0  # inches
DPI = 100
FOOTER_WIDTH = 150  # characters per footer line
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3}
# One colour per model or series, the same in every figure (matplotlib's tab10).
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def new(rows=1, cols=1, height=4.0, **kwargs):
  """(figure, axes) of `rows` x `cols` panels (a 2-d array), `WIDTH` x `height` inches.

  The house style (`STYLE`) becomes matplotlib's default in this process: these figures are
  drawn by the benchmark scripts' own processes (and the tests').
  """
  matplotlib.rcParams.update(STYLE)
  return pyplot.subplots(rows, cols, figsize=(WIDTH, height), dpi=DPI, squeeze=False,
                         **kwargs)


def patch(color, label):
  """A legend entry for a bar of `color`."""
  return patches.Patch(color=color, label=label)


def save(fig, path, footer, legend_inches=0.0):
  """Writes `fig` as PNG to `path` with `footer` (provenance) under the panels; returns path.

  The footer is wrapped to `FOOTER_WIDTH` characters; the panels leave room for it, and for
  `legend_inches` at the top (a figure legend).
  """
  lines = [l for part in footer.split("\n") for l in textwrap.wrap(part, FOOTER_WIDTH)]
  height = fig.get_figheight()
  bottom = (0.1 + 0.13 * len(lines)) / height  # the footer's inches as a fraction
  fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0 - legend_inches / height))
  fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="0.3", ha="left", va="bottom",
           family="monospace")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI, format="png")
  pyplot.close(fig)
  return path
