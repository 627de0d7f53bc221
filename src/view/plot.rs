//! Pictures of result tables: colour maps of any column on a slice through a grid field,
//! arrows (quiver) for fields of scattered points such as labels, and histograms, as PNG.
//!
//! Tables are read by column name from Parquet or spam TSV, so every table dvc-stream writes
//! works: Φ fields (Zdisp, returnStatus, pixelSearchCC, …) and strain tables (vol, dev, …).
//! PNGs carry their colour range in a text chunk (`dvc-stream:range`), as there is no text
//! drawn in the picture itself.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::store::output::OutputSet;

/// A table's numeric columns.
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
}

impl Table {
    /// Reads a Parquet table (any numeric columns) or a spam TSV.
    pub fn read(path: &Path) -> Result<Table> {
        // By content, not by name: a quicklook reads a table still under its `.partial` name.
        if crate::field::format::is_parquet(path) {
            let (names, columns) = crate::field::parquet::read_columns(path)?;
            return Ok(Table { names, columns });
        }
        let t = crate::field::tsv::read_table(path)?;
        let columns = (0..t.columns.len()).map(|k| t.rows.iter().map(|r| r[k]).collect()).collect();
        Ok(Table { names: t.columns, columns })
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
        let t = t.clamp(0.0, 1.0);
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

/// Colour of a value without data.
pub const NO_DATA: [u8; 3] = [96, 96, 96];

/// An RGB picture.
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    pub range: (f64, f64),
}

impl Picture {
    fn new(width: usize, height: usize, fill: [u8; 3]) -> Picture {
        Picture { width, height, rgb: fill.repeat(width * height), range: (0.0, 0.0) }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let o = (y as usize * self.width + x as usize) * 3;
            self.rgb[o..o + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        // Bresenham.
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Writes the PNG, with the colour range in a text chunk, as output `path` of `outs`.
    pub fn write(&self, outs: &mut OutputSet, path: &Path) -> Result<PathBuf> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.add_text_chunk("dvc-stream:range".into(), format!("{} {}", self.range.0, self.range.1)).map_err(|e| anyhow!("PNG: {e}"))?;
            let mut w = enc.write_header().map_err(|e| anyhow!("PNG: {e}"))?;
            w.write_image_data(&self.rgb).map_err(|e| anyhow!("PNG: {e}"))?;
        }
        let partial = outs.file(path)?;
        std::fs::write(&partial, &bytes).with_context(|| format!("{}: cannot write", partial.display()))?;
        Ok(path.to_path_buf())
    }
}

/// Finite range of values, or (0, 1) when there is none.
fn finite_range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if lo.is_finite() { (lo, if hi > lo { hi } else { lo + 1.0 }) } else { (0.0, 1.0) }
}

/// Pixels per grid node so that the longer side reaches about 256 pixels.
fn cell_size(h: usize, w: usize) -> usize {
    (256 / h.max(w).max(1)).clamp(1, 32)
}

/// Width of the colour bar at the right of a map.
const BAR: usize = 16;

/// A colour map of `values` (one per row of the table) on the grid slice `axis = index`
/// (node index). Rows are the first other axis (Z, Y, X order), columns the second; each node
/// is a square of pixels; a colour bar (low at the bottom) sits on the right.
pub fn grid_map(values: &[f64], grid: &([Vec<f64>; 3], Vec<[usize; 3]>), axis: usize, index: usize, range: Option<(f64, f64)>, cmap: Colormap) -> Result<Picture> {
    let (axes, idx) = grid;
    if index >= axes[axis].len() {
        bail!("slice {index} is outside the grid's {} nodes on that axis", axes[axis].len());
    }
    let (a, b) = super::render::other_axes(axis);
    let (h, w) = (axes[a].len(), axes[b].len());
    let mut plane = vec![f64::NAN; h * w];
    for (i, n) in idx.iter().enumerate() {
        if n[axis] == index {
            plane[n[a] * w + n[b]] = values[i];
        }
    }
    let (lo, hi) = range.unwrap_or_else(|| finite_range(plane.iter().copied()));
    let s = cell_size(h, w);
    let mut pic = Picture::new(w * s + BAR + 4, h * s, [0, 0, 0]);
    pic.range = (lo, hi);
    for r in 0..h * s {
        for c in 0..w * s {
            let v = plane[(r / s) * w + c / s];
            pic.set(c as i64, r as i64, if v.is_finite() { cmap.rgb((v - lo) / (hi - lo)) } else { NO_DATA });
        }
        let t = 1.0 - r as f64 / (h * s - 1).max(1) as f64;
        for c in 0..BAR {
            pic.set((w * s + 4 + c) as i64, r as i64, cmap.rgb(t));
        }
    }
    Ok(pic)
}

