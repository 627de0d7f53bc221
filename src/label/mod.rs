//! Labelled volumes: one streaming pass for each label's bounding box, volume and centre of
//! mass, and the mask of one label (dilated or eroded) cut from its box.
//!
//! A label volume may be larger than RAM and hold millions of labels, so the table is built
//! chunk by chunk in parallel (each chunk gives partial sums that are merged), and masks are
//! read back through the chunk cache one label box at a time (spam-compat.md §3.8).

use std::collections::HashMap;

use anyhow::{bail, Result};
use ndarray::Array3;
use rayon::prelude::*;

use crate::store::volume::{chunk_extent, chunk_grid};
use crate::store::Volume;

/// What the table knows of one label.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LabelInfo {
    /// Inclusive bounds (lo, hi) per axis Z, Y, X.
    pub bbox: [[i64; 2]; 3],
    /// Number of voxels.
    pub volume: u64,
    /// Mean voxel index (Z, Y, X).
    pub com: [f64; 3],
}

/// Per-label geometry of a label volume; entry l is label l (entry 0, the background, is
/// None), missing labels are None.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LabelTable {
    pub labels: Vec<Option<LabelInfo>>,
}

#[derive(Clone, Copy)]
struct Acc {
    lo: [i64; 3],
    hi: [i64; 3],
    n: u64,
    sum: [f64; 3],
}

impl Acc {
    fn merge(&mut self, o: &Acc) {
        for a in 0..3 {
            self.lo[a] = self.lo[a].min(o.lo[a]);
            self.hi[a] = self.hi[a].max(o.hi[a]);
            self.sum[a] += o.sum[a];
        }
        self.n += o.n;
    }
}

/// Largest label value held exactly by the f32 voxels the store hands out.
pub const MAX_LABEL: f32 = 16_777_216.0;

/// The label number of a voxel value, or an error naming the file.
#[inline]
pub fn label_of(v: f32, vol: &Volume) -> Result<u32> {
    // The common case, every voxel of a label volume: a whole number that u32 and f32 both
    // hold exactly (one conversion each way instead of a `fract` call).
    let u = v as u32;
    if u as f32 == v && v <= MAX_LABEL {
        return Ok(u);
    }
    if v.is_nan() {
        return Ok(0);
    }
    if v < 0.0 || v.fract() != 0.0 {
        bail!("{}: is not a label volume (voxel value {v})", vol.path().display());
    }
    if v > MAX_LABEL {
        bail!("{}: label {v} is above 2^24, which this version cannot hold exactly", vol.path().display());
    }
    Ok(v as u32)
}

impl LabelTable {
    /// One pass over the label volume, chunks in parallel.
    pub fn scan(lab: &Volume, progress: bool) -> Result<LabelTable> {
        let shape = lab.shape();
        let cs = lab.chunk_shape();
        let g = chunk_grid(shape, cs);
        // Last slab first: the chunks the pass leaves in the cache are then those of the first
        // slabs, which the run that follows (tiles in Z order) reads first.
        let idx: Vec<[usize; 3]> = (0..g[0]).rev().flat_map(|z| (0..g[1]).flat_map(move |y| (0..g[2]).map(move |x| [z, y, x]))).collect();
        let bar = crate::progress::bar(idx.len() as u64, "labels", progress);
        let partial = |c: [usize; 3]| -> Result<HashMap<u32, Acc>> {
            let ext = chunk_extent(shape, cs, c);
            // Read in its stored type, a row at a time as f32: no f32 copy of the whole chunk.
            let data = lab.stored_chunk(c)?;
            let mut row = vec![0f32; ext[2].len()];
            // Neighbouring voxels nearly always carry the same label: the map is only asked
            // when the label changes.
            let mut index: HashMap<u32, usize> = HashMap::new();
            let mut accs: Vec<(u32, Acc)> = Vec::new();
            let mut last: Option<(u32, usize)> = None;
            let mut i = 0;
            for z in ext[0].clone() {
                for y in ext[1].clone() {
                    data.copy_f32(i, &mut row);
                    i += row.len();
                    for (x, &v) in ext[2].clone().zip(&row) {
                        let l = label_of(v, lab)?;
                        if l == 0 {
                            continue;
                        }
                        let p = [z as i64, y as i64, x as i64];
                        let k = match last {
                            Some((ll, k)) if ll == l => k,
                            _ => {
                                let k = *index.entry(l).or_insert_with(|| {
                                    accs.push((l, Acc { lo: p, hi: p, n: 0, sum: [0.0; 3] }));
                                    accs.len() - 1
                                });
                                last = Some((l, k));
                                k
                            }
                        };
                        let e = &mut accs[k].1;
                        for a in 0..3 {
                            e.lo[a] = e.lo[a].min(p[a]);
                            e.hi[a] = e.hi[a].max(p[a]);
                            e.sum[a] += p[a] as f64;
                        }
                        e.n += 1;
                    }
                }
            }
            bar.inc(1);
            Ok(accs.into_iter().collect::<HashMap<u32, Acc>>())
        };
        let merge = |mut a: HashMap<u32, Acc>, b: HashMap<u32, Acc>| {
            let (mut big, small) = if a.len() >= b.len() { (std::mem::take(&mut a), b) } else { (b, a) };
            for (l, acc) in small {
                big.entry(l).and_modify(|e| e.merge(&acc)).or_insert(acc);
            }
            big
        };
        // A few chunks per thread at a time, in order: rayon would otherwise split the list and
        // read its two halves at once, and the cache would end up holding chunks of the middle
        // slabs rather than of the first ones.
        let batch = 4 * rayon::current_num_threads().max(1);
        let mut merged = HashMap::new();
        for part in idx.chunks(batch) {
            let got = part.par_iter().map(|&c| partial(c)).try_reduce(HashMap::new, |a, b| Ok(merge(a, b)))?;
            merged = merge(merged, got);
        }
        bar.finish_and_clear();
        let max = merged.keys().copied().max().unwrap_or(0) as usize;
        let mut labels = vec![None; max + 1];
        for (l, a) in merged {
            labels[l as usize] = Some(LabelInfo {
                bbox: std::array::from_fn(|k| [a.lo[k], a.hi[k]]),
                volume: a.n,
                com: std::array::from_fn(|k| a.sum[k] / a.n as f64),
            });
        }
        Ok(LabelTable { labels })
    }

