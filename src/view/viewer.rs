//! The routes of `dvc-stream view TABLE IM1 [IM2]`: a run's table over its images, in the
//! browser, served by the same core as `ereg` ([`super::server::serve`]: token, Host and
//! Origin checks, request limits).
//!
//! - `GET /` — the page (compiled in).
//! - `GET /info` — JSON: the viewed level's shape and bin, the table's columns and length,
//!   each column's colour range (robust percentiles of the converged rows), whether the table
//!   sits on a grid, whether a residual can be drawn, image 1's default contrast, the colour
//!   map's stops (the page draws the colour bar from them).
//! - `GET /slice?axis=A&index=N&lo=L&hi=H` — image 1's slice, grey PNG.
//! - `GET /overlay?column=C&axis=A&index=N&mode=nodes|interp|status&lo=L&hi=H&rst=S` — an
//!   RGBA PNG of the slice's size: the column's colour map, per node (each pixel takes its
//!   nearest node's value) or interpolated (trilinear between grid nodes); rows below return
//!   status S drawn grey; `status` colours the return status itself. Transparent where no node
//!   is near.
//! - `GET /points?axis=A&index=N&column=C` — JSON: the rows near the slice (the plane of grid
//!   nodes nearest to it, or scattered points within half their spacing): row number, position
//!   in the viewed level's voxels, the column's value, the in-plane displacement, the status.
//! - `GET /row?i=K` — JSON: row K, every column.
//! - `GET /residual?axis=A&index=N&lo=L&hi=H&rst=S` — |im1 − im2(Φ(x))| on the slice, where
//!   Φ(x) is the table's field interpolated at x (inverse distance over the 8 nearest rows of
//!   status ≥ S, as `pass-phi-field` interpolates), grey PNG.
//!
//! Only the slice shown is read from the stores (image 2: the box the slice maps into), through
//! the chunk cache, so opening a 2048³ store costs a slice, not a volume. Answers are bounded:
//! a slice larger than [`MAX_SLICE_PIXELS`] and more than [`MAX_POINTS`] rows near a slice are
//! refused with the reason (view a pyramid level with `--bin`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use nalgebra::Vector3;
use ndarray::Array2;

use super::render::{encode_grey, other_axes};
use super::server::{number, query, App, Reply};
use super::slices::encode_rgba;
use crate::field::interpolate::{Neighbours, PhiInterpolator};
use crate::field::PhiField;
use crate::phi::{self, ApplyF};
use crate::store::Volume;

const PAGE: &str = include_str!("view.html");

/// The most pixels a slice may have (4096 × 4096).
pub const MAX_SLICE_PIXELS: usize = 4096 * 4096;
/// The most pixels a residual is computed on (2048 × 2048): each interpolates the field.
pub const MAX_RESIDUAL_PIXELS: usize = 2048 * 2048;
/// The most rows one `/points` answer lists.
pub const MAX_POINTS: usize = 200_000;

/// Viridis at nine stops: the overlay's colours and, sent to the page, its colour bar's.
pub const STOPS: [[u8; 3]; 9] = [
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
/// Rows below the return-status threshold (not converged) are drawn in this grey.
const UNCONVERGED: [u8; 4] = [150, 150, 150, 255];

fn viridis(t: f64) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * 8.0;
    let k = (x.floor() as usize).min(7);
    let f = x - k as f64;
    std::array::from_fn(|c| (STOPS[k][c] as f64 * (1.0 - f) + STOPS[k + 1][c] as f64 * f).round() as u8)
}

/// The colour of a return status (spam's: 2 converged, 1 stopped at the iteration limit or a
/// pixel search's success, 0 or below failed, −5 not run).
fn status_colour(s: f64) -> [u8; 4] {
    match s.round() as i64 {
        2 => [40, 180, 70, 255],
        1 => [240, 200, 40, 255],
        0 | -1 => [240, 130, 30, 255],
        -2 | -3 => [220, 40, 40, 255],
        _ => [130, 60, 200, 255],
    }
}

