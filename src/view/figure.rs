//! The drawing layer under every PNG figure: plotters on an RGB buffer, with a font compiled
//! into the binary.
//!
//! Why plotters and an embedded font: a figure a scientist reads needs axes, tick numbers, a
//! titled colour bar and a legend, and hand-drawn rasters had none. plotters lays out axes
//! and ticks; its `ab_glyph` renderer draws text from font bytes we hand it, so a cluster
//! node or a CI runner without any system font draws the same figure. The font is a subset
//! of DejaVu Sans (assets/fonts/, with its licence).
//!
//! Pictures of data (map cells, image slices) are rasterised here pixel by pixel into the
//! plotting area and blitted, so a 1000-pixel map costs one pass rather than a million
//! rectangles; plotters then draws axes, arrows and text over them.

use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

/// DejaVu Sans, cut to the characters figures use (see assets/fonts/README.md).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// The family every text style of a figure names; the embedded font is registered under it.
const FAMILY: &str = "sans-serif";

/// Text sizes in pixels.
pub const TITLE: f64 = 22.0;
pub const SUBTITLE: f64 = 15.0;
pub const LABEL: f64 = 17.0;
pub const TICK: f64 = 14.0;
pub const NOTE: f64 = 14.0;

/// The area a figure draws on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A chart of a plane: x is the horizontal axis in voxels, y the vertical axis in voxels
/// negated (so that rows run downwards, as in an image).
pub type PlaneChart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An RGB colour.
pub type Rgb = [u8; 3];

pub const WHITE_RGB: Rgb = [255, 255, 255];
/// Where a point exists but has no value (NaN).
pub const NO_VALUE: Rgb = [70, 70, 70];
/// Points a command skipped (masked, outside the grey range, no guess).
pub const SKIPPED: Rgb = [165, 165, 165];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are compiled in; the unit test `embedded_font_draws_text` proves they parse.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_BYTES);
    });
}

/// A plotters error as an anyhow one.
pub fn drawing<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure: {e}")
}

/// Black text of `size` pixels, anchored at its top left.
pub fn text(size: f64) -> TextStyle<'static> {
    register_font();
    (FAMILY, size).into_font().color(&BLACK)
}

/// Black text anchored by `h` and `v`.
pub fn text_at(size: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    text(size).pos(Pos::new(h, v))
}

/// Which way text runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Left to right.
    None,
    /// Upwards (the name of a left axis).
    Up,
    /// Downwards (the name of a right axis, as plotters draws it).
    Down,
}

/// Text turned a quarter to read upwards (a vertical axis' name).
pub fn text_up(size: f64) -> TextStyle<'static> {
    text(size).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center))
}

/// A white RGB canvas a figure is drawn on.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas { width, height, rgb: vec![255; width as usize * height as usize * 3] }
    }

    /// Draws on the whole canvas.
    pub fn draw(&mut self, f: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
        register_font();
        let root = BitMapBackend::with_buffer(&mut self.rgb, (self.width, self.height)).into_drawing_area();
        f(&root)?;
        root.present().map_err(drawing)
    }

    /// The PNG, with `chunks` as text chunks (keyword, text).
    pub fn png(&self, chunks: &[(&str, String)]) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            for (k, v) in chunks {
                enc.add_text_chunk(k.to_string(), v.clone()).map_err(|e| anyhow!("PNG: {e}"))?;
            }
            let mut w = enc.write_header().map_err(|e| anyhow!("PNG: {e}"))?;
            w.write_image_data(&self.rgb).map_err(|e| anyhow!("PNG: {e}"))?;
        }
        Ok(bytes)
    }
}

/// How a unit is written on an axis: `micrometer` → `µm`.
pub fn unit_symbol(ngff: &str) -> String {
    match ngff {
        "micrometer" => "µm",
        "nanometer" => "nm",
        "millimeter" => "mm",
        "centimeter" => "cm",
        "meter" => "m",
        "angstrom" => "Å",
        "inch" => "in",
        other => other,
    }
    .to_string()
}

