//! Figures of result tables and of residuals, as PNG: colour maps of any column on a slice
//! through a grid field, arrows (quiver) for fields of scattered points such as labels,
//! histograms, and the |im1 − im2(Φx)| slices of a registration before and after.
//!
//! Tables are read by column name from Parquet or spam TSV, so every table dvc-stream writes
//! works: Φ fields (Zdisp, returnStatus, pixelSearchCC, …) and strain tables (vol, dev, …).
//! A figure is meant to be read by a scientist without the command line at hand: its title
//! names the table, column and slice; axes are in voxels, and in physical units when the
//! table (or the background image) carries a voxel size; the colour range comes from the
//! converged points only (one diverged node must not wash out the map) and is printed under
//! the bar; points that did not converge or were skipped are drawn apart and counted in the
//! legend. Every PNG also carries its colour range in a text chunk (`dvc-stream:range`) for
//! scripts.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array2;
use plotters::prelude::*;

use super::figure::{self, draw_plane, draw_side, draw_title, drawing, ColourBar, PlaneAxis, PlaneChart, Rgb, Swatch};
use super::render::{other_axes, PairView, Picture, SliceRequest};
use crate::phi::Phi;
use crate::store::output::OutputSet;
use crate::store::voxel_size::VoxelSize;
use crate::store::Volume;

const AXIS_NAMES: [&str; 3] = ["Z", "Y", "X"];

/// What a table says about itself beyond its columns (Parquet metadata of dvc-stream).
#[derive(Clone, Debug, Default)]
pub struct TableMeta {
    /// The file name shown in titles.
    pub name: String,
    pub tool: Option<String>,
    pub layout: Option<String>,
    pub voxel_size: Option<VoxelSize>,
    /// Shape of the first image the table was measured on.
    pub image_shape: Option<[usize; 3]>,
}

/// A table's numeric columns.
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
    pub meta: TableMeta,
}

impl Table {
    /// Reads a Parquet table (any numeric columns) or a spam TSV.
    pub fn read(path: &Path) -> Result<Table> {
        Table::read_as(path, path)
    }

    /// Reads `path`, naming it `shown` in figures (a quicklook reads a table still under its
    /// `.partial` name).
    pub fn read_as(path: &Path, shown: &Path) -> Result<Table> {
        let mut meta = TableMeta { name: shown.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(), ..Default::default() };
        // By content, not by name.
        if crate::field::format::is_parquet(path) {
            let (names, columns) = crate::field::parquet::read_columns(path)?;
            let kv = crate::field::parquet::read_metadata(path)?;
            let get = |k: &str| kv.iter().find(|(key, _)| key.strip_prefix("dvc_stream.") == Some(k)).map(|(_, v)| v.clone());
            meta.tool = get("tool");
            meta.layout = get("layout");
            meta.voxel_size = get("voxel_size").and_then(|v| serde_json::from_str(&v).ok());
            meta.image_shape = get("image_shapes").and_then(|v| serde_json::from_str::<Vec<[usize; 3]>>(&v).ok()).and_then(|v| v.first().copied());
            return Ok(Table { names, columns, meta });
        }
        let t = crate::field::tsv::read_table(path)?;
        let columns = (0..t.columns.len()).map(|k| t.rows.iter().map(|r| r[k]).collect()).collect();
        Ok(Table { names: t.columns, columns, meta })
    }

    pub fn column(&self, name: &str) -> Result<&[f64]> {
        self.names.iter().position(|n| n == name).map(|k| self.columns[k].as_slice()).ok_or_else(|| anyhow!("no column '{name}' (columns: {})", self.names.join(", ")))
    }

    pub fn len(&self) -> usize {
        self.columns.first().map(Vec::len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The grid the rows sit on, if they fill one: (node values per axis, node index of each row).
    pub fn grid(&self) -> Option<([Vec<f64>; 3], Vec<[usize; 3]>)> {
        let pos = [self.column("Zpos").ok()?, self.column("Ypos").ok()?, self.column("Xpos").ok()?];
        let axes: [Vec<f64>; 3] = std::array::from_fn(|a| {
            let mut v: Vec<f64> = pos[a].iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(|x, y| x.total_cmp(y));
            v.dedup();
            v
        });
        if axes.iter().map(Vec::len).product::<usize>() != self.len() || self.is_empty() {
            return None;
        }
        let idx = (0..self.len())
            .map(|i| {
                let k: Vec<usize> = (0..3).map(|a| axes[a].binary_search_by(|v| v.total_cmp(&pos[a][i])).ok()).collect::<Option<_>>()?;
                Some([k[0], k[1], k[2]])
            })
            .collect::<Option<Vec<_>>>()?;
        Some((axes, idx))
    }

    /// Each row's class by its `returnStatus`, when the table has one.
    pub fn classes(&self) -> Option<Vec<PointClass>> {
        let status = self.column("returnStatus").ok()?;
        // spam's pixel search reports success as 1; the iterative kernels as 2.
        let pixel_search = match &self.meta.layout {
            Some(l) => l.starts_with("pixel-search"),
            None => self.names.iter().any(|n| n == "pixelSearchCC"),
        };
        Some(status.iter().map(|&s| PointClass::of(s, pixel_search)).collect())
    }

    /// Which status counts as converged, as the figures say it.
    fn converged_name(&self) -> &'static str {
        match &self.meta.layout {
            Some(l) if l.starts_with("pixel-search") => "status ≥ 1",
            None if self.names.iter().any(|n| n == "pixelSearchCC") => "status ≥ 1",
            _ => "status 2",
        }
    }
}

/// What a point's `returnStatus` says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointClass {
    Converged,
    /// Measured but not converged (too many iterations, diverged, singular…).
    NotConverged,
    /// Not measured: masked, outside the grey range (−5) or without a guess (−7).
    Skipped,
}

impl PointClass {
    pub fn of(status: f64, pixel_search: bool) -> PointClass {
        if status == 2.0 || (pixel_search && status >= 1.0) {
            PointClass::Converged
        } else if status == -5.0 || status == -7.0 {
            PointClass::Skipped
        } else {
            PointClass::NotConverged
        }
    }
}

/// Colour maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Colormap {
    Viridis,
    Grey,
}

