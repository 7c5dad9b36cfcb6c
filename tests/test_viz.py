"""Sample grids, LC heatmaps and PNG writing (lcflow_tf.viz)."""

import os
import stat

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import viz


def test_to_display_maps_bins_linearly():
  bins = 17
  k = np.arange(bins)
  x = (k + 0.5) / bins
  np.testing.assert_array_equal(viz.to_display(x, bins), np.round(k * 255 / 16).astype(np.uint8))
  np.testing.assert_array_equal(viz.to_display([np.nan, -0.2, 1.5, np.inf], bins),
                                [0, 0, 255, 255])


def test_image_grid_layout():
  images = np.stack([np.full((2, 3, 1), 10 * (i + 1), np.uint8) for i in range(5)])
  grid = viz.image_grid(images, columns=3, pad=1, scale=2, pad_value=255)
  assert grid.shape == (2 * (4 + 1) + 1, 3 * (6 + 1) + 1, 1) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[1:5, 1:7], 10)        # image 0, magnified x2
  np.testing.assert_array_equal(grid[1:5, 8:14], 20)       # image 1
  np.testing.assert_array_equal(grid[6:10, 1:7], 40)       # image 3 starts row 2
  np.testing.assert_array_equal(grid[6:10, 15:21], 255)    # empty sixth cell stays padding
  assert (grid[0] == 255).all() and (grid[:, 7] == 255).all()
  with pytest.raises(ValueError, match=r"images must be \[N >= 1, H, W, C in \(1, 3\)\]"):
    viz.image_grid(np.zeros((2, 4, 4, 2), np.uint8))


def test_colorize_endpoints_and_nan():
  rgb = viz.colorize(np.array([[0.0, 1.0, np.nan, 0.5]]))
  assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[0, 0], [68, 1, 84])      # viridis start
  np.testing.assert_array_equal(rgb[0, 1], [253, 231, 37])   # viridis end
  np.testing.assert_array_equal(rgb[0, 2], [128, 128, 128])  # NaN grey
  np.testing.assert_array_equal(rgb[0, 3], [33, 144, 141])   # midpoint anchor
  constant = viz.colorize(np.full((2, 2), 3.0))
  assert (constant == constant[0, 0]).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_save_png_round_trip(tmp_path, channels):
  array = np.random.default_rng(0).integers(0, 256, (5, 7, channels)).astype(np.uint8)
  path = viz.save_png(array, str(tmp_path / "sub" / "a.png"))
  with Image.open(path) as image:
    back = np.asarray(image)
    assert image.mode == ("L" if channels == 1 else "RGB")
  np.testing.assert_array_equal(back.reshape(array.shape), array)
  assert os.listdir(tmp_path / "sub") == ["a.png"]  # no temporary file left
  assert stat.S_IMODE(os.stat(path).st_mode) & 0o044  # readable by others (umask), not 0600
  with pytest.raises(ValueError, match=r"save_png: expected uint8"):
    viz.save_png(array.astype(np.float32), str(tmp_path / "b.png"))


def _flow_with_known_statistics(levels=3):
  """8x8x1 glow whose statistics rank channels by index (lc keeps the highest indices)."""
  flow = flows.build_flow((8, 8, 1), levels=levels, steps_per_level=1, hidden_channels=4,
                          split="lc")
  stats = flow.lc_statistics
  for i, shape in enumerate(stats.event_shapes):
    stats.mean_lc[i].assign(np.broadcast_to(np.arange(shape[-1], dtype=np.float32), shape))
  stats.count.assign(10.0)
  flow.fix_split()
  return flow