/// A table's numeric columns, read with `src/field`'s readers (Parquet of any dvc-stream
/// table, or a spam TSV).
pub struct Columns {
    pub names: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

impl Columns {
    pub fn read(path: &Path) -> Result<Columns> {
        if crate::field::format::is_parquet(path) {
            let (names, values) = crate::field::parquet::read_columns(path)?;
            return Ok(Columns { names, values });
        }
        let t = crate::field::tsv::read_table(path)?;
        let values = (0..t.columns.len()).map(|k| t.rows.iter().map(|r| r[k]).collect()).collect();
        Ok(Columns { names: t.columns, values })
    }
    fn get(&self, name: &str) -> Option<&[f64]> {
        self.names.iter().position(|n| n == name).map(|k| self.values[k].as_slice())
    }
    fn len(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }
}

/// Where the rows sit: on a regular grid (node coordinates per axis, full-resolution voxels,
/// and each row's node index), or scattered (labels).
enum Arrangement {
    Grid { axes: [Vec<f64>; 3], node_row: HashMap<[usize; 3], usize> },
    Scattered { radius: f64 },
}

/// What `view` serves.
pub struct ViewState {
    /// Image 1 and image 2 at the viewed level.
    pub im1: Volume,
    pub im2: Option<Volume>,
    pub bin: usize,
    table: Columns,
    /// Row positions in full-resolution voxels (Zpos, Ypos, Xpos).
    positions: Vec<[f64; 3]>,
    arrangement: Arrangement,
    /// The table's Φ field, when it is one (for the residual).
    field: Option<PhiField>,
    contrast: (f32, f32),
    table_name: String,
}

/// The 0.5th and 99.5th percentiles of the finite values, or None.
fn percentiles(mut v: Vec<f64>, lo: f64, hi: f64) -> Option<(f64, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Some((at(lo), at(hi)))
}

/// One slice of a volume across `axis` (rows and columns the two other axes, in Z, Y, X order).
pub fn plane(v: &Volume, axis: usize, index: usize) -> Result<Array2<f32>> {
    let s = v.shape();
    if axis > 2 {
        bail!("axis {axis} does not exist (0, 1, 2 = Z, Y, X)");
    }
    if index >= s[axis] {
        bail!("slice {index} is outside 0..{} on axis {axis}", s[axis]);
    }
    let (a, b) = other_axes(axis);
    if s[a] * s[b] > MAX_SLICE_PIXELS {
        bail!("a slice of {} × {} voxels is more than the {MAX_SLICE_PIXELS} pixels sent: view a pyramid level (--bin)", s[a], s[b]);
    }
    let mut lo = [0i64; 3];
    let mut hi = [s[0] as i64, s[1] as i64, s[2] as i64];
    lo[axis] = index as i64;
    hi[axis] = index as i64 + 1;
    let bx = v.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
    Ok(bx.into_shape_with_order((s[a], s[b])).expect("one voxel thick"))
}

impl ViewState {
    /// Opens the table and checks it against image 1 (full-resolution shape `full_shape`).
    pub fn new(table_path: &Path, im1: Volume, im2: Option<Volume>, bin: usize) -> Result<ViewState> {
        let full_shape = im1.shape();
        let table = Columns::read(table_path)?;
        if table.len() == 0 {
            bail!("{}: the table has no rows", table_path.display());
        }
        let pos: Vec<&[f64]> = ["Zpos", "Ypos", "Xpos"]
            .iter()
            .map(|c| table.get(c).ok_or_else(|| anyhow!("{}: no column '{c}': not a table of points", table_path.display())))
            .collect::<Result<_>>()?;
        // Row 0 of a labels table is the background (spam's convention): no point of its own.
        let background = |i: usize| table.get("Label").is_some_and(|l| l[i] == 0.0);
        let positions: Vec<[f64; 3]> = (0..table.len()).map(|i| if background(i) { [f64::NAN; 3] } else { [pos[0][i], pos[1][i], pos[2][i]] }).collect();
        // A table of another image (a grid beyond it) is a wrong pairing, said at once.
        for (i, p) in positions.iter().enumerate() {
            if (0..3).any(|a| p[a].is_finite() && !(-0.5..full_shape[a] as f64 + 0.5).contains(&p[a])) {
                bail!("{}: row {i} lies at {p:?}, outside image 1 ({:?} voxels): the table is of another image", table_path.display(), full_shape);
            }
        }
        let arrangement = arrangement(&positions);
        // The residual needs Φ in every row; strain and label tables without it have none.
        let field = PhiField::read(table_path).ok().filter(|f| f.len() == table.len());
        // The default contrast from the middle slice of the smallest stored level that still
        // has 256 voxels a side (or the viewed level): what a 2048³ store costs to open is then
        // one small slice, not a layer of full-resolution chunks.
        let sample_bin = im1
            .stored_levels()
            .into_iter()
            .filter(|&b| b >= bin && full_shape.iter().all(|&n| n / b >= 256.min(n / bin)))
            .max()
            .unwrap_or(bin);
        let sample = im1.level(sample_bin)?;
        let im1 = im1.level(bin)?;
        let im2 = im2.map(|v| v.level(bin)).transpose()?;
        let mid = plane(&sample, 0, sample.shape()[0] / 2)?;
        let contrast = percentiles(mid.iter().map(|&x| x as f64).collect(), 0.005, 0.995)
            .map(|(a, b)| if b > a { (a as f32, b as f32) } else { (a as f32, a as f32 + 1.0) })
            .unwrap_or((0.0, 1.0));
        let table_name = table_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(ViewState { im1, im2, bin, table, positions, arrangement, field, contrast, table_name })
    }