impl Colormap {
    /// The colour of t in [0, 1].
    pub fn rgb(self, t: f64) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        match self {
            Colormap::Grey => {
                let g = (t * 255.0).round() as u8;
                [g, g, g]
            }
            Colormap::Viridis => {
                const STOPS: [[f64; 3]; 9] = [
                    [68.0, 1.0, 84.0], [71.0, 44.0, 122.0], [59.0, 81.0, 139.0], [44.0, 113.0, 142.0], [33.0, 144.0, 141.0],
                    [39.0, 173.0, 129.0], [92.0, 200.0, 99.0], [170.0, 220.0, 50.0], [253.0, 231.0, 37.0],
                ];
                let x = t * 8.0;
                let k = (x.floor() as usize).min(7);
                let f = x - k as f64;
                std::array::from_fn(|c| (STOPS[k][c] * (1.0 - f) + STOPS[k + 1][c] * f).round() as u8)
            }
        }
    }
}

/// A drawn figure and the text chunks its PNG carries.
pub struct Figure {
    pub canvas: figure::Canvas,
    pub chunks: Vec<(&'static str, String)>,
}

impl Figure {
    pub fn png(&self) -> Result<Vec<u8>> {
        self.canvas.png(&self.chunks)
    }

    /// Writes the PNG as output `path` of `outs`.
    pub fn write(&self, outs: &mut OutputSet, path: &Path) -> Result<PathBuf> {
        let bytes = self.png()?;
        let partial = outs.file(path)?;
        std::fs::write(&partial, &bytes).with_context(|| format!("{}: cannot write", partial.display()))?;
        Ok(path.to_path_buf())
    }
}

/// The p-quantile (0..1) of sorted values, linearly interpolated.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let x = p * (sorted.len() - 1) as f64;
    let (k, f) = (x.floor() as usize, x - x.floor());
    if k + 1 < sorted.len() {
        sorted[k] * (1.0 - f) + sorted[k + 1] * f
    } else {
        sorted[k]
    }
}

/// A range that is not empty: a constant value gets ± 0.5 around it.
fn widened((lo, hi): (f64, f64)) -> (f64, f64) {
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    }
}

/// The colour range of a column and how it was chosen (printed under the bar).
#[derive(Clone, Debug, PartialEq)]
pub struct ColourRange {
    pub lo: f64,
    pub hi: f64,
    pub source: String,
}

/// The range a column's colours span: `--range` when given; min–max for `returnStatus`;
/// otherwise the 2nd to 98th percentiles of the converged points' finite values (of every
/// point's when the table has no status, or when none converged).
pub fn colour_range(table: &Table, column: &str, values: &[f64], range: Option<(f64, f64)>) -> ColourRange {
    if let Some((lo, hi)) = range {
        return ColourRange { lo, hi, source: "range set by --range".into() };
    }
    let finite = |keep: &dyn Fn(usize) -> bool| {
        let mut v: Vec<f64> = (0..values.len()).filter(|&i| keep(i) && values[i].is_finite()).map(|i| values[i]).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    if column == "returnStatus" {
        let v = finite(&|_| true);
        let (lo, hi) = if v.is_empty() { (0.0, 1.0) } else { widened((v[0], v[v.len() - 1])) };
        return ColourRange { lo, hi, source: format!("min–max of {} points", v.len()) };
    }
    let classes = table.classes();
    let (v, whom) = match &classes {
        Some(c) => {
            let v = finite(&|i| c[i] == PointClass::Converged);
            if v.is_empty() {
                (finite(&|_| true), "points (none converged)".to_string())
            } else {
                (v, format!("converged points ({})", table.converged_name()))
            }
        }
        None => (finite(&|_| true), "points".to_string()),
    };
    if v.is_empty() {
        return ColourRange { lo: 0.0, hi: 1.0, source: "no finite value".into() };
    }
    let (lo, hi) = widened((quantile(&v, 0.02), quantile(&v, 0.98)));
    ColourRange { lo, hi, source: format!("2–98 % of the {} {whom}", v.len()) }
}

/// The physical size of a voxel along `axis` and the unit's symbol, when known.
fn physical(vs: Option<&VoxelSize>, axis: usize) -> Option<(f64, String)> {
    let vs = vs.filter(|v| v.is_known())?;
    Some((vs.zyx[axis], vs.unit.as_deref().map_or_else(|| "units".to_string(), figure::unit_symbol)))
}

/// The unit of a column's values and, for lengths, the axis whose voxel size converts them.
fn column_unit(column: &str) -> (Option<&'static str>, Option<usize>) {
    match column {
        "Zdisp" | "Zpos" => (Some("voxels"), Some(0)),
        "Ydisp" | "Ypos" => (Some("voxels"), Some(1)),
        "Xdisp" | "Xpos" => (Some("voxels"), Some(2)),
        _ => (None, None),
    }
}

/// "12 voxels (= 6 µm)" or "12 voxels".
fn voxels_text(v: f64, phys: &Option<(f64, String)>) -> String {
    let span = v.abs().max(1.0);
    let n = figure::number(v, span);
    let voxels = if n == "1" { "voxel" } else { "voxels" };
    match phys {
        Some((s, u)) => format!("{n} {voxels} (= {} {u})", figure::number(v * s, span * s)),
        None => format!("{n} {voxels}"),
    }
}

/// Node index of `v` along sorted node positions `ax` whose cells are `cell` wide, if `v`
/// falls in one.
fn node_at(ax: &[f64], cell: f64, v: f64) -> Option<usize> {
    let k = match ax.binary_search_by(|p| p.total_cmp(&v)) {
        Ok(k) => k,
        Err(k) => {
            if k == 0 {
                0
            } else if k == ax.len() || (v - ax[k - 1]) <= (ax[k] - v) {
                k - 1
            } else {
                k
            }
        }
    };
    ((v - ax[k]).abs() <= cell / 2.0).then_some(k)
}

/// The typical spacing of sorted node positions (the median gap), or `fallback` for one node.
fn spacing(ax: &[f64], fallback: f64) -> f64 {
    let mut gaps: Vec<f64> = ax.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return fallback;
    }
    gaps.sort_by(|a, b| a.total_cmp(b));
    gaps[gaps.len() / 2]
}