    /// The highest label number (0 when there are none).
    pub fn max_label(&self) -> usize {
        self.labels.len().saturating_sub(1)
    }

    /// Where each label's row sits in a label field: its centre of mass, (0, 0, 0) for the
    /// background and NaN for missing labels (spam's convention).
    pub fn positions(&self) -> Vec<nalgebra::Vector3<f64>> {
        (0..self.max_label() + 1)
            .map(|l| match (l, self.get(l)) {
                (0, _) => nalgebra::Vector3::zeros(),
                (_, Some(i)) => nalgebra::Vector3::from(i.com),
                (_, None) => nalgebra::Vector3::from_element(f64::NAN),
            })
            .collect()
    }

    pub fn get(&self, l: usize) -> Option<&LabelInfo> {
        self.labels.get(l).and_then(|o| o.as_ref())
    }
}

/// Offsets of a Euclidean ball of radius r (voxels with √(Σδ²) ≤ r).
fn ball(r: i64) -> Vec<[i64; 3]> {
    let mut v = Vec::new();
    for z in -r..=r {
        for y in -r..=r {
            for x in -r..=r {
                if z * z + y * y + x * x <= r * r {
                    v.push([z, y, x]);
                }
            }
        }
    }
    v
}

/// The label number of every voxel of the box `[lo, hi)`; outside the volume counts as
/// background.
pub fn label_ids(lab: &Volume, lo: [i64; 3], hi: [i64; 3]) -> Result<Array3<u32>> {
    let raw = lab.read_box(lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2])?;
    let mut ids = Array3::<u32>::zeros(raw.dim());
    for (o, v) in ids.iter_mut().zip(raw.iter()) {
        *o = label_of(*v, lab)?;
    }
    Ok(ids)
}

/// The mask of label `l` over the box `[lo, hi)` (spam's `getLabel`): the label, dilated
/// (`dilate` > 0) or eroded (< 0) by a ball, then with voxels of other labels removed when
/// `mask_other` is set. Outside the volume counts as background.
pub fn label_mask(lab: &Volume, l: u32, lo: [i64; 3], hi: [i64; 3], dilate: i64, mask_other: bool) -> Result<Array3<bool>> {
    Ok(mask_of(&label_ids(lab, lo, hi)?, l, dilate, mask_other))
}

/// [`label_mask`] from the label numbers of the box.
pub fn mask_of(ids: &Array3<u32>, l: u32, dilate: i64, mask_other: bool) -> Array3<bool> {
    let base = ids.mapv(|v| v == l);
    let d = ids.dim();
    let dims = [d.0 as i64, d.1 as i64, d.2 as i64];
    let inside = |p: [i64; 3]| (0..3).all(|a| p[a] >= 0 && p[a] < dims[a]);
    let mut mask = base.clone();
    if dilate > 0 {
        let b = ball(dilate);
        for ((z, y, x), &on) in base.indexed_iter() {
            if !on {
                continue;
            }
            for o in &b {
                let p = [z as i64 + o[0], y as i64 + o[1], x as i64 + o[2]];
                if inside(p) {
                    mask[[p[0] as usize, p[1] as usize, p[2] as usize]] = true;
                }
            }
        }
    } else if dilate < 0 {
        let b = ball(-dilate);
        for ((z, y, x), m) in mask.indexed_iter_mut() {
            if *m {
                *m = b.iter().all(|o| {
                    let p = [z as i64 + o[0], y as i64 + o[1], x as i64 + o[2]];
                    inside(p) && base[[p[0] as usize, p[1] as usize, p[2] as usize]]
                });
            }
        }
    }
    if mask_other {
        for (m, &id) in mask.iter_mut().zip(ids.iter()) {
            if id != 0 && id != l {
                *m = false;
            }
        }
    }
    mask
}