    fn status(&self) -> Option<&[f64]> {
        self.table.get("returnStatus").or_else(|| self.table.get("SubPixReturnStat"))
    }

    /// The default return-status threshold: 2 (converged) when some row has it, else the
    /// highest status in the table (a pixel search's 1).
    fn default_rst(&self) -> f64 {
        match self.status() {
            Some(s) => {
                let top = s.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
                if top >= 2.0 {
                    2.0
                } else {
                    top
                }
            }
            None => f64::NEG_INFINITY,
        }
    }

    fn converged(&self, i: usize, rst: f64) -> bool {
        self.status().is_none_or(|s| s[i] >= rst)
    }

    fn rst(&self, q: &HashMap<String, String>) -> Result<f64> {
        match q.get("rst") {
            Some(_) => number(q, "rst"),
            None => Ok(self.default_rst()),
        }
    }

    fn column(&self, q: &HashMap<String, String>) -> Result<(usize, &[f64])> {
        let name = q.get("column").ok_or_else(|| anyhow!("column is missing"))?;
        let k = self.table.names.iter().position(|n| n == name).ok_or_else(|| anyhow!("no column '{name}' (columns: {})", self.table.names.join(", ")))?;
        Ok((k, &self.table.values[k]))
    }

    fn axis_index(&self, q: &HashMap<String, String>) -> Result<(usize, usize)> {
        let (axis, index): (usize, usize) = (number(q, "axis")?, number(q, "index")?);
        let s = self.im1.shape();
        if axis > 2 {
            bail!("axis {axis} does not exist (0, 1, 2 = Z, Y, X)");
        }
        if index >= s[axis] {
            bail!("slice {index} is outside 0..{} on axis {axis}", s[axis]);
        }
        Ok((axis, index))
    }

    fn contrast(&self, q: &HashMap<String, String>, default: (f32, f32)) -> Result<(f32, f32)> {
        let lo: f32 = q.get("lo").map(|_| number(q, "lo")).transpose()?.unwrap_or(default.0);
        let hi: f32 = q.get("hi").map(|_| number(q, "hi")).transpose()?.unwrap_or(default.1);
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            bail!("range: lo < hi are needed, got {lo} and {hi}");
        }
        Ok((lo, hi))
    }

    /// A level voxel's full-resolution position (the centre of the voxels it bins).
    fn full(&self, level: f64) -> f64 {
        level * self.bin as f64 + (self.bin as f64 - 1.0) / 2.0
    }
    fn level(&self, full: f64) -> f64 {
        (full - (self.bin as f64 - 1.0) / 2.0) / self.bin as f64
    }

