"""Small, deterministic PNG bar charts for dataset cards: text lengths, score histograms and the step funnel.

The charts are drawn with Pillow (imported when a chart is drawn, so `import datakit` stays light) on a white
canvas with the default font, and saved without metadata, so the same numbers always give the same bytes.
Every chart is `WIDTH` pixels wide; heights are fixed per chart kind (see `lengths_size`, `scores_size`,
`funnel_size`), so a card can state them and a test can check them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # Pillow is imported where a chart is drawn
    from PIL import Image, ImageDraw, ImageFont

WIDTH = 640
LENGTHS_HEIGHT = 360
SCORE_PANEL_HEIGHT = 240  # one panel per score column, stacked
FUNNEL_HEADER = 56  # title and margins above and below the funnel's bars
FUNNEL_ROW = 28  # one bar per step
BINS = 20  # histogram bars for continuous values
MAX_DISCRETE = 20  # integer-valued scores with at most this many distinct values get one bar per value

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
BAR = (66, 114, 176)
MUTED = (110, 110, 110)
FONT_SIZE = 12
TITLE_SIZE = 14


def lengths_size() -> tuple[int, int]:
    """Width and height of `plots/lengths.png`."""
    return WIDTH, LENGTHS_HEIGHT


def scores_size(columns: int) -> tuple[int, int]:
    """Width and height of `plots/scores.png` for that many score columns."""
    return WIDTH, SCORE_PANEL_HEIGHT * columns


def funnel_size(steps: int) -> tuple[int, int]:
    """Width and height of `plots/funnel.png` for that many steps."""
    return WIDTH, FUNNEL_HEADER + FUNNEL_ROW * steps


def length_histogram(lengths: np.ndarray, title: str, unit: str = "characters") -> Image.Image:
    """A histogram of text lengths (non-negative integers): up to `BINS` bars of equal, round width from 0."""
    from PIL import Image, ImageDraw

    lengths = np.asarray(lengths, dtype=np.int64)
    image = Image.new("RGB", lengths_size(), BACKGROUND)
    top = int(lengths.max()) if lengths.size else 0
    width = _round_step(max(top + 1, 1) / BINS)
    edges = np.arange(0, top + width + 1, width, dtype=np.float64)
    counts, _ = np.histogram(lengths, bins=edges)
    labels = [_number(e) for e in edges]
    _histogram(ImageDraw.Draw(image), (0, 0, WIDTH, LENGTHS_HEIGHT), counts, labels,
               f"{title} (n={lengths.size:,})", unit)
    return image


def score_histograms(scores: Mapping[str, np.ndarray]) -> Image.Image:
    """One histogram panel per score column, stacked in the order given. Integer scores with few distinct
    values (ratings) get one bar per value; other scores get `BINS` equal bins between their least and
    greatest value. Missing values (NaN) are left out and the panel title gives how many values it shows."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", scores_size(len(scores)), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i, (name, values) in enumerate(scores.items()):
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        counts, labels = _score_bins(values)
        box = (0, i * SCORE_PANEL_HEIGHT, WIDTH, (i + 1) * SCORE_PANEL_HEIGHT)
        _histogram(draw, box, counts, labels, f"{name} (n={values.size:,})", name)
    return image


def funnel_chart(steps: Sequence[Mapping[str, Any]]) -> Image.Image:
    """Horizontal bars of the rows left after each step (`out`), in step order, scaled to the largest count."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", funnel_size(len(steps)), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, title_font = _fonts()
    draw.text((WIDTH // 2, 10), "Rows left after each step", fill=INK, font=title_font, anchor="mt")
    label_width = 150
    left, right = label_width + 10, WIDTH - 70
    largest = max([int(s.get("out") or 0) for s in steps] + [int(s.get("in") or 0) for s in steps] + [1])
    for i, step in enumerate(steps):
        y = FUNNEL_HEADER - 20 + i * FUNNEL_ROW
        out = int(step.get("out") or 0)
        name = _shorten(str(step.get("step", "")), font, label_width)
        draw.text((label_width, y + FUNNEL_ROW // 2), name, fill=INK, font=font, anchor="rm")
        end = left + round((right - left) * out / largest)
        if out:
            draw.rectangle((left, y + 5, max(end, left + 1), y + FUNNEL_ROW - 5), fill=BAR)
        draw.text((max(end, left) + 6, y + FUNNEL_ROW // 2), f"{out:,}", fill=INK, font=font, anchor="lm")
    draw.line((left, FUNNEL_HEADER - 22, left, FUNNEL_HEADER - 18 + FUNNEL_ROW * len(steps)), fill=MUTED)
    return image


def save_png(image: Image.Image, path: Path) -> Path:
    """Save `image` as a compact PNG with no metadata (no time stamps), so equal images give equal bytes."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    # A 64-colour palette keeps flat charts small; median cut without dithering is deterministic.
    compact = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    compact.save(path, format="PNG", optimize=True)
    return path