/// Removes from `mask` (label `l`'s, over the box whose label numbers are `ids`) every voxel
/// within `reach` (Euclidean, voxels) of another label's voxel, where that voxel is in image
/// 1 and where `moved` puts it: `moved(label, voxel)` gives another label's voxel (box
/// coordinates) as label `l` sees it in image 2, i.e. moved by that label's motion and back
/// by label `l`'s, or None to leave it where it is.
///
/// A voxel near another grain carries that grain's edge (the scan's blur and partial
/// volume), which moves with the other grain: in image 1 where two grains touch, and in
/// image 2 where a neighbour comes closer than it was. Left in the mask, those voxels pull
/// the label towards its neighbour's motion.
pub fn drop_near_others(mask: &mut Array3<bool>, ids: &Array3<u32>, l: u32, reach: [f64; 2], moved: impl Fn(u32, [i64; 3]) -> Option<[i64; 3]>) {
    let d = ids.dim();
    let dims = [d.0 as i64, d.1 as i64, d.2 as i64];
    let offsets = |reach: f64| -> Vec<[i64; 3]> {
        let r = reach.max(0.0).floor() as i64;
        let cube = (-r..=r).flat_map(|z| (-r..=r).flat_map(move |y| (-r..=r).map(move |x| [z, y, x])));
        cube.filter(|o| ((o[0] * o[0] + o[1] * o[1] + o[2] * o[2]) as f64) <= reach * reach).collect()
    };
    let (b1, b2) = (offsets(reach[0]), offsets(reach[1]));
    let mut clear = |c: [i64; 3], b: &[[i64; 3]]| {
        for o in b {
            let p = [c[0] + o[0], c[1] + o[1], c[2] + o[2]];
            if (0..3).all(|a| p[a] >= 0 && p[a] < dims[a]) {
                mask[[p[0] as usize, p[1] as usize, p[2] as usize]] = false;
            }
        }
    };
    for ((z, y, x), &id) in ids.indexed_iter() {
        if id == 0 || id == l {
            continue;
        }
        let p = [z as i64, y as i64, x as i64];
        clear(p, &b1);
        if let Some(q) = moved(id, p) {
            clear(q, &b2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemorySource;
    use std::sync::Arc;

    fn volume(shape: [usize; 3], chunk: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
        let mut data = Vec::new();
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    data.push(f(z, y, x));
                }
            }
        }
        let src = MemorySource { path: "labels".into(), shape, chunk, data: Arc::new(data) };
        Volume::new(Arc::new(src), crate::store::cache::ChunkCache::new(1 << 20))
    }

    #[test]
    fn table_matches_a_direct_count_across_chunks() {
        // Two boxes and a ball, spread over several chunks; label 3 is missing.
        let f = |z: usize, y: usize, x: usize| {
            if (2..7).contains(&z) && (3..5).contains(&y) && (1..12).contains(&x) {
                1.0
            } else if ((z as f64 - 12.0).powi(2) + (y as f64 - 10.0).powi(2) + (x as f64 - 9.0).powi(2)) <= 9.0 {
                4.0
            } else {
                0.0
            }
        };
        let v = volume([16, 15, 14], [5, 4, 6], f);
        let t = LabelTable::scan(&v, false).unwrap();
        assert_eq!(t.max_label(), 4);
        assert!(t.get(0).is_none() && t.get(2).is_none() && t.get(3).is_none());
        let one = t.get(1).unwrap();
        assert_eq!(one.bbox, [[2, 6], [3, 4], [1, 11]]);
        assert_eq!(one.volume, 5 * 2 * 11);
        assert_eq!(one.com, [4.0, 3.5, 6.0]);
        let four = t.get(4).unwrap();
        assert_eq!(four.com, [12.0, 10.0, 9.0]);
        assert_eq!(four.bbox, [[9, 15], [7, 13], [6, 12]]);
        assert_eq!(four.volume, ball(3).len() as u64);
    }

    #[test]
    fn masks_dilate_erode_and_drop_other_labels() {
        let f = |z: usize, y: usize, x: usize| if x < 5 { 1.0 } else if x == 6 && y == 4 && z == 4 { 2.0 } else { 0.0 };
        let v = volume([9, 9, 9], [4, 4, 4], f);
        let m = label_mask(&v, 1, [0, 0, 0], [9, 9, 9], 0, false).unwrap();
        assert_eq!(m.iter().filter(|b| **b).count(), 9 * 9 * 5);
        let m = label_mask(&v, 1, [0, 0, 0], [9, 9, 9], 2, false).unwrap();
        assert!(m[[4, 4, 6]] && m[[0, 0, 6]] && !m[[0, 0, 7]]);
        let m = label_mask(&v, 1, [0, 0, 0], [9, 9, 9], 2, true).unwrap();
        assert!(!m[[4, 4, 6]], "the voxel of label 2 is removed");
        let m = label_mask(&v, 1, [0, 0, 0], [9, 9, 9], -1, false).unwrap();
        assert!(m[[4, 4, 3]] && !m[[4, 4, 4]] && !m[[0, 4, 3]], "erosion also eats the box border");
        assert!(LabelTable::scan(&volume([2, 2, 2], [2, 2, 2], |_, _, _| 1.5), false).is_err());
    }
}