/// A number as a tick label for an axis spanning `span`: as many decimals as the span needs,
/// trailing zeros trimmed, a true minus sign; scientific notation for very large or small.
pub fn number(v: f64, span: f64) -> String {
    if !v.is_finite() {
        return "NaN".into();
    }
    let span = span.abs();
    let s = if v != 0.0 && (v.abs() >= 1e5 || (span > 0.0 && span < 1e-4)) {
        format!("{v:.2e}")
    } else {
        let decimals = if span > 0.0 { (2.0 - span.log10().floor()).clamp(0.0, 8.0) as usize } else { 3 };
        let mut s = format!("{v:.decimals$}");
        if s.contains('.') {
            s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        s
    };
    let s = if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') { s.trim_start_matches('-').to_string() } else { s };
    s.replace('-', "−")
}

/// Refuses a range plotters cannot lay ticks on (infinite, NaN, empty, or wider than the
/// largest float): an error naming `what`, instead of a figure that never finishes.
pub fn drawable(lo: f64, hi: f64, what: &str) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && (hi - lo).is_finite() && hi > lo {
        Ok(())
    } else {
        Err(anyhow!("{what}: the range {lo:.3e} … {hi:.3e} cannot be drawn (set one with --range)"))
    }
}

/// One axis of a plane in voxels: `lo..hi` is the extent shown, `physical` the size of a
/// voxel along it and the unit's symbol, when known.
#[derive(Clone, Debug)]
pub struct PlaneAxis {
    pub name: &'static str,
    pub lo: f64,
    pub hi: f64,
    pub physical: Option<(f64, String)>,
}

impl PlaneAxis {
    pub fn span(&self) -> f64 {
        self.hi - self.lo
    }
    /// The extent as drawn: in physical units when known (so that anisotropic voxels keep
    /// their shape).
    fn drawn_span(&self) -> f64 {
        self.span() * self.physical.as_ref().map_or(1.0, |p| p.0)
    }
}

/// Label areas around a plane's plotting area (left, right, top, bottom), in pixels.
pub fn plane_margins(physical: bool) -> (u32, u32, u32, u32) {
    if physical {
        (86, 78, 58, 58)
    } else {
        (86, 16, 12, 58)
    }
}

/// The plotting-area size of a plane fitted in `max_w × max_h` with the data's aspect
/// (bounded to 1:6 so a thin slab stays visible).
pub fn plot_size(h: &PlaneAxis, v: &PlaneAxis, max_w: u32, max_h: u32) -> (u32, u32) {
    let aspect = (h.drawn_span() / v.drawn_span().max(1e-12)).clamp(1.0 / 6.0, 6.0);
    let (mw, mh) = (max_w as f64, max_h as f64);
    let (w, hgt) = if mw / mh > aspect { (mh * aspect, mh) } else { (mw, mw / aspect) };
    (w.round().max(40.0) as u32, hgt.round().max(40.0) as u32)
}

