"""``medssl atlas``: a 2D map of an ``embed`` folder's subjects, as figures and as one HTML page.

The page is a single file that opens offline: points are SVG circles, data and thumbnails (base64
PNG) are inlined, and hovering a point shows its subject ID, its value and its image as the encoder
saw it. Past ``max_points`` subjects, the map is computed on a seeded random sample and says so:
a page of a million points (and a million images to read) would not open.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import to_hex
from PIL import Image

from medssl.analysis.embed import read_embeddings, subject_images
from medssl.analysis.maps import embedding_map, plot_map
from medssl.data.tables import is_numeric, read_table
from medssl.report.figures import thumbnail

THUMBNAIL_PX = 64  # tall; a 3D volume's three mid-slices make it three times as wide
CATEGORY_LIMIT = 10  # matplotlib's colour cycle: past it, colours repeat; the rarest are lumped
MIN_CONTINUOUS_VALUES = 10  # fewer distinct numbers are codes (class index, grade, site): groups
MISSING_COLOUR = to_hex("lightgrey")  # as plot_map draws missing values
WIDTH, HEIGHT, MARGIN = 760, 560, 12  # the SVG map, in pixels

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1rem 2rem; color: #222; }
#map { border: 1px solid #ddd; display: block; margin-top: .5rem; }
#map circle:hover { stroke: #000; stroke-width: 1.5; }
#legend { font-size: .85rem; margin-top: .5rem; }
.key { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 1em; }
.bar { display: inline-block; width: 10em; height: .8em; margin: 0 .4em; vertical-align: middle; }
#tip { position: fixed; background: #fff; border: 1px solid #999; padding: .3rem; font-size: .8rem; pointer-events: none; }
#tip img { display: block; margin-top: .2rem; }
"""

SCRIPT = """
const data = JSON.parse(document.getElementById("data").textContent);
const select = document.getElementById("column"), map = document.getElementById("map"), tip = document.getElementById("tip");
function paint() {
  const column = data.columns[select.value];
  map.querySelectorAll("circle").forEach((dot, i) => dot.setAttribute("fill", column.colours[i]));
  document.getElementById("legend").innerHTML = column.legend;
}
map.addEventListener("mouseover", event => {
  const i = event.target.dataset.i, img = tip.querySelector("img");
  if (i === undefined) return;
  tip.querySelector("b").textContent = data.ids[i];
  tip.querySelector("span").textContent = select.value + ": " + (data.columns[select.value].values[i] || "(missing)");
  img.hidden = !data.thumbnails[i];  // its file could not be read when the page was made
  if (data.thumbnails[i]) img.src = data.thumbnails[i];
  tip.style.left = event.clientX + 14 + "px";
  tip.style.top = event.clientY + 14 + "px";
  tip.hidden = false;
});
map.addEventListener("mouseout", () => { tip.hidden = true; });
select.addEventListener("change", paint);
paint();
"""


@dataclass(frozen=True)
class Colouring:
    groups: np.ndarray  # as plot_map takes them: group names, or floats for a colour scale
    colours: list[str]  # one hex colour per point, for the page
    legend: str  # HTML

    @property
    def kind(self) -> str:
        return "continuous" if np.issubdtype(self.groups.dtype, np.floating) else "categorical"