/// Arrows from each point (projected across `axis`) along its displacement (the two other
/// components), scaled so that the median arrow is 3 % of the picture, coloured by the
/// displacement's length; 512 pixels on the longer side.
pub fn quiver(positions: &[[f64; 3]], disp: &[[f64; 3]], axis: usize, cmap: Colormap) -> Result<Picture> {
    let (a, b) = super::render::other_axes(axis);
    let ok: Vec<usize> = (0..positions.len()).filter(|&i| positions[i].iter().chain(&disp[i]).all(|v| v.is_finite())).collect();
    if ok.is_empty() {
        bail!("no point with a finite position and displacement");
    }
    let (ya, yb) = finite_range(ok.iter().map(|&i| positions[i][a]));
    let (xa, xb) = finite_range(ok.iter().map(|&i| positions[i][b]));
    let side = 512.0;
    let scale = side / (yb - ya).max(xb - xa);
    let (h, w) = (((yb - ya) * scale).ceil() as usize + 33, ((xb - xa) * scale).ceil() as usize + 33);
    let len = |i: usize| (disp[i][a].powi(2) + disp[i][b].powi(2)).sqrt();
    let mut lens: Vec<f64> = ok.iter().map(|&i| len(i)).collect();
    lens.sort_by(|x, y| x.total_cmp(y));
    let median = lens[lens.len() / 2].max(1e-12);
    let arrow = 0.03 * side / median;
    let (lo, hi) = (0.0, lens[lens.len() - 1].max(1e-12));
    let mut pic = Picture::new(w, h, [0, 0, 0]);
    pic.range = (lo, hi);
    for &i in &ok {
        let p0 = ((16.0 + (positions[i][b] - xa) * scale) as i64, (16.0 + (positions[i][a] - ya) * scale) as i64);
        let (dx, dy) = (disp[i][b] * arrow, disp[i][a] * arrow);
        let p1 = ((p0.0 as f64 + dx).round() as i64, (p0.1 as f64 + dy).round() as i64);
        let c = cmap.rgb(len(i) / hi);
        pic.line(p0, p1, c);
        // Arrow head: two strokes back from the tip at ±25°.
        let l = (dx * dx + dy * dy).sqrt();
        if l >= 4.0 {
            for sgn in [-1.0f64, 1.0] {
                let (ca, sa) = (25f64.to_radians().cos(), sgn * 25f64.to_radians().sin());
                let (ux, uy) = (-dx / l, -dy / l);
                let head = (p1.0 + ((ux * ca - uy * sa) * l * 0.3).round() as i64, p1.1 + ((ux * sa + uy * ca) * l * 0.3).round() as i64);
                pic.line(p1, head, c);
            }
        }
        pic.set(p0.0, p0.1, [255, 255, 255]);
    }
    Ok(pic)
}

