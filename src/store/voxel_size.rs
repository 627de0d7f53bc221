//! The physical size of a voxel, carried from the scan to every store, TIFF and table.
//!
//! A CT scan's voxel size lives in its TIFF metadata (ImageJ's `spacing=`/`unit=` description
//! and X/Y resolution tags, or OME-TIFF's `PhysicalSize*` attributes). Lost, strains still
//! come out right (they are ratios) but every figure, store and table says "1 pixel" where the
//! scientist measured 0.5 µm. This module reads it from TIFF metadata, names units as
//! OME-NGFF does, and writes ImageJ's form back, so the value survives each conversion.

use std::io::{Read, Seek};

use tiff::decoder::{ifd::Value, Decoder};
use tiff::tags::Tag;

/// Size of a voxel along Z, Y, X and its unit (an OME-NGFF unit name such as `micrometer`;
/// `None` when the source did not say).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VoxelSize {
    pub zyx: [f64; 3],
    pub unit: Option<String>,
}

impl VoxelSize {
    /// One unit per voxel, no unit: what is assumed when nothing is known.
    pub fn unknown() -> VoxelSize {
        VoxelSize { zyx: [1.0; 3], unit: None }
    }

    /// Whether anything is known beyond the default.
    pub fn is_known(&self) -> bool {
        self.unit.is_some() || self.zyx != [1.0; 3]
    }

    /// The size of a voxel at bin level `bin` (spam's binning by 2^k).
    pub fn binned(&self, bin: usize) -> VoxelSize {
        VoxelSize { zyx: self.zyx.map(|v| v * bin as f64), unit: self.unit.clone() }
    }

    /// `0.5 × 0.5 × 0.5 micrometer`, or `1 × 1 × 1 (no unit)`.
    pub fn describe(&self) -> String {
        let [z, y, x] = self.zyx;
        format!("{z} × {y} × {x} {}", self.unit.as_deref().unwrap_or("(no unit)"))
    }
}

/// The OME-NGFF (UDUNITS-2) name of a length unit as TIFF writers spell it; `None` for
/// "pixel", empty or unknown spellings (then no unit is written, as the spec asks).
pub fn ngff_unit(s: &str) -> Option<String> {
    let u = s.trim().trim_matches('"');
    let name = match u {
        "m" | "meter" | "metre" => "meter",
        "cm" | "centimeter" | "centimetre" => "centimeter",
        "mm" | "millimeter" | "millimetre" => "millimeter",
        "µm" | "μm" | "um" | "micron" | "microns" | "micrometer" | "micrometre" | "\\u00B5m" => "micrometer",
        "nm" | "nanometer" | "nanometre" => "nanometer",
        "Å" | "angstrom" => "angstrom",
        "in" | "inch" => "inch",
        _ => return None,
    };
    Some(name.to_string())
}

/// ImageJ's spelling of an OME-NGFF unit (what Fiji shows).
fn imagej_unit(ngff: &str) -> &str {
    match ngff {
        "micrometer" => "micron",
        "nanometer" => "nm",
        "millimeter" => "mm",
        "centimeter" => "cm",
        "meter" => "m",
        other => other,
    }
}

/// ImageJ's hyperstack description with the voxel size: `spacing=` (Z) and `unit=`; X and Y
/// go in the resolution tags (see [`resolution`]).
pub fn imagej_description(pages: usize, vs: &VoxelSize) -> String {
    let mut s = format!("ImageJ=1.54f\nimages={pages}\nslices={pages}\n");
    if let Some(u) = &vs.unit {
        s.push_str(&format!("unit={}\n", imagej_unit(u)));
    }
    s.push_str(&format!("spacing={}\nloop=false\n", vs.zyx[0]));
    s
}

/// The X or Y resolution tag of a voxel size `v` (pixels per unit) as a TIFF rational.
pub fn resolution(v: f64) -> (u32, u32) {
    let ppu = 1.0 / v;
    // The largest power-of-ten denominator that keeps the numerator in range: about nine
    // significant digits for any voxel size from nanometres to metres.
    let mut den = 1_000_000_000u32;
    while den > 1 && ppu * den as f64 > u32::MAX as f64 / 2.0 {
        den /= 10;
    }
    ((ppu * den as f64).round().clamp(1.0, u32::MAX as f64) as u32, den)
}

fn rational(v: Option<Value>) -> Option<f64> {
    match v? {
        Value::Rational(n, d) if d != 0 && n != 0 => Some(n as f64 / d as f64),
        Value::Float(f) if f > 0.0 => Some(f as f64),
        Value::Double(f) if f > 0.0 => Some(f),
        _ => None,
    }
}

/// A finite, positive size.
fn positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

/// The voxel size an ImageJ description and the X/Y resolutions (pixels per unit) give.
pub fn from_imagej(desc: &str, xres: Option<f64>, yres: Option<f64>) -> Option<VoxelSize> {
    if !desc.starts_with("ImageJ=") {
        return None;
    }
    let get = |k: &str| desc.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')).map(str::trim));
    let x = xres.and_then(|r| positive(1.0 / r)).unwrap_or(1.0);
    let y = yres.and_then(|r| positive(1.0 / r)).unwrap_or(x);
    let z = get("spacing").and_then(|s| s.parse().ok()).and_then(positive).unwrap_or(1.0);
    let unit = get("unit").and_then(ngff_unit);
    let vs = VoxelSize { zyx: [z, y, x], unit };
    vs.is_known().then_some(vs)
}