    /// The robust colour range of every column over the converged rows.
    fn ranges(&self) -> serde_json::Map<String, serde_json::Value> {
        let rst = self.default_rst();
        self.table
            .names
            .iter()
            .zip(&self.table.values)
            .map(|(name, v)| {
                let good: Vec<f64> = (0..v.len()).filter(|&i| self.converged(i, rst)).map(|i| v[i]).collect();
                let r = percentiles(good, 0.02, 0.98).or_else(|| percentiles(v.clone(), 0.0, 1.0));
                (name.clone(), serde_json::json!(r.map(|(a, b)| [a, b])))
            })
            .collect()
    }

    fn info(&self) -> serde_json::Value {
        let grid = matches!(self.arrangement, Arrangement::Grid { .. });
        let arrows = ["Zdisp", "Ydisp", "Xdisp"].iter().all(|c| self.table.get(c).is_some());
        serde_json::json!({
            "table": self.table_name, "shape": self.im1.shape(), "bin": self.bin, "columns": self.table.names, "rows": self.table.len(),
            "ranges": self.ranges(), "grid": grid, "residual": self.field.is_some() && self.im2.is_some(), "rst": self.default_rst(),
            "has_status": self.status().is_some(), "lo": self.contrast.0, "hi": self.contrast.1, "stops": STOPS,
            "arrows": arrows,
        })
    }

    /// The row whose node (grid) or point (scattered) covers full-resolution position `x`, if any.
    fn row_at(&self, x: [f64; 3]) -> Option<usize> {
        match &self.arrangement {
            Arrangement::Grid { axes, node_row } => {
                let idx: Option<Vec<usize>> = (0..3).map(|a| nearest_node(&axes[a], x[a])).collect();
                let idx = idx?;
                node_row.get(&[idx[0], idx[1], idx[2]]).copied()
            }
            Arrangement::Scattered { .. } => None,
        }
    }

    /// The overlay's RGBA pixels for one slice.
    fn overlay(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let (axis, index) = self.axis_index(q)?;
        let mode = q.get("mode").map(String::as_str).unwrap_or("nodes");
        let rst = self.rst(q)?;
        let s = self.im1.shape();
        let (a, b) = other_axes(axis);
        let (h, w) = (s[a], s[b]);
        if h * w > MAX_SLICE_PIXELS {
            bail!("a slice of {h} × {w} voxels is more than the {MAX_SLICE_PIXELS} pixels sent: view a pyramid level (--bin)");
        }
        let mut rgba = vec![0u8; h * w * 4];
        let status_only = mode == "status";
        let (values, range): (&[f64], (f64, f64)) = if status_only {
            (self.status().ok_or_else(|| anyhow!("the table has no returnStatus column"))?, (0.0, 1.0))
        } else {
            let (_, v) = self.column(q)?;
            let (lo, hi) = self.contrast(q, (0.0, 1.0)).map(|(a, b)| (a as f64, b as f64))?;
            (v, (lo, hi))
        };
        let colour = |i: usize, v: f64| -> [u8; 4] {
            if status_only {
                return status_colour(v);
            }
            if !self.converged(i, rst) {
                return UNCONVERGED;
            }
            if !v.is_finite() {
                return [0, 0, 0, 0];
            }
            let c = viridis((v - range.0) / (range.1 - range.0));
            [c[0], c[1], c[2], 255]
        };
        let point = |u: usize, v: usize| -> [f64; 3] {
            let mut x = [0.0; 3];
            x[axis] = self.full(index as f64);
            x[a] = self.full(u as f64);
            x[b] = self.full(v as f64);
            x
        };
        match (&self.arrangement, mode) {
            (Arrangement::Grid { axes, node_row }, "interp") if !status_only => {
                for u in 0..h {
                    for v in 0..w {
                        let x = point(u, v);
                        if let Some(c) = trilinear_nodes(axes, node_row, x, |i| (self.converged(i, rst) && values[i].is_finite()).then_some(values[i])) {
                            let k = viridis((c - range.0) / (range.1 - range.0));
                            rgba[(u * w + v) * 4..][..4].copy_from_slice(&[k[0], k[1], k[2], 255]);
                        } else if let Some(i) = self.row_at(x) {
                            // Inside the grid next to an unconverged node: that node's grey.
                            if !self.converged(i, rst) {
                                rgba[(u * w + v) * 4..][..4].copy_from_slice(&UNCONVERGED);
                            }
                        }
                    }
                }
            }
            (Arrangement::Grid { .. }, "nodes" | "status" | "interp") => {
                for u in 0..h {
                    for v in 0..w {
                        if let Some(i) = self.row_at(point(u, v)) {
                            rgba[(u * w + v) * 4..][..4].copy_from_slice(&colour(i, values[i]));
                        }
                    }
                }
            }
            (Arrangement::Scattered { radius }, "nodes" | "status" | "interp") => {
                // A disc of the points' spacing around each point near the slice.
                let r = radius / self.bin as f64;
                for i in self.near_slice(axis, index) {
                    let p = self.positions[i].map(|c| self.level(c));
                    let (pu, pv) = (p[a], p[b]);
                    let dz = p[axis] - index as f64;
                    let rr = (r * r - dz * dz).max(0.0).sqrt();
                    let (u0, u1) = ((pu - rr).floor().max(0.0) as usize, ((pu + rr).ceil() as usize).min(h.saturating_sub(1)));
                    let (v0, v1) = ((pv - rr).floor().max(0.0) as usize, ((pv + rr).ceil() as usize).min(w.saturating_sub(1)));
                    for u in u0..=u1 {
                        for v in v0..=v1 {
                            if (u as f64 - pu).powi(2) + (v as f64 - pv).powi(2) <= rr * rr {
                                rgba[(u * w + v) * 4..][..4].copy_from_slice(&colour(i, values[i]));
                            }
                        }
                    }
                }
            }
            (_, other) => bail!("mode '{other}': nodes, interp or status"),
        }
        Ok(Reply { status: 200, content_type: "image/png", body: encode_rgba(w, h, &rgba)? })
    }