/// Draws a plane on `area`: each pixel of the plotting area gets `pixel(h, v, px, py)`
/// (the voxel coordinates of its centre, and its pixel position for patterns); then axes
/// with ticks in voxels (bottom, left) and, when the voxel size is known, in physical units
/// (top, right); then `overlay` on the chart (arrows, markers), in voxel coordinates (x, −y).
pub fn draw_plane(area: &Area, h: &PlaneAxis, v: &PlaneAxis, pixel: &dyn Fn(f64, f64, u32, u32) -> Rgb, overlay: &mut dyn FnMut(&mut PlaneChart) -> Result<()>) -> Result<()> {
    let physical = h.physical.is_some() || v.physical.is_some();
    for a in [h, v] {
        let s = a.physical.as_ref().map_or(1.0, |p| p.0);
        drawable(a.lo, a.hi, &format!("{} axis", a.name))?;
        drawable(a.lo * s, a.hi * s, &format!("{} axis in physical units", a.name))?;
    }
    let (l, r, t, b) = plane_margins(physical);
    let chart = ChartBuilder::on(area)
        .margin_left(8)
        .set_label_area_size(LabelAreaPosition::Left, l - 8)
        .set_label_area_size(LabelAreaPosition::Right, r)
        .set_label_area_size(LabelAreaPosition::Top, t)
        .set_label_area_size(LabelAreaPosition::Bottom, b)
        .build_cartesian_2d(h.lo..h.hi, -v.hi..-v.lo)
        .map_err(drawing)?;
    let (sh, sv) = (h.physical.as_ref().map_or(1.0, |p| p.0), v.physical.as_ref().map_or(1.0, |p| p.0));
    let mut chart = chart.set_secondary_coord(h.lo * sh..h.hi * sh, -v.hi * sv..-v.lo * sv);
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let mut buf = vec![255u8; pw as usize * ph as usize * 3];
    for py in 0..ph {
        let vv = v.lo + (py as f64 + 0.5) / ph as f64 * v.span();
        for px in 0..pw {
            let hv = h.lo + (px as f64 + 0.5) / pw as f64 * h.span();
            let o = (py as usize * pw as usize + px as usize) * 3;
            buf[o..o + 3].copy_from_slice(&pixel(hv, vv, px, py));
        }
    }
    let bitmap = BitMapElement::with_owned_buffer((h.lo, -v.lo), (pw, ph), buf).ok_or_else(|| anyhow!("drawing the figure: raster size"))?;
    chart.plotting_area().draw(&bitmap).map_err(drawing)?;
    let span_h = h.span();
    let span_v = v.span();
    let fx = move |x: &f64| number(*x, span_h);
    let fy = move |y: &f64| number(-*y, span_v);
    chart
        .configure_mesh()
        .disable_mesh()
        .set_all_tick_mark_size(5)
        .x_labels(7)
        .y_labels(7)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .label_style(text(TICK))
        .axis_desc_style(text(LABEL))
        .x_desc(format!("{} (voxels)", h.name))
        .y_desc(format!("{} (voxels)", v.name))
        .draw()
        .map_err(drawing)?;
    if physical {
        let (ph_span, pv_span) = (span_h * sh, span_v * sv);
        let gx = move |x: &f64| number(*x, ph_span);
        let gy = move |y: &f64| number(-*y, pv_span);
        let unit = |a: &PlaneAxis| a.physical.as_ref().map_or_else(|| "voxels".to_string(), |p| p.1.clone());
        chart
            .configure_secondary_axes()
            .set_all_tick_mark_size(5)
            .x_labels(7)
            .y_labels(7)
            .x_label_formatter(&gx)
            .y_label_formatter(&gy)
            .label_style(text(TICK))
            .axis_desc_style(text(LABEL))
            .x_desc(format!("{} ({})", h.name, unit(h)))
            .y_desc(format!("{} ({})", v.name, unit(v)))
            .draw()
            .map_err(drawing)?;
    }
    let frame = Rectangle::new([(h.lo, -v.lo), (h.hi, -v.hi)], BLACK.stroke_width(1));
    chart.plotting_area().draw(&frame).map_err(drawing)?;
    overlay(&mut chart)
}

/// What a legend entry looks like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Swatch {
    Solid(Rgb),
    /// Grey stripes: points that are there but did not converge.
    Hatched,
    /// An arrow of the given colour.
    Arrow(Rgb),
}

/// The hatch's colour at pixel (px, py): diagonal stripes 3 of 8 pixels wide.
pub fn hatch(px: u32, py: u32) -> Rgb {
    if (px + py) % 8 < 3 {
        [95, 95, 95]
    } else {
        [215, 215, 215]
    }
}

/// A colour bar: values `lo..hi` through `colour` (t in 0..1), a title above it, tick
/// numbers on its left and, when the values are lengths of known voxel size, the same
/// values in physical units on its right.
pub struct ColourBar<'a> {
    pub title: String,
    pub lo: f64,
    pub hi: f64,
    pub colour: &'a dyn Fn(f64) -> Rgb,
    pub physical: Option<(f64, String)>,
}

/// Width of the column holding a colour bar, its notes and the legend.
pub const SIDE_WIDTH: u32 = 250;