/// The voxel size of an OME-XML description (`<Pixels PhysicalSizeX="0.5" ...>`).
pub fn from_ome_xml(desc: &str) -> Option<VoxelSize> {
    let start = desc.find("<Pixels ")?;
    let tag = &desc[start..start + desc[start..].find('>')?];
    let attr = |name: &str| -> Option<&str> {
        let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[i..].split('"').next()
    };
    let size = |a: &str| attr(a).and_then(|v| v.parse().ok()).and_then(positive);
    let x = size("PhysicalSizeX")?;
    let y = size("PhysicalSizeY").unwrap_or(x);
    let z = size("PhysicalSizeZ").unwrap_or(x);
    // OME's default unit is the micrometre.
    let unit = attr("PhysicalSizeXUnit").map_or(Some("micrometer".to_string()), ngff_unit);
    Some(VoxelSize { zyx: [z, y, x], unit })
}

/// The voxel size recorded in the first page of an open TIFF, if any.
pub fn from_tiff<R: Read + Seek>(d: &mut Decoder<R>) -> Option<VoxelSize> {
    let desc = d.get_tag_ascii_string(Tag::ImageDescription).ok().unwrap_or_default();
    if let Some(v) = from_ome_xml(&desc) {
        return Some(v);
    }
    let xres = rational(d.find_tag(Tag::XResolution).ok().flatten());
    let yres = rational(d.find_tag(Tag::YResolution).ok().flatten());
    if let Some(v) = from_imagej(&desc, xres, yres) {
        return Some(v);
    }
    // Plain resolution tags in centimetres (ResolutionUnit 3) are a physical size too.
    let unit: u16 = d.find_tag_unsigned(Tag::ResolutionUnit).ok().flatten().unwrap_or(2);
    match (unit, xres) {
        (3, Some(x)) => {
            let sx = positive(1e4 / x)?;
            let sy = yres.and_then(|y| positive(1e4 / y)).unwrap_or(sx);
            Some(VoxelSize { zyx: [sx, sy, sx], unit: Some("micrometer".into()) })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagej_spacing_and_unit() {
        let d = "ImageJ=1.54f\nimages=20\nslices=20\nunit=micron\nspacing=0.7\nloop=false\n";
        let v = from_imagej(d, Some(2.0), Some(1.0 / 0.6)).unwrap();
        assert_eq!(v.unit.as_deref(), Some("micrometer"));
        assert!((v.zyx[0] - 0.7).abs() < 1e-12 && (v.zyx[1] - 0.6).abs() < 1e-12 && (v.zyx[2] - 0.5).abs() < 1e-12);
        // An ImageJ file that says nothing.
        assert_eq!(from_imagej("ImageJ=1.54f\nimages=3\n", None, None), None);
        assert_eq!(from_imagej("not imagej", Some(2.0), None), None);
    }

    #[test]
    fn ome_xml_physical_sizes() {
        let x = r#"<?xml version="1.0"?><OME><Image><Pixels DimensionOrder="XYZCT" PhysicalSizeX="0.5" PhysicalSizeXUnit="µm" PhysicalSizeY="0.6" PhysicalSizeZ="0.7" SizeX="4"></Pixels></Image></OME>"#;
        assert_eq!(from_ome_xml(x), Some(VoxelSize { zyx: [0.7, 0.6, 0.5], unit: Some("micrometer".into()) }));
        assert_eq!(from_ome_xml("<OME><Pixels SizeX=\"4\"></Pixels></OME>"), None);
    }

    #[test]
    fn units_are_named_as_ngff_and_pixel_is_no_unit() {
        assert_eq!(ngff_unit("micron").as_deref(), Some("micrometer"));
        assert_eq!(ngff_unit("nm").as_deref(), Some("nanometer"));
        assert_eq!(ngff_unit("pixel"), None);
        assert_eq!(ngff_unit(""), None);
    }

    #[test]
    fn resolution_round_trips() {
        for v in [0.5, 0.0013, 1.0, 37.5] {
            let (n, d) = resolution(v);
            assert!((d as f64 / n as f64 - v).abs() < 1e-6 * v.max(1.0), "{v}: {n}/{d}");
        }
        let desc = imagej_description(5, &VoxelSize { zyx: [0.7, 0.6, 0.5], unit: Some("micrometer".into()) });
        let (xn, xd) = resolution(0.5);
        let (yn, yd) = resolution(0.6);
        let back = from_imagej(&desc, Some(xn as f64 / xd as f64), Some(yn as f64 / yd as f64)).unwrap();
        assert_eq!(back.unit.as_deref(), Some("micrometer"));
        assert!((back.zyx[0] - 0.7).abs() < 1e-9 && (back.zyx[1] - 0.6).abs() < 1e-6);
    }
}
