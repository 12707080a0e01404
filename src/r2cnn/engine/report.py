"""What people read: the confusion matrix as a PNG (PIL only) and plain-text tables."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                  cell: int | None = None) -> Path:
    """Draw the row-normalised confusion matrix (rows: true class, columns: predicted) as a PNG.

    Cells are white (0) to dark blue (1); class names label the rows and columns when there is room
    (cells of at least 10 px); the diagonal's values are written in the cell when cells are large.
    """
    from PIL import Image, ImageDraw

    from r2cnn.data.formats.common import AtomicWriter

    k = len(classes)
    cell = cell or max(2, min(40, 800 // max(k, 1)))
    labelled = cell >= 10
    margin = (max((len(c) for c in classes), default=0) * 6 + 8) if labelled else 0
    size = margin + k * cell + 1
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for t, row in enumerate(confusion):
        total = sum(row) or 1
        for p, n in enumerate(row):
            v = n / total
            shade = (int(255 - 225 * v), int(255 - 180 * v), 255)
            x0, y0 = margin + p * cell, margin + t * cell
            draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=shade, outline=(220, 220, 220) if labelled else None)
            if cell >= 28 and t == p:
                draw.text((x0 + 2, y0 + cell // 3), f"{v:.2f}", fill="white" if v > 0.5 else "black")
    if labelled:
        for i, name in enumerate(classes):
            draw.text((2, margin + i * cell + cell // 2 - 5), name, fill="black")
            label = Image.new("RGB", (margin, 12), "white")
            ImageDraw.Draw(label).text((2, 0), name, fill="black")
            img.paste(label.rotate(90, expand=True), (margin + i * cell + cell // 2 - 6, 0))
    path = Path(path)
    with AtomicWriter(path, compress=False) as f:
        img.save(f, format="PNG")
    return path


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A left-aligned plain-text table (Markdown-compatible)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