/// A slice of an image shown under a field, read through the store layer from a stored
/// pyramid level coarse enough for the figure (a 2048³ scan reads a small level).
pub struct Background {
    pub name: String,
    pub axis: usize,
    /// Full-resolution slice index.
    pub index: usize,
    /// Bin of the level read.
    pub bin: usize,
    pub values: Array2<f32>,
    pub lo: f32,
    pub hi: f32,
    /// Full-resolution shape of the image.
    pub shape: [usize; 3],
    pub voxel_size: Option<VoxelSize>,
}

impl Background {
    /// Reads slice `index` (full-resolution voxels) across `axis` of `vol`.
    pub fn read(vol: &Volume, axis: usize, index: usize) -> Result<Background> {
        let shape = vol.shape();
        if index >= shape[axis] {
            bail!("{}: slice {index} is outside the image's {} voxels along {}", vol.path().display(), shape[axis], AXIS_NAMES[axis]);
        }
        let (a, b) = other_axes(axis);
        // The coarsest stored level whose slice still has ≥ 800 pixels on its longer side.
        let long = shape[a].max(shape[b]);
        let bin = vol.stored_levels().into_iter().filter(|&bin| bin >= 1 && long / bin >= 800).max().unwrap_or(1);
        let level = vol.level(bin)?;
        let ls = level.shape();
        let k = (index / bin).min(ls[axis].saturating_sub(1));
        let mut lo = [0i64; 3];
        let mut hi = [ls[0] as i64, ls[1] as i64, ls[2] as i64];
        lo[axis] = k as i64;
        hi[axis] = k as i64 + 1;
        let bx = level.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
        let values = bx.into_shape_with_order((ls[a], ls[b])).map_err(|e| anyhow!("{}: slice shape: {e}", vol.path().display()))?;
        let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(|x, y| x.total_cmp(y));
        let (lo, hi) = if v.is_empty() { (0.0, 1.0) } else { (v[(v.len() - 1) * 5 / 1000], v[(v.len() - 1) * 995 / 1000]) };
        // An OME-Zarr's level array is `IMAGE.zarr/0`: name the image, not the level.
        let path = vol.path();
        let named = if path.file_name().is_some_and(|n| n.to_string_lossy().chars().all(|c| c.is_ascii_digit())) { path.parent().unwrap_or(path) } else { path };
        let name = named.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        Ok(Background { name, axis, index, bin, values, lo, hi: if hi > lo { hi } else { lo + 1.0 }, shape, voxel_size: vol.voxel_size() })
    }

    /// The grey level at full-resolution voxel coordinates (h, v) of the slice, if inside.
    fn grey(&self, h: f64, v: f64) -> Option<f64> {
        let (rows, cols) = self.values.dim();
        let (r, c) = (v.round(), h.round());
        if r < 0.0 || c < 0.0 {
            return None;
        }
        let (r, c) = (r as usize / self.bin, c as usize / self.bin);
        let x = *self.values.get((r, c)).filter(|_| r < rows && c < cols)?;
        x.is_finite().then(|| ((x - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0) as f64)
    }

    fn describe(&self) -> String {
        let bin = if self.bin > 1 { format!(", pyramid level bin {}", self.bin) } else { String::new() };
        format!("under it: {} slice {} = {}{bin}", self.name, AXIS_NAMES[self.axis].to_lowercase(), self.index)
    }
}

fn mix(under: Rgb, over: Rgb, alpha: f64) -> Rgb {
    std::array::from_fn(|c| (under[c] as f64 * (1.0 - alpha) + over[c] as f64 * alpha).round() as u8)
}

fn grey_rgb(g: f64) -> Rgb {
    let g = (g * 255.0).round() as u8;
    [g, g, g]
}

/// Layout of a figure of one plane: plotting area, label margins, the side column.
struct PlaneLayout {
    width: u32,
    height: u32,
    title_h: u32,
    plane_w: u32,
    plane_h: u32,
    bar_h: u32,
}

fn plane_layout(h: &PlaneAxis, v: &PlaneAxis, subtitle_lines: usize) -> PlaneLayout {
    let (pw, ph) = figure::plot_size(h, v, 720, 600);
    let (l, r, t, b) = figure::plane_margins(h.physical.is_some() || v.physical.is_some());
    let title_h = figure::title_height(subtitle_lines);
    let (plane_w, plane_h) = (l + pw + r, t + ph + b);
    let bar_h = (ph * 3 / 4).clamp(220, 420);
    let height = (title_h + plane_h + 10).max(title_h + bar_h + 300);
    PlaneLayout { width: plane_w + 12 + figure::SIDE_WIDTH, height, title_h, plane_w, plane_h, bar_h }
}

/// Options of a colour map.
pub struct MapOptions<'a> {
    pub range: Option<(f64, f64)>,
    pub colormap: Colormap,
    pub background: Option<&'a Background>,
    /// Opacity of the field over the background.
    pub opacity: f64,
}