def build_atlas(
    embedding_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str = "umap",
    color_by: Sequence[str] = ("label",),
    covariates: str | Path | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> dict:
    """Writes atlas.csv (subject_id, x, y and the colour columns), one atlas_<column>.png per colour
    column and atlas.html to ``out_dir``. ``covariates``: a CSV joined by subject_id, whose columns
    can colour the map too."""
    embedding_dir, out_dir = Path(embedding_dir), Path(out_dir)
    metadata, features = read_embeddings(embedding_dir, covariates)
    columns = _colour_columns(metadata, [color_by] if isinstance(color_by, str) else color_by)
    rows = _sample(len(features), max_points, seed)
    coords = embedding_map(features[rows], method, seed)
    ids, shown = metadata["subject_id"][rows], {c: metadata[c][rows] for c in columns}
    colourings = {c: _colouring(values) for c, values in shown.items()}
    thumbnails = {s: _png_data_uri(image.numpy()) for s, image in subject_images(embedding_dir, ids)}
    result = {
        "method": method,
        "subjects": len(features),
        "shown": len(rows),
        "subsampled": len(rows) < len(features),
        "seed": seed,
        "colour_columns": {c: colourings[c].kind for c in columns},
        "missing_covariates": _missing_covariates(covariates, metadata["subject_id"]) if covariates else 0,
        "without_thumbnail": int(sum(s not in thumbnails for s in ids)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "atlas.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["subject_id", "x", "y", *columns], *zip(ids, *coords.round(5).T, *shown.values())]
        )
    title = f"{method.upper()} of {len(rows)} subjects" + (
        f" (a sample of {len(features)})" if result["subsampled"] else ""
    )
    for column, colouring in colourings.items():
        safe_name = re.sub(r"[^\w.-]", "_", column)  # a column may be called 'BMI (kg/m2)'
        plot_map(coords, colouring.groups, f"{title}, by {column}", out_dir / f"atlas_{safe_name}.png")
    _write_page(
        out_dir / "atlas.html",
        _note(result, covariates),
        ids,
        coords,
        shown,
        colourings,
        [thumbnails.get(s, "") for s in ids],
    )
    return result


def _colour_columns(metadata: dict[str, np.ndarray], requested: Sequence[str]) -> list[str]:
    available = [c for c in metadata if c != "subject_id"]
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise ValueError(
            f"no column {unknown} to colour by; available: {', '.join(available)} (add more with a covariates CSV)"
        )
    return list(dict.fromkeys(requested))


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    """All rows, or a sorted seeded random ``max_points`` of them."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _missing_covariates(covariates: str | Path, subject_ids: np.ndarray) -> int:
    """How many embedded subjects the covariates table does not list (read_embeddings has checked it)."""
    return int((~np.isin(subject_ids, read_table(covariates)["subject_id"])).sum())


def _colouring(values: np.ndarray) -> Colouring:
    """A colour scale when every value present is a number and there are many; groups otherwise."""
    present = values[values != ""]
    if is_numeric(present) and len(np.unique(present.astype(float))) > MIN_CONTINUOUS_VALUES:
        return _continuous(np.array([float(v) if v else np.nan for v in values]))
    return _categorical(values)


def _continuous(numbers: np.ndarray) -> Colouring:
    low, high = np.nanmin(numbers), np.nanmax(numbers)
    scale = matplotlib.colormaps["viridis"]
    scaled = (numbers - low) / ((high - low) or 1)
    colours = [to_hex(scale(s)) if np.isfinite(s) else MISSING_COLOUR for s in scaled]
    gradient = ", ".join(to_hex(scale(t)) for t in np.linspace(0, 1, 6))
    legend = f'{low:.4g}<span class="bar" style="background: linear-gradient(to right, {gradient})"></span>{high:.4g}'
    missing = int(np.isnan(numbers).sum())
    if missing:
        legend += f'<span class="key" style="background:{MISSING_COLOUR}"></span>missing ({missing})'
    return Colouring(numbers, colours, legend)


def _categorical(values: np.ndarray) -> Colouring:
    groups = np.where(values == "", "(missing)", values)
    counts = Counter(groups)
    if len(counts) > CATEGORY_LIMIT:
        kept = [name for name, _ in counts.most_common(CATEGORY_LIMIT - 1)]
        groups = np.where(np.isin(groups, kept), groups, f"other ({len(counts) - len(kept)} values)")
        counts = Counter(groups)
    # plot_map draws the groups in sorted order through the same colour cycle: PNG and page agree
    palette = {name: to_hex(f"C{i}") for i, name in enumerate(sorted(counts))}
    legend = "".join(
        f'<span class="key" style="background:{palette[n]}"></span>{html.escape(n)} ({counts[n]})'
        for n in sorted(counts)
    )
    return Colouring(groups, [palette[g] for g in groups], legend)


def _png_data_uri(image: np.ndarray, height: int = THUMBNAIL_PX) -> str:
    """A (C, *spatial) image in [0, 1] as a small PNG: colour 2D images stay colour, other images
    show their first channel, a 3D volume its three mid-slices."""
    picture = np.moveaxis(image, 0, -1) if image.shape[0] == 3 and image.ndim == 3 else thumbnail(image[0])
    small = Image.fromarray((picture.clip(0, 1) * 255).round().astype(np.uint8))
    small = small.resize((max(1, round(small.width * height / small.height)), height))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _note(result: dict, covariates: str | Path | None) -> str:
    note = f"{result['method'].upper()} map of {result['shown']} subjects"
    if result["subsampled"]:
        note += f": a random sample (seed {result['seed']}) of all {result['subjects']}; the map was computed on the sample only"
    note += "."
    if result["missing_covariates"]:
        note += f" {result['missing_covariates']} of all {result['subjects']} subjects are not in {Path(covariates).name}: their covariates are missing."
    if result["without_thumbnail"]:
        note += f" {result['without_thumbnail']} shown subjects have no image: their file could not be read."
    return note


def _write_page(
    path: Path,
    note: str,
    ids: np.ndarray,
    coords: np.ndarray,
    shown: dict[str, np.ndarray],
    colourings: dict[str, Colouring],
    thumbnails: list[str],
) -> Path:
    low, span = coords.min(0), np.ptp(coords, axis=0)
    unit = (coords - low) / np.where(span > 0, span, 1)
    xs, ys = MARGIN + unit[:, 0] * (WIDTH - 2 * MARGIN), HEIGHT - MARGIN - unit[:, 1] * (HEIGHT - 2 * MARGIN)
    circles = "".join(f'<circle data-i="{i}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for i, (x, y) in enumerate(zip(xs, ys)))
    columns = {
        c: {"values": shown[c].tolist(), "colours": k.colours, "legend": k.legend} for c, k in colourings.items()
    }
    data = json.dumps({"ids": ids.tolist(), "thumbnails": thumbnails, "columns": columns}).replace(
        "</", "<\\/"
    )  # no early </script>
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in colourings)
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Embedding atlas</title><style>{STYLE}</style></head>
<body><h1>Embedding atlas</h1><p>{html.escape(note)} Hover a point to see its subject.</p>
<label>Colour by <select id="column">{options}</select></label><div id="legend"></div>
<svg id="map" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">{circles}</svg>
<div id="tip" hidden><b></b><br><span></span><img alt="image"></div>
<script type="application/json" id="data">{data}</script><script>{SCRIPT}</script></body></html>
""")
    return path