/// A histogram of the finite values: 50 bins over the range, white bars, 400 × 240 pixels.
pub fn histogram(values: &[f64], range: Option<(f64, f64)>) -> Picture {
    let (lo, hi) = range.unwrap_or_else(|| finite_range(values.iter().copied()));
    const BINS: usize = 50;
    let mut counts = [0usize; BINS];
    for &v in values.iter().filter(|v| v.is_finite() && **v >= lo && **v <= hi) {
        counts[(((v - lo) / (hi - lo) * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, h) = (BINS * 8, 240);
    let mut pic = Picture::new(w, h, [0, 0, 0]);
    pic.range = (lo, hi);
    for (k, &c) in counts.iter().enumerate() {
        let bar = (c as f64 / top as f64 * (h - 1) as f64).round() as usize;
        for y in h - bar..h {
            for x in k * 8..k * 8 + 7 {
                pic.set(x as i64, y as i64, [230, 230, 230]);
            }
        }
    }
    pic
}

/// The columns a quicklook shows: displacements and the status for Φ fields, every value
/// column for other tables (strain).
pub fn default_columns(t: &Table) -> Vec<String> {
    let phi_cols = ["Zdisp", "Ydisp", "Xdisp", "returnStatus"];
    if t.names.iter().any(|n| n == "Zdisp") {
        return phi_cols.iter().filter(|c| t.names.iter().any(|n| n == *c)).map(|c| c.to_string()).collect();
    }
    let skip = ["Zpos", "Ypos", "Xpos", "NodeNumber", "Label", "StrainPointNumber"];
    t.names.iter().filter(|n| !skip.contains(&n.as_str())).cloned().collect()
}

/// What to draw and where.
pub struct PlotOptions {
    pub columns: Vec<String>,
    pub axis: usize,
    pub index: Option<usize>,
    pub range: Option<(f64, f64)>,
    pub colormap: Colormap,
    pub histogram: bool,
}

/// Draws `table` into `dir` as `<stem>-<column>-<axis><index>.png` (grid), `<stem>-quiver-<axis>.png`
/// (scattered points with displacements) and `<stem>-<column>-histogram.png`, as outputs of
/// `outs`; returns the files.
pub fn plot_table(outs: &mut OutputSet, table: &Table, dir: &Path, stem: &str, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let axis_name = ["z", "y", "x"][o.axis];
    let columns = if o.columns.is_empty() { default_columns(table) } else { o.columns.clone() };
    let mut written = Vec::new();
    // Label tables are scattered points even when their centres happen to line up.
    let grid = if table.names.iter().any(|n| n == "Label") { None } else { table.grid() };
    match grid {
        Some(grid) => {
            let index = o.index.unwrap_or(grid.0[o.axis].len() / 2);
            for c in &columns {
                let pic = grid_map(table.column(c)?, &grid, o.axis, index, o.range, o.colormap)?;
                written.push(pic.write(outs, &dir.join(format!("{stem}-{c}-{axis_name}{index}.png")))?);
            }
        }
        None => {
            let pos: Vec<[f64; 3]> = {
                let p = [table.column("Zpos")?, table.column("Ypos")?, table.column("Xpos")?];
                (0..table.len()).map(|i| [p[0][i], p[1][i], p[2][i]]).collect()
            };
            if let (Ok(z), Ok(y), Ok(x)) = (table.column("Zdisp"), table.column("Ydisp"), table.column("Xdisp")) {
                let d: Vec<[f64; 3]> = (0..table.len()).map(|i| [z[i], y[i], x[i]]).collect();
                written.push(quiver(&pos, &d, o.axis, o.colormap)?.write(outs, &dir.join(format!("{stem}-quiver-{axis_name}.png")))?);
            }
        }
    }
    if o.histogram {
        for c in &columns {
            written.push(histogram(table.column(c)?, o.range).write(outs, &dir.join(format!("{stem}-{c}-histogram.png")))?);
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
    let table = Table::read(&written)?;
    let dir = table_path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| ".".into());
    let stem = table_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let o = PlotOptions { columns: vec![], axis: 0, index: None, range: None, colormap: Colormap::Viridis, histogram: false };
    plot_table(outs, &table, &dir, &stem, &o).with_context(|| format!("{}: quicklook", table_path.display()))
}