def test_lc_maps_in_image_coordinates():
  flow = _flow_with_known_statistics(levels=3)
  levels, depth = viz.lc_maps(flow)
  assert len(levels) == 2 and depth.shape == (8, 8, 1)
  keep0, keep1 = levels[0]["keep"], levels[1]["keep"]
  assert np.isfinite(keep0).all() and keep0.sum() == 32  # half of the 64 pixels stay
  # Level 1 sees exactly the pixels kept at level 0; half of those stay there.
  np.testing.assert_array_equal(np.isfinite(keep1), keep0 == 1)
  assert np.nansum(keep1) == 16
  # Squeeze channel order (0,0),(0,1),(1,0),(1,1): channels 2, 3 (bottom row of each 2x2
  # block) have the highest score, so they stay at level 0.
  np.testing.assert_array_equal(keep0[..., 0], np.tile([[0.0], [1.0]], (4, 8)))
  np.testing.assert_array_equal(levels[0]["mean_lc"][..., 0], np.tile([[0, 1], [2, 3]], (4, 4)))
  assert np.count_nonzero(depth == 0) == 32 and np.count_nonzero(depth == 1) == 16
  assert np.count_nonzero(depth == 2) == 16
  # Consistent with lc.to_image_coordinates directly.
  np.testing.assert_array_equal(
      keep1, lc.to_image_coordinates(flow.junctions, 1, lc.keep_masks(flow.junctions)[1]))


def test_lc_heatmap_png(tmp_path):
  flow = _flow_with_known_statistics(levels=3)
  panel = viz.lc_heatmap(flow, 0, scale=4)
  assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3
  assert panel.shape[0] >= 32 and panel.shape[1] >= 2 * 32
  paths = viz.write_lc_heatmaps(flow, str(tmp_path))
  assert [os.path.basename(p) for p in paths] == ["lc_level0.png", "lc_level1.png",
                                                  "lc_overview.png"]
  for p in paths:
    with Image.open(p) as image:
      assert image.mode == "RGB" and image.width > 32 and image.height > 32
  with pytest.raises(ValueError, match=r"level must be in 0..1"):
    viz.lc_heatmap(flow, 2)


def test_lc_heatmap_rgb_images_has_a_row_per_channel():
  flow = flows.build_flow((8, 8, 3), levels=2, steps_per_level=1, hidden_channels=4)
  one = viz.lc_heatmap(flow, 0, scale=2)
  flow1 = flows.build_flow((8, 8, 1), levels=2, steps_per_level=1, hidden_channels=4)
  assert one.shape[0] > 2.5 * viz.lc_heatmap(flow1, 0, scale=2).shape[0]


def test_sample_grids(tmp_path):
  flow = flows.build_flow((8, 8, 1), levels=2, steps_per_level=1, hidden_channels=4)
  flow.initialize(tf.random.stateless_uniform([16, 8, 8, 1], seed=[1, 2]))
  paths = viz.write_sample_grids(flow, 17, str(tmp_path), temperatures=(0.0, 1.0),
                                 num_samples=9, seed=3)
  assert sorted(paths) == [0.0, 1.0]
  assert os.path.basename(paths[0.0]) == "samples_t0.00.png"
  with Image.open(paths[0.0]) as image:
    grid = np.asarray(image)
  scale = viz.auto_scale(3 * 8)
  cell = 8 * scale
  assert grid.shape == (3 * (cell + 1) + 1,) * 2
  tiles = [grid[1 + r * (cell + 1):1 + r * (cell + 1) + cell,
                1 + c * (cell + 1):1 + c * (cell + 1) + cell] for r in range(3) for c in range(3)]
  for tile in tiles[1:]:  # temperature 0: every sample is the decoded zero latent
    np.testing.assert_array_equal(tile, tiles[0])
  with Image.open(paths[1.0]) as image:
    hot = np.asarray(image)
  assert not np.array_equal(hot, grid)


def test_robust_range_leaves_out_a_few_extreme_elements():
  values = np.linspace(0.0, 1.0, 400).reshape(20, 20)
  values[3, 4], values[5, 6] = -60.0, np.nan
  lo, hi = viz.robust_range(values)
  assert 0.0 <= lo < 0.02 and 0.98 < hi <= 1.0
  rgb = viz.colorize(values, lo, hi)
  assert len({tuple(p) for p in rgb.reshape(-1, 3)}) > 100  # not one colour
  assert viz.robust_range(np.full((2, 2), np.nan)) == (0.0, 0.0)