/// A colour map of `column` on the grid slice across `axis` at node `index`: each node a
/// cell of the grid's spacing, coloured within the converged points' range; points that did
/// not converge hatched, skipped ones and NaNs in greys, each named with its count in the
/// legend; optionally over the image slice at that node.
pub fn grid_map(table: &Table, grid: &([Vec<f64>; 3], Vec<[usize; 3]>), column: &str, axis: usize, index: usize, o: &MapOptions) -> Result<Figure> {
    let values = table.column(column)?;
    let (axes, idx) = grid;
    if index >= axes[axis].len() {
        bail!("slice {index} is outside the grid's {} nodes on that axis", axes[axis].len());
    }
    let (a, b) = other_axes(axis);
    let vs = table.meta.voxel_size.clone().or_else(|| o.background.and_then(|bg| bg.voxel_size.clone()));
    let classes = table.classes().filter(|_| column != "returnStatus");
    let (nh, nv) = (axes[b].len(), axes[a].len());
    let mut plane: Vec<Option<(f64, PointClass)>> = vec![None; nh * nv];
    for (i, n) in idx.iter().enumerate() {
        if n[axis] == index {
            plane[n[a] * nh + n[b]] = Some((values[i], classes.as_ref().map_or(PointClass::Converged, |c| c[i])));
        }
    }
    let range = colour_range(table, column, values, o.range);
    let (lo, hi) = (range.lo, range.hi);
    let cell = [axes[0].as_slice(), axes[1].as_slice(), axes[2].as_slice()].map(|ax| spacing(ax, 1.0));
    let cell_h = spacing(&axes[b], cell[a]);
    let cell_v = spacing(&axes[a], cell_h);
    let mut ext_h = (axes[b][0] - cell_h / 2.0, axes[b][nh - 1] + cell_h / 2.0);
    let mut ext_v = (axes[a][0] - cell_v / 2.0, axes[a][nv - 1] + cell_v / 2.0);
    if let Some(bg) = o.background {
        ext_h = (ext_h.0.min(-0.5), ext_h.1.max(bg.shape[b] as f64 - 0.5));
        ext_v = (ext_v.0.min(-0.5), ext_v.1.max(bg.shape[a] as f64 - 0.5));
    }
    let h_axis = PlaneAxis { name: AXIS_NAMES[b], lo: ext_h.0, hi: ext_h.1, physical: physical(vs.as_ref(), b) };
    let v_axis = PlaneAxis { name: AXIS_NAMES[a], lo: ext_v.0, hi: ext_v.1, physical: physical(vs.as_ref(), a) };

    // Counts in this slice, for the legend and notes.
    let (mut not_conv, mut skipped, mut nan, mut clipped, mut shown) = (0, 0, 0, 0, 0);
    let mut bad_status: Vec<i64> = Vec::new();
    let status = table.column("returnStatus").ok();
    for (i, n) in idx.iter().enumerate() {
        if n[axis] != index {
            continue;
        }
        match plane[n[a] * nh + n[b]] {
            Some((_, PointClass::NotConverged)) => {
                not_conv += 1;
                if let Some(s) = status {
                    bad_status.push(s[i] as i64);
                }
            }
            Some((_, PointClass::Skipped)) => skipped += 1,
            Some((v, PointClass::Converged)) if !v.is_finite() => nan += 1,
            Some((v, PointClass::Converged)) => {
                shown += 1;
                if v < lo || v > hi {
                    clipped += 1;
                }
            }
            None => {}
        }
    }
    bad_status.sort_unstable_by_key(|s| std::cmp::Reverse(*s));
    bad_status.dedup();

    let pos = axes[axis][index];
    let (unit, unit_axis) = column_unit(column);
    let phys_axis = physical(vs.as_ref(), axis);
    let mut subtitle = vec![
        format!("slice across {}: {} = {} (node {} of {})", AXIS_NAMES[axis], AXIS_NAMES[axis].to_lowercase(), voxels_text(pos, &phys_axis), index + 1, axes[axis].len()),
        format!(
            "{}{} × {} × {} nodes, spacing {}",
            table.meta.tool.as_ref().map(|t| format!("{t}: ")).unwrap_or_default(),
            axes[0].len(),
            axes[1].len(),
            axes[2].len(),
            cell.iter().map(|c| figure::number(*c, c.abs().max(1.0))).collect::<Vec<_>>().join(" × ") + " voxels",
        ),
    ];
    if let Some(bg) = o.background {
        subtitle.push(bg.describe());
    }
    let lay = plane_layout(&h_axis, &v_axis, subtitle.len());
    let title = format!("{} — {column}", table.meta.name);
    let cmap = o.colormap;
    let colour = move |t: f64| cmap.rgb(t);
    let bar = ColourBar {
        title: match unit {
            Some(u) => format!("{column} ({u})"),
            None => column.to_string(),
        },
        lo,
        hi,
        colour: &colour,
        physical: unit_axis.and_then(|ax| physical(vs.as_ref(), ax)),
    };
    let mut notes = vec![format!("colours: {}", range.source)];
    if column == "returnStatus" {
        let mut counts: Vec<(i64, usize)> = Vec::new();
        for (i, n) in idx.iter().enumerate() {
            if n[axis] == index && values[i].is_finite() {
                let s = values[i] as i64;
                match counts.iter_mut().find(|(k, _)| *k == s) {
                    Some(c) => c.1 += 1,
                    None => counts.push((s, 1)),
                }
            }
        }
        counts.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let list: Vec<String> = counts.iter().map(|(s, c)| format!("{}: {c}", figure::number(*s as f64, 10.0))).collect();
        notes.push(format!("here, status: count {}", list.join(", ")));
    }
    if clipped > 0 {
        notes.push(format!("{clipped} of the {shown} coloured points here lie outside and take the end colours"));
    }
    let mut legend = Vec::new();
    if not_conv > 0 {
        let st: Vec<String> = bad_status.iter().map(|s| figure::number(*s as f64, 10.0)).collect();
        legend.push((Swatch::Hatched, format!("not converged: {not_conv} (status {})", st.join(", "))));
    }
    if skipped > 0 {
        legend.push((Swatch::Solid(figure::SKIPPED), format!("skipped: {skipped} (status −5, −7: masked, grey range, no guess)")));
    }
    if nan > 0 {
        legend.push((Swatch::Solid(figure::NO_VALUE), format!("no value (NaN): {nan}")));
    }
    let bg = o.background;
    let alpha = if bg.is_some() { o.opacity.clamp(0.0, 1.0) } else { 1.0 };
    let pixel = |hv: f64, vv: f64, px: u32, py: u32| -> Rgb {
        let under = bg.and_then(|g| g.grey(hv, vv)).map(grey_rgb).unwrap_or(figure::WHITE_RGB);
        let node = node_at(&axes[b], cell_h, hv).zip(node_at(&axes[a], cell_v, vv));
        let over = match node.and_then(|(kh, kv)| plane[kv * nh + kh]) {
            None => return under,
            Some((_, PointClass::NotConverged)) => figure::hatch(px, py),
            Some((_, PointClass::Skipped)) => figure::SKIPPED,
            Some((v, _)) if !v.is_finite() => figure::NO_VALUE,
            Some((v, _)) => cmap.rgb((v - lo) / (hi - lo)),
        };
        mix(under, over, alpha)
    };
    let mut canvas = figure::Canvas::new(lay.width, lay.height);
    canvas.draw(|root| {
        draw_title(root, &title, &subtitle)?;
        let plane_area = root.clone().shrink((0, lay.title_h), (lay.plane_w, lay.plane_h));
        draw_plane(&plane_area, &h_axis, &v_axis, &pixel, &mut |_| Ok(()))?;
        let side = root.clone().shrink((lay.plane_w + 12, lay.title_h), (figure::SIDE_WIDTH, lay.height - lay.title_h));
        draw_side(&side, Some(&bar), lay.bar_h, &notes, &legend)?;
        Ok(())
    })?;
    Ok(Figure { canvas, chunks: vec![("dvc-stream:range", format!("{lo} {hi}"))] })
}