    /// The rows near slice `index` across `axis`: the plane of grid nodes nearest to it, or
    /// the scattered points within their spacing's half of it.
    fn near_slice(&self, axis: usize, index: usize) -> Vec<usize> {
        let x = self.full(index as f64);
        match &self.arrangement {
            Arrangement::Grid { axes, .. } => match nearest_node(&axes[axis], x) {
                Some(k) => {
                    let c = axes[axis][k];
                    (0..self.positions.len()).filter(|&i| self.positions[i][axis] == c).collect()
                }
                None => vec![],
            },
            Arrangement::Scattered { radius } => (0..self.positions.len()).filter(|&i| (self.positions[i][axis] - x).abs() <= *radius).collect(),
        }
    }

    fn points(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let (axis, index) = self.axis_index(q)?;
        let (_, values) = self.column(q)?;
        let rows = self.near_slice(axis, index);
        if rows.len() > MAX_POINTS {
            bail!("{} rows lie near this slice, more than the {MAX_POINTS} sent at once", rows.len());
        }
        let (a, b) = other_axes(axis);
        let disp: Option<[&[f64]; 3]> = match (self.table.get("Zdisp"), self.table.get("Ydisp"), self.table.get("Xdisp")) {
            (Some(z), Some(y), Some(x)) => Some([z, y, x]),
            _ => None,
        };
        let status = self.status();
        let finite = |v: f64| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null };
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|&i| {
                let p = self.positions[i];
                serde_json::json!({
                    "row": i, "u": finite(self.level(p[a])), "v": finite(self.level(p[b])), "value": finite(values[i]),
                    "du": disp.map_or(serde_json::Value::Null, |d| finite(d[a][i] / self.bin as f64)),
                    "dv": disp.map_or(serde_json::Value::Null, |d| finite(d[b][i] / self.bin as f64)),
                    "status": status.map_or(serde_json::Value::Null, |s| finite(s[i])),
                })
            })
            .collect();
        Ok(Reply::json(serde_json::json!({"points": list})))
    }

    fn row(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let i: usize = number(q, "i")?;
        if i >= self.table.len() {
            bail!("row {i} is outside 0..{}", self.table.len());
        }
        let values: Vec<serde_json::Value> = self.table.values.iter().map(|c| if c[i].is_finite() { serde_json::json!(c[i]) } else { serde_json::Value::Null }).collect();
        Ok(Reply::json(serde_json::json!({"row": i, "names": self.table.names, "values": values})))
    }

    /// |im1 − im2(Φ(x))| on one slice, Φ(x) the field interpolated at each pixel.
    pub fn residual_values(&self, axis: usize, index: usize, rst: f64) -> Result<Array2<f32>> {
        let (Some(field), Some(im2)) = (&self.field, &self.im2) else {
            bail!("a residual needs a Φ field and image 2 (dvc-stream view TABLE IM1 IM2)");
        };
        let one = plane(&self.im1, axis, index)?;
        if one.len() > MAX_RESIDUAL_PIXELS {
            bail!("a residual of {} pixels is more than the {MAX_RESIDUAL_PIXELS} computed for one slice: view a pyramid level (--bin)", one.len());
        }
        let keep: Vec<usize> = (0..field.len()).filter(|&i| self.converged(i, rst)).collect();
        let points: Vec<Vector3<f64>> = keep.iter().map(|&i| field.positions[i]).collect();
        let phis: Vec<phi::Phi> = keep.iter().map(|&i| field.phis[i]).collect();
        let interp = PhiInterpolator::new(&points, &phis);
        let (h, w) = one.dim();
        let mut out = Array2::from_elem((h, w), f32::NAN);
        if interp.is_empty() {
            return Ok(out);
        }
        let (a, b) = other_axes(axis);
        let targets: Vec<Vector3<f64>> = (0..h * w)
            .map(|k| {
                let mut x = [0.0; 3];
                x[axis] = self.full(index as f64);
                x[a] = self.full((k / w) as f64);
                x[b] = self.full((k % w) as f64);
                Vector3::new(x[0], x[1], x[2])
            })
            .collect();
        // Each pixel's Φ is its neighbours' Φ moved to it: its translation is the displacement
        // there. Only the source point is kept per pixel (not the 4 × 4 Φ).
        use rayon::prelude::*;
        let s = im2.shape();
        let sources: Vec<Option<[f64; 3]>> = targets
            .par_iter()
            .map(|x| {
                let d = phi::translation(&interp.at(x, Neighbours::Count(8), ApplyF::All, false));
                let q: [f64; 3] = std::array::from_fn(|k| self.level(x[k] + d[k]));
                q.iter().all(|v| v.is_finite()).then_some(q)
            })
            .collect();
        // Only the box of image 2 the slice maps into is read.
        let mut lo = [i64::MAX; 3];
        let mut hi = [i64::MIN; 3];
        for q in sources.iter().flatten() {
            for k in 0..3 {
                lo[k] = lo[k].min(q[k].floor() as i64);
                hi[k] = hi[k].max(q[k].floor() as i64 + 2);
            }
        }
        let lo: [i64; 3] = std::array::from_fn(|k| lo[k].max(0));
        let hi: [i64; 3] = std::array::from_fn(|k| hi[k].min(s[k] as i64));
        if (0..3).any(|k| hi[k] <= lo[k]) {
            return Ok(out);
        }
        if (0..3).map(|k| (hi[k] - lo[k]) as u128).product::<u128>() > 4 * MAX_SLICE_PIXELS as u128 * 64 {
            bail!("the field moves this slice over more of image 2 than is read for one slice: view a pyramid level (--bin)");
        }
        let bx = im2.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
        let d = bx.dim();
        let n = [d.0, d.1, d.2];
        let view = bx.view();
        for (k, q) in sources.iter().enumerate() {
            let Some(q) = q else { continue };
            let l: [f32; 3] = std::array::from_fn(|j| (q[j] - lo[j] as f64) as f32);
            if (0..3).all(|j| l[j] >= 0.0 && (l[j].floor() as usize) + 1 < n[j]) {
                out[(k / w, k % w)] = (one[(k / w, k % w)] - crate::kernels::interp::trilinear(&view, l)).abs();
            }
        }
        Ok(out)
    }

    fn residual(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let (axis, index) = self.axis_index(q)?;
        let (lo, hi) = self.contrast(q, self.contrast)?;
        let v = self.residual_values(axis, index, self.rst(q)?)?;
        Ok(Reply { status: 200, content_type: "image/png", body: encode_grey(&v, 0.0, hi - lo)? })
    }

    fn slice(&self, q: &HashMap<String, String>) -> Result<Reply> {
        let (axis, index) = self.axis_index(q)?;
        let (lo, hi) = self.contrast(q, self.contrast)?;
        Ok(Reply { status: 200, content_type: "image/png", body: encode_grey(&plane(&self.im1, axis, index)?, lo, hi)? })
    }
}