/// Splits `s` into lines of at most `width` characters at spaces.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split(' ') {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// Draws the side column: the colour bar (when given), `notes` below it, then the legend.
/// Returns the y below the last line drawn.
pub fn draw_side(area: &Area, bar: Option<&ColourBar>, bar_height: u32, notes: &[String], legend: &[(Swatch, String)]) -> Result<i32> {
    let (w, _) = area.dim_in_pixel();
    let mut y = 6i32;
    if let Some(bar) = bar {
        for line in wrap(&bar.title, 26) {
            area.draw_text(&line, &text_at(LABEL, HPos::Center, VPos::Top), (w as i32 / 2, y)).map_err(drawing)?;
            y += LABEL as i32 + 4;
        }
        y += 4;
        let (left, right) = (78u32, if bar.physical.is_some() { 78 } else { 0 });
        let bar_w = 26u32;
        let total = left + bar_w + right;
        let x0 = (w.saturating_sub(total) / 2) as i32;
        let sub = area.clone().shrink((x0, y), (total, bar_height));
        let (lo, hi) = (bar.lo, if bar.hi > bar.lo { bar.hi } else { bar.lo + 1.0 });
        drawable(lo, hi, &bar.title)?;
        let scale = bar.physical.as_ref().map_or(1.0, |p| p.0);
        drawable(lo * scale, hi * scale, &bar.title)?;
        let chart = ChartBuilder::on(&sub)
            .margin_top(8)
            .margin_bottom(8)
            .set_label_area_size(LabelAreaPosition::Left, left)
            .set_label_area_size(LabelAreaPosition::Right, right)
            .build_cartesian_2d(0f64..1f64, lo..hi)
            .map_err(drawing)?;
        let s = bar.physical.as_ref().map_or(1.0, |p| p.0);
        let mut chart = chart.set_secondary_coord(0f64..1f64, lo * s..hi * s);
        let (pw, ph) = chart.plotting_area().dim_in_pixel();
        let mut buf = vec![0u8; pw as usize * ph as usize * 3];
        for py in 0..ph {
            let c = (bar.colour)(1.0 - (py as f64 + 0.5) / ph as f64);
            for px in 0..pw as usize {
                let o = (py as usize * pw as usize + px) * 3;
                buf[o..o + 3].copy_from_slice(&c);
            }
        }
        let bitmap = BitMapElement::with_owned_buffer((0.0, hi), (pw, ph), buf).ok_or_else(|| anyhow!("drawing the figure: colour bar size"))?;
        chart.plotting_area().draw(&bitmap).map_err(drawing)?;
        let span = hi - lo;
        let f = move |v: &f64| number(*v, span);
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .set_all_tick_mark_size(5)
            .y_labels(9)
            .y_label_formatter(&f)
            .label_style(text(TICK))
            .draw()
            .map_err(drawing)?;
        if let Some((_, unit)) = &bar.physical {
            let pspan = span * s;
            let g = move |v: &f64| number(*v, pspan);
            chart
                .configure_secondary_axes()
                .set_all_tick_mark_size(5)
                .x_labels(0)
                .y_labels(9)
                .y_label_formatter(&g)
                .label_style(text(TICK))
                .axis_desc_style(text(LABEL))
                .y_desc(unit.clone())
                .draw()
                .map_err(drawing)?;
        }
        chart.plotting_area().draw(&Rectangle::new([(0.0, lo), (1.0, hi)], BLACK.stroke_width(1))).map_err(drawing)?;
        y += bar_height as i32 + 6;
    }
    for note in notes {
        for line in wrap(note, 30) {
            area.draw_text(&line, &text(NOTE), (12, y)).map_err(drawing)?;
            y += NOTE as i32 + 4;
        }
    }
    if !legend.is_empty() {
        y += 8;
    }
    for (swatch, label) in legend {
        let lines = wrap(label, 26);
        let (sx, sw, sh) = (12i32, 26i32, 16i32);
        match *swatch {
            Swatch::Solid(c) => {
                area.draw(&Rectangle::new([(sx, y), (sx + sw, y + sh)], RGBColor(c[0], c[1], c[2]).filled())).map_err(drawing)?;
            }
            Swatch::Hatched => {
                let mut buf = Vec::with_capacity((sw * sh * 3) as usize);
                for py in 0..sh as u32 {
                    for px in 0..sw as u32 {
                        buf.extend_from_slice(&hatch(px, py));
                    }
                }
                let bitmap = BitMapElement::with_owned_buffer((sx, y), (sw as u32, sh as u32), buf).ok_or_else(|| anyhow!("drawing the figure: swatch"))?;
                area.draw(&bitmap).map_err(drawing)?;
            }
            Swatch::Arrow(c) => {
                let col = RGBColor(c[0], c[1], c[2]);
                let (y0, x1) = (y + sh / 2, sx + sw);
                area.draw(&PathElement::new(vec![(sx, y0), (x1, y0)], col.stroke_width(2))).map_err(drawing)?;
                area.draw(&PathElement::new(vec![(x1 - 7, y0 - 4), (x1, y0), (x1 - 7, y0 + 4)], col.stroke_width(2))).map_err(drawing)?;
            }
        }
        if !matches!(swatch, Swatch::Arrow(_)) {
            area.draw(&Rectangle::new([(sx, y), (sx + sw, y + sh)], BLACK.stroke_width(1))).map_err(drawing)?;
        }
        for (k, line) in lines.iter().enumerate() {
            area.draw_text(line, &text(NOTE), (sx + sw + 8, y + 1 + k as i32 * (NOTE as i32 + 3))).map_err(drawing)?;
        }
        y += (lines.len() as i32 * (NOTE as i32 + 3)).max(sh) + 8;
    }
    Ok(y)
}