/// Arrows from each point (projected across `axis`) along its displacement in the plane,
/// coloured by its in-plane length, with a scale arrow; points that did not converge in
/// grey; optionally over an image slice.
pub fn quiver(table: &Table, axis: usize, cmap: Colormap, background: Option<&Background>, opacity: f64) -> Result<Figure> {
    let (a, b) = other_axes(axis);
    let p = [table.column("Zpos")?, table.column("Ypos")?, table.column("Xpos")?];
    let d = [table.column("Zdisp")?, table.column("Ydisp")?, table.column("Xdisp")?];
    let labels = table.column("Label").ok();
    let classes = table.classes();
    // Label 0 is the background of a label image, not a grain.
    let rows: Vec<usize> = (0..table.len()).filter(|&i| labels.is_none_or(|l| l[i] != 0.0)).collect();
    let ok: Vec<usize> = rows.iter().copied().filter(|&i| (0..3).all(|k| p[k][i].is_finite() && d[k][i].is_finite())).collect();
    if ok.is_empty() {
        bail!("no point with a finite position and displacement");
    }
    let class = |i: usize| classes.as_ref().map_or(PointClass::Converged, |c| c[i]);
    let len = |i: usize| d[a][i].hypot(d[b][i]);
    let vs = table.meta.voxel_size.clone().or_else(|| background.and_then(|bg| bg.voxel_size.clone()));
    let shape = background.map(|bg| bg.shape).or(table.meta.image_shape);
    let (ext_h, ext_v) = match shape {
        Some(s) => ((-0.5, s[b] as f64 - 0.5), (-0.5, s[a] as f64 - 0.5)),
        None => {
            let r = |k: usize| {
                let (lo, hi) = ok.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| (lo.min(p[k][i]), hi.max(p[k][i])));
                let m = ((hi - lo) * 0.08).max(5.0);
                (lo - m, hi + m)
            };
            (r(b), r(a))
        }
    };
    let h_axis = PlaneAxis { name: AXIS_NAMES[b], lo: ext_h.0, hi: ext_h.1, physical: physical(vs.as_ref(), b) };
    let v_axis = PlaneAxis { name: AXIS_NAMES[a], lo: ext_v.0, hi: ext_v.1, physical: physical(vs.as_ref(), a) };
    let conv: Vec<usize> = ok.iter().copied().filter(|&i| class(i) == PointClass::Converged).collect();
    let mut lens: Vec<f64> = (if conv.is_empty() { &ok } else { &conv }).iter().map(|&i| len(i)).collect();
    lens.sort_by(|x, y| x.total_cmp(y));
    let median = quantile(&lens, 0.5);
    let top = quantile(&lens, 0.98).max(1e-12);
    // The median arrow is 4 % of the plane's longer side.
    let typical = if median > 1e-9 { median } else { top };
    let gain = 0.04 * h_axis.span().max(v_axis.span()) / typical.max(1e-12);
    let key = {
        let e = typical.log10().floor();
        let m = typical / 10f64.powf(e);
        (if m < 1.5 { 1.0 } else if m < 3.5 { 2.0 } else if m < 7.5 { 5.0 } else { 10.0 }) * 10f64.powf(e)
    };
    let not_conv = ok.len() - conv.len();
    let lost = rows.len() - ok.len();
    let mut subtitle = vec![format!("{} points projected along {} (all slices); arrows {}× their length", ok.len(), AXIS_NAMES[axis], figure::number(gain, gain))];
    if let Some(bg) = background {
        subtitle.push(bg.describe());
    }
    let lay = plane_layout(&h_axis, &v_axis, subtitle.len());
    let title = format!("{} — displacements in the {}{} plane", table.meta.name, AXIS_NAMES[a], AXIS_NAMES[b]);
    let colour = move |t: f64| cmap.rgb(t);
    let bar = ColourBar { title: "in-plane |d| (voxels)".to_string(), lo: 0.0, hi: top, colour: &colour, physical: physical(vs.as_ref(), b).filter(|_| vs.as_ref().is_some_and(|v| v.zyx[a] == v.zyx[b])) };
    let mut notes = vec![format!("colours: 0 to the 98th percentile of {} {}", lens.len(), if conv.is_empty() { "points" } else { "converged points" })];
    if lost > 0 {
        notes.push(format!("{lost} points without a finite displacement are not drawn"));
    }
    let mut legend = vec![(Swatch::Arrow([0, 0, 0]), format!("from a point (dot), its in-plane displacement × {}; scale in the corner", figure::number(gain, gain)))];
    if not_conv > 0 {
        legend.push((Swatch::Arrow([150, 150, 150]), format!("not converged: {not_conv}")));
    }
    let alpha = opacity.clamp(0.0, 1.0);
    let pixel = |hv: f64, vv: f64, _: u32, _: u32| -> Rgb {
        match background.and_then(|g| g.grey(hv, vv)) {
            // The image is dimmed towards white so arrows stand out.
            Some(g) => mix(figure::WHITE_RGB, grey_rgb(g), alpha),
            None => figure::WHITE_RGB,
        }
    };
    let head = 0.012 * h_axis.span().max(v_axis.span());
    let mut overlay = |chart: &mut PlaneChart| -> Result<()> {
        // Grey ones first, so converged arrows stay on top.
        for &i in ok.iter().filter(|&&i| class(i) != PointClass::Converged).chain(conv.iter()) {
            let from = (p[b][i], -p[a][i]);
            let to = (p[b][i] + d[b][i] * gain, -(p[a][i] + d[a][i] * gain));
            let c = if class(i) == PointClass::Converged { cmap.rgb(len(i) / top) } else { [150, 150, 150] };
            figure::arrow(chart, from, to, c, 2, head)?;
            chart.plotting_area().draw(&Circle::new(from, 2, BLACK.filled())).map_err(drawing)?;
        }
        // The scale arrow in the lower right corner, labelled above it, on a white box
        // (in pixels, so that the box fits its label whatever the data's extent).
        let label = voxels_text(key, &physical(vs.as_ref(), b));
        let area = chart.plotting_area().strip_coord_spec();
        let (pw, ph) = area.dim_in_pixel();
        let (pw, ph) = (pw as i32, ph as i32);
        let len_px = ((key * gain / h_axis.span()) * pw as f64).round() as i32;
        let text_w = (label.chars().count() as f64 * figure::NOTE * 0.62) as i32;
        let box_w = len_px.max(text_w) + 20;
        let (bx0, by0, bx1, by1) = (pw - 8 - box_w, ph - 8 - 48, pw - 8, ph - 8);
        area.draw(&Rectangle::new([(bx0, by0), (bx1, by1)], WHITE.mix(0.9).filled())).map_err(drawing)?;
        area.draw(&Rectangle::new([(bx0, by0), (bx1, by1)], BLACK.stroke_width(1))).map_err(drawing)?;
        let mid = (bx0 + bx1) / 2;
        area.draw_text(&label, &figure::text_at(figure::NOTE, plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Top), (mid, by0 + 6)).map_err(drawing)?;
        let y = by1 - 14;
        let (a0, a1) = (mid - len_px / 2, mid + len_px - len_px / 2);
        for path in figure::arrow_paths((a0 as f64, y as f64), (a1 as f64, y as f64), 8.0) {
            area.draw(&PathElement::new(path.into_iter().map(|(x, y)| (x.round() as i32, y.round() as i32)).collect::<Vec<_>>(), BLACK.stroke_width(2))).map_err(drawing)?;
        }
        Ok(())
    };
    let mut canvas = figure::Canvas::new(lay.width, lay.height);
    canvas.draw(|root| {
        draw_title(root, &title, &subtitle)?;
        let plane_area = root.clone().shrink((0, lay.title_h), (lay.plane_w, lay.plane_h));
        draw_plane(&plane_area, &h_axis, &v_axis, &pixel, &mut overlay)?;
        let side = root.clone().shrink((lay.plane_w + 12, lay.title_h), (figure::SIDE_WIDTH, lay.height - lay.title_h));
        draw_side(&side, Some(&bar), lay.bar_h, &notes, &legend)?;
        Ok(())
    })?;
    Ok(Figure { canvas, chunks: vec![("dvc-stream:range", format!("0 {top}"))] })
}