impl App for ViewState {
    fn command(&self) -> &'static str {
        "dvc-stream view"
    }
    fn handle(&self, method: &str, url: &str, _body: &[u8]) -> Reply {
        let (path, q) = query(url);
        let r = match (method, path.as_str()) {
            ("GET", "/") => Ok(Reply { status: 200, content_type: "text/html; charset=utf-8", body: PAGE.as_bytes().to_vec() }),
            ("GET", "/info") => Ok(Reply::json(self.info())),
            ("GET", "/slice") => self.slice(&q),
            ("GET", "/overlay") => self.overlay(&q),
            ("GET", "/points") => self.points(&q),
            ("GET", "/row") => self.row(&q),
            ("GET", "/residual") => self.residual(&q),
            _ => Err(anyhow!("no such request: {method} {path}")),
        };
        r.unwrap_or_else(Reply::bad)
    }
}

/// The node of sorted coordinates `axis` nearest to `x`, if `x` is within half a spacing of
/// the grid (a single node covers ± half the other axes' spacing, or 4 voxels).
fn nearest_node(axis: &[f64], x: f64) -> Option<usize> {
    let half = if axis.len() > 1 { (axis[1] - axis[0]) / 2.0 } else { 4.0 };
    let k = axis.partition_point(|&c| c < x);
    let best = [k.checked_sub(1), (k < axis.len()).then_some(k)].into_iter().flatten().min_by(|&i, &j| (axis[i] - x).abs().total_cmp(&(axis[j] - x).abs()))?;
    ((axis[best] - x).abs() <= half + 1e-9).then_some(best)
}

