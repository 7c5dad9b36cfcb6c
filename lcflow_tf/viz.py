"""Pictures of a flow: sample grids and likelihood-contribution heatmaps, as PNG or arrays.

Arrays are `uint8` [H, W, 3] (or [H, W, 1] for grey images), ready for `tf.summary.image`
(add a batch axis) or `save_png`.

LC heatmaps (see `lcflow_tf.lc`): for every junction l, three panels in image coordinates
(`lc.to_image_coordinates` undoes the squeezes and the junctions above):
  1. the running mean LC score of each element reaching junction l (viridis colours; the
     per-level colour range is printed in the title);
  2. the split chosen there: white = stays (goes through more levels), black = factored out;
  3. (once, for the whole model) the level at which each image element leaves the flow,
     0 = at the first junction, ..., L-1 = reaches the top (light = deeper).
Elements factored out above level l never reach it and are drawn grey. For images with C > 1
channels each channel is a row of panels.
"""

import os

import numpy as np
from PIL import Image
from PIL import ImageDraw

from lcflow_tf import files
from lcflow_tf import lc

# Viridis sampled at 9 points (matplotlib's colour map, public domain data).
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], np.float64)
_NAN_GREY = (128, 128, 128)
_TITLE_HEIGHT = 12


def to_display(x, num_bins):
  """Model-space images in [0, 1) -> uint8 [N, H, W, C] in 0..255 (bins mapped linearly).

  `k = floor(x * num_bins)` clipped to [0, num_bins), NaN/inf treated as 0, then
  `round(k * 255 / (num_bins - 1))`.
  """
  x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
  k = np.clip(np.floor(x * num_bins), 0, num_bins - 1)
  return np.round(k * 255.0 / (num_bins - 1)).astype(np.uint8)