/// Draws a figure's title and subtitle lines at the top of `area`; returns the band's height.
pub fn draw_title(area: &Area, title: &str, subtitle: &[String]) -> Result<u32> {
    let (w, _) = area.dim_in_pixel();
    let mut y = 10i32;
    area.draw_text(title, &text_at(TITLE, HPos::Center, VPos::Top), (w as i32 / 2, y)).map_err(drawing)?;
    y += TITLE as i32 + 8;
    for line in subtitle {
        area.draw_text(line, &text_at(SUBTITLE, HPos::Center, VPos::Top), (w as i32 / 2, y)).map_err(drawing)?;
        y += SUBTITLE as i32 + 5;
    }
    Ok(y as u32 + 6)
}

/// Height of the title band [`draw_title`] draws with `lines` subtitle lines.
pub fn title_height(lines: usize) -> u32 {
    10 + TITLE as u32 + 8 + lines as u32 * (SUBTITLE as u32 + 5) + 6
}

/// The strokes of an arrow from `from` to `to`: the shaft, then a head of length `head`
/// (at most 35 % of the arrow) at ±25°.
pub fn arrow_paths(from: (f64, f64), to: (f64, f64), head: f64) -> Vec<Vec<(f64, f64)>> {
    let mut paths = vec![vec![from, to]];
    let (dx, dy) = (to.0 - from.0, to.1 - from.1);
    let l = (dx * dx + dy * dy).sqrt();
    if l > 0.0 && head > 0.0 {
        let hl = head.min(0.35 * l);
        let (ux, uy) = (-dx / l, -dy / l);
        let (c, s) = (25f64.to_radians().cos(), 25f64.to_radians().sin());
        let left = (to.0 + (ux * c - uy * s) * hl, to.1 + (ux * s + uy * c) * hl);
        let right = (to.0 + (ux * c + uy * s) * hl, to.1 + (-ux * s + uy * c) * hl);
        paths.push(vec![left, to, right]);
    }
    paths
}

/// An arrow on a plane chart (voxel coordinates), `width` pixels wide.
pub fn arrow(chart: &mut PlaneChart, from: (f64, f64), to: (f64, f64), colour: Rgb, width: u32, head: f64) -> Result<()> {
    let style = RGBColor(colour[0], colour[1], colour[2]).stroke_width(width);
    for path in arrow_paths(from, to, head) {
        chart.plotting_area().draw(&PathElement::new(path, style)).map_err(drawing)?;
    }
    Ok(())
}

/// The pixels `s` makes in black text of `size` on white (turned as `turn` says), cropped to its ink: (width, height, RGB). Tests find drawn labels with it, since
/// the same font and size give the same pixels wherever the text is drawn.
pub fn text_stamp(s: &str, size: f64, turn: Turn) -> Result<(usize, usize, Vec<u8>)> {
    let side = (size * (s.chars().count() as f64 + 2.0)).ceil() as u32 + 20;
    let mut c = Canvas::new(side, side);
    c.draw(|a| {
        let style = match turn {
            Turn::None => text_at(size, HPos::Center, VPos::Center),
            Turn::Up => text_up(size),
            Turn::Down => text(size).transform(FontTransform::Rotate90).pos(Pos::new(HPos::Center, VPos::Center)),
        };
        a.draw_text(s, &style, (side as i32 / 2, side as i32 / 2)).map_err(drawing)
    })?;
    let (w, h) = (c.width as usize, c.height as usize);
    let ink = |x: usize, y: usize| c.rgb[(y * w + x) * 3..(y * w + x) * 3 + 3] != [255, 255, 255];
    let xs: Vec<usize> = (0..w).filter(|&x| (0..h).any(|y| ink(x, y))).collect();
    let ys: Vec<usize> = (0..h).filter(|&y| (0..w).any(|x| ink(x, y))).collect();
    let (Some(&x0), Some(&x1), Some(&y0), Some(&y1)) = (xs.first(), xs.last(), ys.first(), ys.last()) else {
        return Ok((0, 0, vec![]));
    };
    let (sw, sh) = (x1 - x0 + 1, y1 - y0 + 1);
    let mut out = Vec::with_capacity(sw * sh * 3);
    for y in y0..=y1 {
        out.extend_from_slice(&c.rgb[(y * w + x0) * 3..(y * w + x1 + 1) * 3]);
    }
    Ok((sw, sh, out))
}