/// The column's trilinear interpolation between the 8 grid nodes around `x` (None outside the
/// grid's nodes or where a corner has no value).
fn trilinear_nodes(axes: &[Vec<f64>; 3], node_row: &HashMap<[usize; 3], usize>, x: [f64; 3], value: impl Fn(usize) -> Option<f64>) -> Option<f64> {
    let mut lo = [0usize; 3];
    let mut f = [0.0; 3];
    for a in 0..3 {
        let ax = &axes[a];
        if ax.len() == 1 {
            if (ax[0] - x[a]).abs() > 1e-9 && nearest_node(ax, x[a]).is_none() {
                return None;
            }
            continue;
        }
        if x[a] < ax[0] || x[a] > ax[ax.len() - 1] {
            return None;
        }
        let k = ax.partition_point(|&c| c <= x[a]).clamp(1, ax.len() - 1) - 1;
        lo[a] = k;
        f[a] = (x[a] - ax[k]) / (ax[k + 1] - ax[k]);
    }
    let mut acc = 0.0;
    for corner in 0..8 {
        let mut idx = lo;
        let mut w = 1.0;
        for a in 0..3 {
            let up = corner >> a & 1 == 1;
            if axes[a].len() == 1 {
                if up {
                    w = 0.0;
                }
                continue;
            }
            if up {
                idx[a] += 1;
            }
            w *= if up { f[a] } else { 1.0 - f[a] };
        }
        if w == 0.0 {
            continue;
        }
        acc += w * value(*node_row.get(&idx)?)?;
    }
    Some(acc)
}