def image_grid(images, columns=None, pad=1, scale=1, pad_value=255):
  """Tiles uint8 images [N, H, W, C] into one [rows*(H+pad)+pad, ..., C] uint8 array.

  Args:
    images: uint8 [N, H, W, C] with C in {1, 3}.
    columns: images per row (default ceil(sqrt(N))).
    pad: pixels between images (after scaling).
    scale: integer nearest-neighbour magnification of every image.
    pad_value: grey level of the padding.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] < 1:
    raise ValueError(f"image_grid: images must be [N >= 1, H, W, C in (1, 3)], got shape "
                     f"{images.shape}.")
  if not isinstance(scale, int) or scale < 1:
    raise ValueError(f"image_grid: scale must be an int >= 1, got {scale!r}.")
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  h, w = h * scale, w * scale
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), pad_value, np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def auto_scale(height, target=256):
  """Integer magnification that makes an image of `height` pixels about `target` tall."""
  return max(1, int(round(target / max(height, 1))))


def save_png(array, path):
  """Writes a uint8 [H, W, 1 or 3] array as PNG at `path`, atomically (temp file + rename)."""
  array = np.asarray(array)
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in (1, 3):
    raise ValueError(f"save_png: expected uint8 [H, W, 1 or 3], got {array.dtype} "
                     f"{array.shape}.")
  image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array,
                          mode="L" if array.shape[-1] == 1 else "RGB")
  with files.atomic_write(path, "wb", suffix=".png") as f:
    image.save(f, format="PNG")
  return path


def samples_to_grid(x, num_bins):
  """Model-space samples [N, H, W, C] -> one uint8 grid, magnified to ~256 px high."""
  images = to_display(x, num_bins)
  n = images.shape[0]
  columns = int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  return image_grid(images, columns=columns, scale=auto_scale(rows * images.shape[1]))


def sample_grid(flow, num_bins, temperature, num_samples=64, seed=0):
  """A grid (uint8) of `num_samples` samples of `flow` at `temperature`."""
  x = flow.sample(num_samples, temperature=float(temperature), seed=seed).numpy()
  return samples_to_grid(x, num_bins)


def sample_png_name(temperature):
  return f"samples_t{float(temperature):.2f}.png"


def write_sample_grids(flow, num_bins, out_dir, temperatures=(0.0, 0.5, 0.7, 0.8, 1.0),
                       num_samples=64, seed=0):
  """Writes `samples_t{T:.2f}.png` per temperature; returns {temperature: path}."""
  return {float(t): save_png(sample_grid(flow, num_bins, t, num_samples, seed),
                             os.path.join(out_dir, sample_png_name(t)))
          for t in temperatures}


def colorize(values, vmin=None, vmax=None):
  """Float [H, W] -> uint8 RGB [H, W, 3] with viridis; NaN is grey.

  `vmin`/`vmax` default to the finite minimum and maximum (a constant map is mid-colour).
  """
  values = np.asarray(values, np.float64)
  finite = np.isfinite(values)
  if vmin is None:
    vmin = float(values[finite].min()) if finite.any() else 0.0
  if vmax is None:
    vmax = float(values[finite].max()) if finite.any() else 1.0
  span = vmax - vmin
  t = np.where(finite, (values - vmin) / span if span > 0 else 0.5, 0.0)
  t = np.clip(t, 0.0, 1.0) * (len(_VIRIDIS) - 1)
  low = np.floor(t).astype(int)
  high = np.minimum(low + 1, len(_VIRIDIS) - 1)
  frac = (t - low)[..., None]
  rgb = _VIRIDIS[low] * (1 - frac) + _VIRIDIS[high] * frac
  rgb[~finite] = _NAN_GREY
  return np.round(rgb).astype(np.uint8)


def _grey(values):
  """Float [H, W] in [0, 1] (NaN allowed) -> RGB uint8, NaN grey."""
  values = np.asarray(values, np.float64)
  finite = np.isfinite(values)
  g = np.round(np.clip(np.where(finite, values, 0.0), 0, 1) * 255).astype(np.uint8)
  rgb = np.repeat(g[..., None], 3, axis=-1)
  rgb[~finite] = _NAN_GREY
  return rgb


def lc_maps(flow):
  """Per junction: (mean LC, keep mask) in image coordinates, and the factor-out level map.

  Returns:
    (levels, depth): `levels` is a list, outermost junction first, of dicts with
    `mean_lc` and `keep` float arrays [H, W, C] (NaN where the element left above this
    level); `depth` [H, W, C] is the level at which each element is factored out (L-1 for
    the elements that reach the top). Meaningful once statistics were collected (the mean
    LC is zero before).
  """
  stats = flow.lc_statistics
  masks = lc.keep_masks(flow.junctions)
  depth = np.full(flow.image_shape, float(len(flow.junctions)))
  levels = []
  for level, mask in enumerate(masks):
    mean_lc = lc.to_image_coordinates(flow.junctions, level, stats.mean_lc[level].numpy())
    keep = lc.to_image_coordinates(flow.junctions, level, mask)
    depth = np.where(keep == 0.0, float(level), depth)
    levels.append({"mean_lc": mean_lc, "keep": keep})
  return levels, depth


def _titled(panel, title):
  image = Image.fromarray(panel)
  canvas = Image.new("RGB", (max(image.width, 6 * len(title) + 4), image.height + _TITLE_HEIGHT),
                     (255, 255, 255))
  canvas.paste(image, (0, _TITLE_HEIGHT))
  ImageDraw.Draw(canvas).text((1, 0), title, fill=(0, 0, 0))
  return np.asarray(canvas)


def _hstack(panels, pad=4):
  height = max(p.shape[0] for p in panels)
  out = []
  for i, p in enumerate(panels):
    if p.shape[0] < height:
      p = np.concatenate([p, np.full((height - p.shape[0],) + p.shape[1:], 255, np.uint8)])
    out.append(p)
    if i < len(panels) - 1:
      out.append(np.full((height, pad, 3), 255, np.uint8))
  return np.concatenate(out, axis=1)


def _vstack(panels, pad=4):
  width = max(p.shape[1] for p in panels)
  out = []
  for i, p in enumerate(panels):
    if p.shape[1] < width:
      p = np.concatenate([p, np.full((p.shape[0], width - p.shape[1], 3), 255, np.uint8)], 1)
    out.append(p)
    if i < len(panels) - 1:
      out.append(np.full((pad, width, 3), 255, np.uint8))
  return np.concatenate(out, axis=0)


def _magnify(rgb, scale):
  return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def robust_range(values, percentiles=(1.0, 99.0)):
  """A colour range that a few extreme elements do not stretch until the rest is one colour.

  Args:
    values: a float array (NaN and infinities are left out).
    percentiles: the (low, high) percentiles of the range.

  Returns:
    (low, high) as floats; (0.0, 0.0) when no value is finite.
  """
  finite = np.asarray(values, np.float64)[np.isfinite(values)]
  if not finite.size:
    return 0.0, 0.0
  lo, hi = np.percentile(finite, percentiles)
  return float(lo), float(hi)


def lc_heatmap(flow, level, scale=None):
  """uint8 RGB panels (mean LC | kept) of junction `level` in image coordinates.

  The colours span the 1st to the 99th percentile of the map's values (`robust_range`, given
  in the panel's title); values beyond are drawn in the end colours.
  """
  if not 0 <= level < len(flow.junctions):
    raise ValueError(f"lc_heatmap: level must be in 0..{len(flow.junctions) - 1} (the flow "
                     f"has {len(flow.junctions)} junctions), got {level!r}.")
  levels, _ = lc_maps(flow)
  maps = levels[level]
  h = flow.image_shape[0]
  scale = scale or auto_scale(h, 128)
  rows = []
  for c in range(flow.image_shape[-1]):
    values = maps["mean_lc"][..., c]
    lo, hi = robust_range(values)
    suffix = f" ch{c}" if flow.image_shape[-1] > 1 else ""
    rows.append(_hstack([
        _titled(_magnify(colorize(values, lo, hi), scale),
                f"L{level} LC {lo:.2f}..{hi:.2f}{suffix}"),
        _titled(_magnify(_grey(maps["keep"][..., c]), scale), f"L{level} kept{suffix}"),
    ]))
  return _vstack(rows)


def depth_map(flow, scale=None):
  """uint8 RGB image of the level at which each element is factored out (light = deeper)."""
  _, depth = lc_maps(flow)
  top = max(len(flow.junctions), 1)
  scale = scale or auto_scale(flow.image_shape[0], 128)
  rows = [_titled(_magnify(_grey(depth[..., c] / top), scale),
                  f"exit level 0..{top}" + (f" ch{c}" if flow.image_shape[-1] > 1 else ""))
          for c in range(flow.image_shape[-1])]
  return _vstack(rows)


def lc_overview(flow, scale=None):
  """All junctions' heatmaps side by side plus the depth map, one uint8 RGB image."""
  panels = [lc_heatmap(flow, level, scale) for level in range(len(flow.junctions))]
  return _hstack(panels + [depth_map(flow, scale)], pad=8)


def write_lc_heatmaps(flow, out_dir, scale=None):
  """Writes `lc_level{l}.png` per junction and `lc_overview.png`; returns the paths.

  A flow with a single level has no junction: nothing is written and [] is returned.
  """
  if not flow.junctions:
    return []
  paths = [save_png(lc_heatmap(flow, level, scale), os.path.join(out_dir, f"lc_level{level}.png"))
           for level in range(len(flow.junctions))]
  paths.append(save_png(lc_overview(flow, scale), os.path.join(out_dir, "lc_overview.png")))
  return paths