/// A histogram of a column: 50 bins over the converged points' full range (or `--range`),
/// with axes for the value (and its physical unit for lengths) and the count.
pub fn histogram(table: &Table, column: &str, range: Option<(f64, f64)>) -> Result<Figure> {
    let values = table.column(column)?;
    let classes = table.classes().filter(|_| column != "returnStatus");
    let counted: Vec<f64> = (0..values.len()).filter(|&i| values[i].is_finite() && classes.as_ref().is_none_or(|c| c[i] == PointClass::Converged)).map(|i| values[i]).collect();
    let (not_conv, skipped) = classes.as_ref().map_or((0, 0), |c| (c.iter().filter(|&&k| k == PointClass::NotConverged).count(), c.iter().filter(|&&k| k == PointClass::Skipped).count()));
    let nan = (0..values.len()).filter(|&i| !values[i].is_finite() && classes.as_ref().is_none_or(|c| c[i] == PointClass::Converged)).count();
    let (lo, hi) = widened(range.unwrap_or_else(|| counted.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))));
    let (lo, hi) = if lo.is_finite() || hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    figure::drawable(lo, hi, column)?;
    if let Some((s, _)) = column_unit(column).1.and_then(|ax| physical(table.meta.voxel_size.as_ref(), ax)) {
        figure::drawable(lo * s, hi * s, column)?;
    }
    const BINS: usize = 50;
    let mut counts = [0usize; BINS];
    let mut outside = 0;
    for &v in &counted {
        if v < lo || v > hi {
            outside += 1;
            continue;
        }
        counts[(((v - lo) / (hi - lo) * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (unit, unit_axis) = column_unit(column);
    let phys = unit_axis.and_then(|ax| physical(table.meta.voxel_size.as_ref(), ax));
    let whom = if classes.is_some() { format!("converged points ({})", table.converged_name()) } else { "points".to_string() };
    let mut line = format!("{} {whom} in {BINS} bins", counted.len() - outside);
    let mut left_out = Vec::new();
    if not_conv > 0 {
        left_out.push(format!("{not_conv} not converged"));
    }
    if skipped > 0 {
        left_out.push(format!("{skipped} skipped"));
    }
    if nan > 0 {
        left_out.push(format!("{nan} NaN"));
    }
    if outside > 0 {
        left_out.push(format!("{outside} outside --range"));
    }
    if !left_out.is_empty() {
        line.push_str(&format!("; not counted: {}", left_out.join(", ")));
    }
    let subtitle = vec![line];
    let title = format!("{} — {column}: histogram", table.meta.name);
    let title_h = figure::title_height(subtitle.len());
    let (width, height) = (900u32, 560u32 + title_h);
    let x_desc = match unit {
        Some(u) => format!("{column} ({u})"),
        None => column.to_string(),
    };
    let mut canvas = figure::Canvas::new(width, height);
    canvas.draw(|root| {
        draw_title(root, &title, &subtitle)?;
        let area = root.clone().shrink((0, title_h), (width, height - title_h));
        let chart = ChartBuilder::on(&area)
            .margin_left(10)
            .margin_right(30)
            .margin_bottom(6)
            .set_label_area_size(LabelAreaPosition::Left, 80)
            .set_label_area_size(LabelAreaPosition::Bottom, 58)
            .set_label_area_size(LabelAreaPosition::Top, if phys.is_some() { 58 } else { 6 })
            .build_cartesian_2d(lo..hi, 0f64..top * 1.08)
            .map_err(drawing)?;
        let s = phys.as_ref().map_or(1.0, |p| p.0);
        let mut chart = chart.set_secondary_coord(lo * s..hi * s, 0f64..top * 1.08);
        let span = hi - lo;
        let fx = move |v: &f64| figure::number(*v, span);
        let fy = |v: &f64| figure::number(*v, 10.0);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_max_light_lines(1)
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .x_labels(9)
            .y_labels(7)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .label_style(figure::text(figure::TICK))
            .axis_desc_style(figure::text(figure::LABEL))
            .x_desc(x_desc.clone())
            .y_desc("points per bin")
            .draw()
            .map_err(drawing)?;
        let w = (hi - lo) / BINS as f64;
        chart
            .draw_series(counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(k, &c)| Rectangle::new([(lo + k as f64 * w, 0.0), (lo + (k + 1) as f64 * w, c as f64)], RGBColor(59, 110, 165).filled())))
            .map_err(drawing)?;
        if let Some((_, u)) = &phys {
            let pspan = span * s;
            let gx = move |v: &f64| figure::number(*v, pspan);
            chart
                .configure_secondary_axes()
                .x_labels(9)
                .y_labels(0)
                .x_label_formatter(&gx)
                .label_style(figure::text(figure::TICK))
                .axis_desc_style(figure::text(figure::LABEL))
                .x_desc(format!("{column} ({u})"))
                .draw()
                .map_err(drawing)?;
        }
        Ok(())
    })?;
    Ok(Figure { canvas, chunks: vec![("dvc-stream:range", format!("{lo} {hi}"))] })
}

/// The columns a quicklook shows: displacements and the status for Φ fields, every value
/// column for other tables (strain).
/// A table of a 2D image (every point at Z = 0) leaves out the columns that are 0 or 1 by
/// construction there: Zdisp, and the Z rows of the strain tensors (ezz, Uzx, zz, ...).
pub fn default_columns(t: &Table) -> Vec<String> {
    let two_d = t.len() > 1 && t.column("Zpos").is_ok_and(|z| z.iter().all(|v| *v == 0.0));
    let z_row = |n: &str| two_d && (n == "Zdisp" || (matches!(n.chars().next(), Some('e' | 'U' | 'z')) && n.len() <= 3 && n[1..].contains('z')));
    let phi_cols = ["Zdisp", "Ydisp", "Xdisp", "returnStatus"];
    if t.names.iter().any(|n| n == "Zdisp") {
        return phi_cols.iter().filter(|c| t.names.iter().any(|n| n == *c) && !z_row(c)).map(|c| c.to_string()).collect();
    }
    let skip = ["Zpos", "Ypos", "Xpos", "NodeNumber", "Label", "StrainPointNumber"];
    t.names.iter().filter(|n| !skip.contains(&n.as_str()) && !z_row(n)).cloned().collect()
}

/// What to draw and where.
pub struct PlotOptions<'a> {
    pub columns: Vec<String>,
    pub axis: usize,
    /// Node index of a grid slice; for scattered points, the image slice under the arrows.
    pub index: Option<usize>,
    pub range: Option<(f64, f64)>,
    pub colormap: Colormap,
    pub histogram: bool,
    /// An image to draw under the field.
    pub background: Option<&'a Volume>,
    pub opacity: f64,
}

/// Draws `table` into `dir` as `<stem>-<column>-<axis><index>.png` (grid), `<stem>-quiver-<axis>.png`
/// (scattered points with displacements) and `<stem>-<column>-histogram.png`, as outputs of
/// `outs`; returns the files.
pub fn plot_table(outs: &mut OutputSet, table: &Table, dir: &Path, stem: &str, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let axis_name = ["z", "y", "x"][o.axis];
    let columns = if o.columns.is_empty() { default_columns(table) } else { o.columns.clone() };
    for c in &columns {
        table.column(c)?;
    }
    if let (Some(bg), Some(shape)) = (o.background, table.meta.image_shape) {
        if bg.shape() != shape {
            bail!("{}: the background's shape {:?} differs from the image the table was measured on {:?}", bg.path().display(), bg.shape(), shape);
        }
    }
    let mut written = Vec::new();
    // Label tables are scattered points even when their centres happen to line up.
    let grid = if table.names.iter().any(|n| n == "Label") { None } else { table.grid() };
    match grid {
        Some(grid) => {
            let index = o.index.unwrap_or(grid.0[o.axis].len() / 2);
            if index >= grid.0[o.axis].len() {
                bail!("slice {index} is outside the grid's {} nodes on that axis", grid.0[o.axis].len());
            }
            let background = match o.background {
                Some(v) => {
                    let pos = grid.0[o.axis][index].round().max(0.0) as usize;
                    Some(Background::read(v, o.axis, pos).with_context(|| format!("node {index} lies at {} = {pos}", AXIS_NAMES[o.axis]))?)
                }
                None => None,
            };
            let mo = MapOptions { range: o.range, colormap: o.colormap, background: background.as_ref(), opacity: o.opacity };
            for c in &columns {
                let fig = grid_map(table, &grid, c, o.axis, index, &mo)?;
                written.push(fig.write(outs, &dir.join(format!("{stem}-{c}-{axis_name}{index}.png")))?);
            }
        }
        None => {
            table.column("Zpos")?;
            if ["Zdisp", "Ydisp", "Xdisp"].iter().all(|c| table.column(c).is_ok()) {
                let background = match o.background {
                    Some(v) => Some(Background::read(v, o.axis, o.index.unwrap_or(v.shape()[o.axis] / 2))?),
                    None => None,
                };
                let fig = quiver(table, o.axis, o.colormap, background.as_ref(), o.opacity)?;
                written.push(fig.write(outs, &dir.join(format!("{stem}-quiver-{axis_name}.png")))?);
            }
        }
    }
    if o.histogram {
        for c in &columns {
            written.push(histogram(table, c, o.range)?.write(outs, &dir.join(format!("{stem}-{c}-histogram.png")))?);
        }
    }
    if written.is_empty() {
        bail!("nothing to draw: the points are not on a grid and have no displacement columns (--histogram draws any column)");
    }
    Ok(written)
}

/// The quicklook `--png` writes next to a command's table (`table_path`, an output of
/// `outs` read back from its partial name): default columns, middle Z slice.
pub fn quicklook(outs: &mut OutputSet, table_path: &Path) -> Result<Vec<PathBuf>> {
    let written = outs.partial_of(table_path).unwrap_or(table_path).to_path_buf();
    let table = Table::read_as(&written, table_path)?;
    let dir = table_path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| ".".into());
    let stem = table_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let o = PlotOptions { columns: vec![], axis: 0, index: None, range: None, colormap: Colormap::Viridis, histogram: false, background: None, opacity: 0.6 };
    plot_table(outs, &table, &dir, &stem, &o).with_context(|| format!("{}: quicklook", table_path.display()))
}