/// Whether the positions fill a regular grid (every combination of the per-axis coordinates
/// present once, evenly spaced), and else the scattered points' drawing radius: half the
/// median distance to the nearest other point.
fn arrangement(positions: &[[f64; 3]]) -> Arrangement {
    let axes: [Vec<f64>; 3] = std::array::from_fn(|a| {
        let mut v: Vec<f64> = positions.iter().map(|p| p[a]).filter(|x| x.is_finite()).collect();
        v.sort_by(|x, y| x.total_cmp(y));
        v.dedup();
        v
    });
    let even = |v: &[f64]| v.len() < 3 || v.windows(2).all(|w| ((w[1] - w[0]) - (v[1] - v[0])).abs() < 1e-6 * (v[1] - v[0]).abs().max(1.0));
    let fills = axes.iter().map(Vec::len).product::<usize>() == positions.len() && axes.iter().all(|v| even(v));
    if fills {
        let mut node_row = HashMap::with_capacity(positions.len());
        for (i, p) in positions.iter().enumerate() {
            let idx: Option<Vec<usize>> = (0..3).map(|a| axes[a].binary_search_by(|c| c.total_cmp(&p[a])).ok()).collect();
            match idx {
                Some(k) if node_row.insert([k[0], k[1], k[2]], i).is_none() => {}
                _ => return scattered(positions),
            }
        }
        return Arrangement::Grid { axes, node_row };
    }
    scattered(positions)
}

fn scattered(positions: &[[f64; 3]]) -> Arrangement {
    let finite: Vec<Vector3<f64>> = positions.iter().filter(|p| p.iter().all(|v| v.is_finite())).map(|p| Vector3::new(p[0], p[1], p[2])).collect();
    if finite.len() < 2 {
        return Arrangement::Scattered { radius: 4.0 };
    }
    let index = crate::field::neighbours::PointIndex::new(&finite);
    let mut d: Vec<f64> = finite.iter().filter_map(|p| index.nearest(p, 2).get(1).map(|(_, d)| *d)).collect();
    d.sort_by(|a, b| a.total_cmp(b));
    Arrangement::Scattered { radius: (d[d.len() / 2] / 2.0).max(1.0) }
}

/// Opens the table and the images of `dvc-stream view` (what `cli/view.rs` serves).
pub fn open(table: &Path, im1: &Path, im2: Option<&Path>, bin: usize, cache: &std::sync::Arc<crate::store::ChunkCache>) -> Result<ViewState> {
    let one = Volume::open(im1, cache.clone())?;
    let two = im2.map(|p| crate::store::Volume::open_matching(p, cache, one.shape(), "image")).transpose()?;
    ViewState::new(table, one, two, bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_nodes_and_trilinear_between_them() {
        let ax = vec![4.0, 12.0, 20.0];
        assert_eq!(nearest_node(&ax, 0.0), Some(0));
        assert_eq!(nearest_node(&ax, 7.9), Some(0));
        assert_eq!(nearest_node(&ax, 8.1), Some(1));
        assert_eq!(nearest_node(&ax, 24.5), None);
        let positions: Vec<[f64; 3]> = (0..27).map(|i| [ax[i / 9], ax[(i / 3) % 3], ax[i % 3]]).collect();
        let Arrangement::Grid { axes, node_row } = arrangement(&positions) else { panic!("a grid") };
        // A linear column is interpolated exactly.
        let col: Vec<f64> = positions.iter().map(|p| p[0] + 2.0 * p[1] - p[2]).collect();
        let x = [5.0, 13.5, 19.0];
        let v = trilinear_nodes(&axes, &node_row, x, |i| Some(col[i])).unwrap();
        assert!((v - (x[0] + 2.0 * x[1] - x[2])).abs() < 1e-9, "{v}");
        assert!(trilinear_nodes(&axes, &node_row, [3.0, 12.0, 12.0], |i| Some(col[i])).is_none(), "outside the nodes");
        assert!(trilinear_nodes(&axes, &node_row, x, |i| (i != 13).then_some(col[i])).is_none(), "a corner without value");
        let mut shuffled = positions.clone();
        shuffled.pop();
        assert!(matches!(arrangement(&shuffled), Arrangement::Scattered { .. }));
    }
}