/// Whether the RGB image `(w, h, px)` holds `stamp` exactly somewhere.
pub fn contains_stamp(w: usize, h: usize, px: &[u8], stamp: &(usize, usize, Vec<u8>)) -> bool {
    let (sw, sh, sp) = (stamp.0, stamp.1, &stamp.2);
    if sw == 0 || sw > w || sh > h {
        return false;
    }
    let row = |y: usize, x: usize| &px[(y * w + x) * 3..(y * w + x + sw) * 3];
    (0..=h - sh).any(|y| (0..=w - sw).any(|x| (0..sh).all(|k| row(y + k, x) == &sp[k * sw * 3..(k + 1) * sw * 3])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_draws_text() {
        let (w, h, px) = text_stamp("Zdisp (µm) −1.5", 17.0, Turn::None).unwrap();
        assert!(w > 80 && h > 10, "{w} × {h}");
        assert!(px.chunks(3).filter(|p| p[0] < 100).count() > 100, "dark text pixels");
        let up = text_stamp("Zdisp", 17.0, Turn::Up).unwrap();
        assert!(up.1 > up.0, "turned text is taller than wide: {} × {}", up.0, up.1);
    }

    #[test]
    fn stamps_are_found_where_drawn_and_only_there() {
        let mut c = Canvas::new(300, 120);
        c.draw(|a| {
            a.draw_text("Ydisp (voxels)", &text_at(LABEL, HPos::Center, VPos::Center), (150, 40)).map_err(drawing)?;
            a.draw_text("Y", &text_up(LABEL), (30, 90)).map_err(drawing)
        })
        .unwrap();
        let (w, h) = (c.width as usize, c.height as usize);
        assert!(contains_stamp(w, h, &c.rgb, &text_stamp("Ydisp (voxels)", LABEL, Turn::None).unwrap()));
        assert!(contains_stamp(w, h, &c.rgb, &text_stamp("Y", LABEL, Turn::Up).unwrap()));
        assert!(!contains_stamp(w, h, &c.rgb, &text_stamp("Xdisp (voxels)", LABEL, Turn::None).unwrap()));
    }

    #[test]
    fn tick_numbers() {
        assert_eq!(number(-1.5, 4.0), "−1.5");
        assert_eq!(number(0.30000000000000004, 1.0), "0.3");
        assert_eq!(number(-0.0, 1.0), "0");
        assert_eq!(number(120.0, 300.0), "120");
        assert_eq!(number(0.0015, 0.004), "0.0015");
        assert_eq!(number(2.5e-5, 5e-5), "2.50e−5");
        assert_eq!(unit_symbol("micrometer"), "µm");
    }

    #[test]
    fn plot_size_keeps_the_aspect() {
        let a = |lo: f64, hi: f64, p: Option<f64>| PlaneAxis { name: "X", lo, hi, physical: p.map(|s| (s, "µm".into())) };
        assert_eq!(plot_size(&a(0.0, 200.0, None), &a(0.0, 100.0, None), 700, 600), (700, 350));
        assert_eq!(plot_size(&a(0.0, 100.0, None), &a(0.0, 200.0, None), 700, 600), (300, 600));
        // Anisotropic voxels: 100 voxels of 2 µm across, 100 of 1 µm down.
        assert_eq!(plot_size(&a(0.0, 100.0, Some(2.0)), &a(0.0, 100.0, Some(1.0)), 700, 600), (700, 350));
    }
}