def _score_bins(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Counts and one label per bin edge (or per bar, for discrete values) for a score histogram."""
    if values.size == 0:
        return np.zeros(1, dtype=np.int64), ["", ""]
    low, high = float(values.min()), float(values.max())
    integral = bool(np.all(values == np.round(values)))
    if integral and high - low < MAX_DISCRETE:
        points = np.arange(low, high + 1)
        counts = np.array([(values == p).sum() for p in points], dtype=np.int64)
        return counts, [_number(p) for p in points]
    if high == low:
        return np.array([values.size], dtype=np.int64), [_number(low), _number(high)]
    counts, edges = np.histogram(values, bins=BINS, range=(low, high))
    return counts, [_number(e) for e in edges]


def _histogram(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], counts: np.ndarray,
               labels: list[str], title: str, x_label: str) -> None:
    """Draw a bar chart in `box`. `labels` has one entry per bin edge (len(counts) + 1: ticks between bars)
    or one per bar (len(counts): ticks under bars); about five of them are shown."""
    font, title_font = _fonts()
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 64, x1 - 20, y0 + 34, y1 - 48
    draw.text(((x0 + x1) // 2, y0 + 10), title, fill=INK, font=title_font, anchor="mt")
    peak = int(counts.max()) if counts.size else 0
    ceiling = _round_step(peak / 4) * 4 if peak else 1
    for k in range(5):  # horizontal grid lines with the row counts
        value = ceiling * k / 4
        y = bottom - (bottom - top) * k / 4
        draw.line((left, y, right, y), fill=GRID)
        draw.text((left - 6, y), _number(value), fill=MUTED, font=font, anchor="rm")
    n = max(len(counts), 1)
    slot = (right - left) / n
    for i, count in enumerate(counts):
        if count:
            height = (bottom - top) * int(count) / ceiling
            draw.rectangle((round(left + i * slot + 1), round(bottom - height), round(left + (i + 1) * slot - 1),
                            bottom), fill=BAR)
    draw.line((left, bottom, right, bottom), fill=INK)
    draw.line((left, top, left, bottom), fill=INK)
    between = len(labels) == len(counts) + 1
    shown = _spread(len(labels), 5)
    for i in shown:
        x = left + i * slot if between else left + (i + 0.5) * slot
        draw.line((x, bottom, x, bottom + 4), fill=INK)
        draw.text((x, bottom + 7), labels[i], fill=MUTED, font=font, anchor="mt")
    draw.text(((left + right) // 2, y1 - 8), x_label, fill=INK, font=font, anchor="mb")
    draw.text((x0 + 10, (top + bottom) // 2), "rows", fill=INK, font=font, anchor="lm")


def _spread(count: int, most: int) -> list[int]:
    """Up to `most` indices out of `count`, from the first at one even stride (so tick labels are evenly spaced)."""
    stride = max(1, math.ceil((count - 1) / (most - 1))) if most > 1 else count
    return list(range(0, count, stride))


def _round_step(raw: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least `raw` (and at least 1)."""
    if raw <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _number(value: float) -> str:
    """A short tick label: integers with thousands separators, other values with three significant digits."""
    if float(value).is_integer() and abs(value) < 1e9:
        return f"{int(value):,}"
    return f"{value:.3g}"


def _shorten(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """`text`, cut with an ellipsis so it fits in `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _fonts() -> tuple[Any, Any]:
    """Pillow's bundled default font at the body and title sizes (a bitmap font where FreeType is missing)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=FONT_SIZE), ImageFont.load_default(size=TITLE_SIZE)