/// The colour of a residual pixel outside image 2 after the warp.
const OUTSIDE: Rgb = [170, 70, 70];

/// |im1 − im2(Φx)| on the three middle slices (across Z, Y and X), each with axes in
/// voxels and its slice named, grey levels 0..`span` on a shared bar: the check by eye of a
/// registration. The mean residual of the three slices is in the `dvc-stream:residual`
/// text chunk.
pub fn residual_figure(view: &PairView, phi_full: &Phi, span: f32, title: &str, subtitle: &[String]) -> Result<Figure> {
    let s = view.shape();
    let slices: Vec<Array2<f32>> = (0..3)
        .map(|axis| view.values(&SliceRequest { picture: Picture::Difference, axis, index: s[axis] / 2, phi: *phi_full, lo: 0.0, hi: span }))
        .collect::<Result<_>>()?;
    residual_slices_figure(slices, s, view.im1.voxel_size(), view.bin, span, title, subtitle)
}

/// [`residual_figure`]'s picture from its three slices (across Z, Y, X of a box of shape `s`,
/// NaN = outside image 2), for residuals computed elsewhere (ddic's per-label report).
#[allow(clippy::too_many_arguments)]
pub fn residual_slices_figure(slices: Vec<Array2<f32>>, s: [usize; 3], vs: Option<VoxelSize>, bin: usize, span: f32, title: &str, subtitle: &[String]) -> Result<Figure> {
    let span = if span > 0.0 { span as f64 } else { 1.0 };
    let (sum, n) = slices.iter().flat_map(|p| p.iter()).filter(|v| v.is_finite()).fold((0.0f64, 0usize), |(s, n), &v| (s + v as f64, n + 1));
    let mean = if n > 0 { sum / n as f64 } else { f64::NAN };
    let outside = slices.iter().flat_map(|p| p.iter()).filter(|v| !v.is_finite()).count();
    let axes: Vec<(PlaneAxis, PlaneAxis)> = (0..3)
        .map(|axis| {
            let (a, b) = other_axes(axis);
            (
                PlaneAxis { name: AXIS_NAMES[b], lo: -0.5, hi: s[b] as f64 - 0.5, physical: physical(vs.as_ref(), b) },
                PlaneAxis { name: AXIS_NAMES[a], lo: -0.5, hi: s[a] as f64 - 0.5, physical: physical(vs.as_ref(), a) },
            )
        })
        .collect();
    // Two by two: across Z and Y above, across X and the colour bar below.
    let sizes: Vec<(u32, u32)> = axes.iter().map(|(h, v)| figure::plot_size(h, v, 330, 330)).collect();
    let (l, r, t, b) = figure::plane_margins(vs.as_ref().is_some_and(|v| v.is_known()));
    let panel_title_h = 28u32;
    // 30 pixels between the columns, so that one panel's right axis name stays clear of the next one's left.
    let cell_w = sizes.iter().map(|(w, _)| l + w + r).max().unwrap_or(400).max(figure::SIDE_WIDTH) + 30;
    let row_h = |k: usize| sizes[k].1 + t + b + panel_title_h + 24;
    let rows = [row_h(0).max(row_h(1)), row_h(2).max(260 + 140)];
    let mut sub = subtitle.to_vec();
    let level = if bin > 1 { format!(" (bin {bin})") } else { String::new() };
    sub.push(format!("middle slices of {} × {} × {} voxels{level}; mean residual {}", s[0], s[1], s[2], figure::number(mean, mean.abs().max(1.0))));
    let title_h = figure::title_height(sub.len());
    let width = 2 * cell_w + 10;
    let height = title_h + rows[0] + rows[1] + 8;
    let grey = |t: f64| grey_rgb(t.clamp(0.0, 1.0));
    let bar = ColourBar { title: "|im1 − im2(Φx)| (grey levels)".into(), lo: 0.0, hi: span, colour: &grey, physical: None };
    let legend = if outside > 0 { vec![(Swatch::Solid(OUTSIDE), format!("outside image 2 after Φ: {outside} pixels"))] } else { vec![] };
    let mut canvas = figure::Canvas::new(width, height);
    canvas.draw(|root| {
        draw_title(root, title, &sub)?;
        for (axis, ((h, v), (pw, _))) in axes.iter().zip(&sizes).enumerate() {
            let (x0, y0) = ((axis % 2) as u32 * cell_w, title_h + if axis < 2 { 0 } else { rows[0] });
            let area = root.clone().shrink((x0, y0), (cell_w, rows[axis / 2]));
            let name = AXIS_NAMES[axis];
            let label = format!("across {name}: {} = {}", name.to_lowercase(), s[axis] / 2);
            area.draw_text(&label, &figure::text_at(figure::LABEL, plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Top), ((l + pw / 2) as i32, 4)).map_err(drawing)?;
            let plane = area.clone().shrink((0, panel_title_h), (l + pw + r, rows[axis / 2] - panel_title_h - 24));
            let slice = &slices[axis];
            let pixel = |hv: f64, vv: f64, _: u32, _: u32| -> Rgb {
                let (rr, cc) = (vv.round().max(0.0) as usize, hv.round().max(0.0) as usize);
                match slice.get((rr, cc)) {
                    Some(x) if x.is_finite() => grey_rgb((*x as f64 / span).clamp(0.0, 1.0)),
                    Some(_) => OUTSIDE,
                    None => figure::WHITE_RGB,
                }
            };
            draw_plane(&plane, h, v, &pixel, &mut |_| Ok(()))?;
        }
        let side = root.clone().shrink((cell_w + 10, title_h + rows[0] + panel_title_h), (figure::SIDE_WIDTH, rows[1] - panel_title_h));
        draw_side(&side, Some(&bar), 240, &["black: the images agree".to_string()], &legend)?;
        Ok(())
    })?;
    Ok(Figure { canvas, chunks: vec![("dvc-stream:range", format!("0 {span}")), ("dvc-stream:residual", format!("{mean}"))] })
}
