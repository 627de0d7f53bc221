//! spam-deformImage's `-tet` mode: a Delaunay tetrahedral mesh between the measurement
//! points (in their deformed positions), the displacement linear inside each tetrahedron,
//! optionally carved with CGAL's alpha test (`-a`) and with grey levels corrected by each
//! tetrahedron's volume change (`-cgs`, Stavropoulou et al. 2020 eq. 12 with μ_w = 0).
//!
//! The triangulation is Bowyer–Watson insertion with Shewchuk's exact orientation and
//! in-sphere predicates (the `robust` crate), so the regular grids that ldic writes, whose
//! cubes are cospherical, triangulate without a failure or a flat tetrahedron.
//! spam triangulates with CGAL; on cospherical points the two may split a cube differently,
//! which changes the interpolated displacement by the field's second-order variation there.
//!
//! The image is written slab by slab: a slab reads the box of the input that the
//! tetrahedra covering it come from, and nothing else.

use anyhow::{bail, Result};
use nalgebra::{Matrix3, Vector3};
use robust::{insphere, orient3d, Coord3D};

use crate::store::Volume;

const NONE: u32 = u32::MAX;

fn c3(p: &[f64; 3]) -> Coord3D<f64> {
    Coord3D { x: p[0], y: p[1], z: p[2] }
}

/// The Delaunay tetrahedra of `points` (indices into `points`, each positively oriented for
/// `robust::orient3d`). Coincident points are inserted once; points all on one plane give
/// no tetrahedron.
pub fn delaunay(points: &[[f64; 3]]) -> Vec<[u32; 4]> {
    let n = points.len();
    if n < 4 || n >= (u32::MAX - 8) as usize {
        return Vec::new();
    }
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for p in points {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let centre: [f64; 3] = std::array::from_fn(|a| (lo[a] + hi[a]) / 2.0);
    let size = (0..3).map(|a| hi[a] - lo[a]).fold(1.0, f64::max);
    // A tetrahedron far enough away that a tetrahedron of the points' own triangulation it
    // steals (one whose circumsphere reaches it) is thinner than 10⁻⁶ of the points' extent.
    let k = 1e6 * size;
    let mut pts: Vec<[f64; 3]> = points.to_vec();
    pts.extend([
        [centre[0] - k, centre[1] - k, centre[2] - k],
        [centre[0] + k, centre[1] - k, centre[2] + k],
        [centre[0] - k, centre[1] + k, centre[2] + k],
        [centre[0] + k, centre[1] + k, centre[2] - k],
    ]);
    let s = n as u32;
    let mut t = Triangulation { pts: &pts, tets: Vec::new(), neigh: Vec::new(), alive: Vec::new(), free: Vec::new() };
    let mut first = [s, s + 1, s + 2, s + 3];
    if orient3d(c3(&pts[first[0] as usize]), c3(&pts[first[1] as usize]), c3(&pts[first[2] as usize]), c3(&pts[first[3] as usize])) < 0.0 {
        first.swap(0, 1);
    }
    t.tets.push(first);
    t.neigh.push([NONE; 4]);
    t.alive.push(true);
    // Insertion along a Morton curve keeps each walk short.
    let mut order: Vec<u32> = (0..s).collect();
    let scale = 1023.0 / size;
    let key = |p: &[f64; 3]| -> u64 {
        let q: [u64; 3] = std::array::from_fn(|a| (((p[a] - lo[a]) * scale) as u64).min(1023));
        let mut m = 0u64;
        for b in 0..10 {
            for a in 0..3 {
                m |= ((q[a] >> b) & 1) << (3 * b + a);
            }
        }
        m
    };
    order.sort_by_key(|&i| key(&points[i as usize]));
    let mut last = 0u32;
    for &i in &order {
        if let Some(tet) = t.insert(i, last) {
            last = tet;
        }
    }
    (0..t.tets.len()).filter(|&i| t.alive[i] && t.tets[i].iter().all(|&v| v < s)).map(|i| t.tets[i]).collect()
}

struct Triangulation<'a> {
    pts: &'a [[f64; 3]],
    tets: Vec<[u32; 4]>,
    /// Neighbour across the face opposite each vertex.
    neigh: Vec<[u32; 4]>,
    alive: Vec<bool>,
    free: Vec<u32>,
}

impl Triangulation<'_> {
    fn p(&self, v: u32) -> Coord3D<f64> {
        c3(&self.pts[v as usize])
    }

    /// orient3d of tetrahedron `t` with vertex `i` replaced by point `v`: > 0 when `v` is on
    /// the same side of the face opposite `i` as vertex `i`.
    fn orient_with(&self, t: u32, i: usize, v: u32) -> f64 {
        let mut q = self.tets[t as usize];
        q[i] = v;
        orient3d(self.p(q[0]), self.p(q[1]), self.p(q[2]), self.p(q[3]))
    }

    fn in_sphere(&self, t: u32, v: u32) -> f64 {
        let q = self.tets[t as usize];
        insphere(self.p(q[0]), self.p(q[1]), self.p(q[2]), self.p(q[3]), self.p(v))
    }

    /// The tetrahedron that holds point `v` (inside or on its boundary), walking from `start`.
    fn locate(&self, v: u32, start: u32) -> u32 {
        let mut t = start;
        let mut turn = v as usize;
        'walk: loop {
            // Faces tried from a rotating start, so that the walk cannot cycle.
            turn = turn.wrapping_mul(1103515245).wrapping_add(12345);
            for k in 0..4 {
                let i = (k + (turn >> 16)) % 4;
                if self.orient_with(t, i, v) < 0.0 {
                    let next = self.neigh[t as usize][i];
                    if next == NONE {
                        return t;
                    }
                    t = next;
                    continue 'walk;
                }
            }
            return t;
        }
    }

    /// Inserts point `v`; returns one of its new tetrahedra, or None for a point that
    /// coincides with one already inserted.
    fn insert(&mut self, v: u32, start: u32) -> Option<u32> {
        let t0 = self.locate(v, start);
        let q = self.tets[t0 as usize];
        if q.iter().any(|&u| self.pts[u as usize] == self.pts[v as usize]) {
            return None;
        }
        // The cavity: the tetrahedra whose circumsphere holds v strictly, grown from t0.
        let mut cavity = vec![t0];
        let mut in_cavity = std::collections::HashSet::from([t0]);
        let mut boundary = Vec::new();
        let mut k = 0;
        while k < cavity.len() {
            let t = cavity[k];
            k += 1;
            for i in 0..4 {
                let nb = self.neigh[t as usize][i];
                if nb != NONE && in_cavity.contains(&nb) {
                    continue;
                }
                if nb != NONE && self.in_sphere(nb, v) > 0.0 {
                    in_cavity.insert(nb);
                    cavity.push(nb);
                } else {
                    // The vertices are copied: the cavity's slots are reused below.
                    boundary.push((self.tets[t as usize], i, nb));
                }
            }
        }
        for &t in &cavity {
            self.alive[t as usize] = false;
            self.free.push(t);
        }
        // One new tetrahedron per boundary face: the face and v, v in the place of the
        // vertex the face is opposite (v is on that vertex's side, so the orientation holds).
        let mut by_edge: std::collections::HashMap<(u32, u32), (u32, usize)> = std::collections::HashMap::new();
        let mut made = NONE;
        for (old, i, nb) in boundary {
            let mut verts = old;
            verts[i] = v;
            let id = match self.free.pop() {
                Some(id) => {
                    self.tets[id as usize] = verts;
                    self.neigh[id as usize] = [NONE; 4];
                    self.alive[id as usize] = true;
                    id
                }
                None => {
                    self.tets.push(verts);
                    self.neigh.push([NONE; 4]);
                    self.alive.push(true);
                    (self.tets.len() - 1) as u32
                }
            };
            made = id;
            self.neigh[id as usize][i] = nb;
            if nb != NONE {
                let face: Vec<u32> = (0..4).filter(|&j| j != i).map(|j| old[j]).collect();
                let back = (0..4).find(|&j| !face.contains(&self.tets[nb as usize][j])).expect("a neighbour shares a face");
                self.neigh[nb as usize][back] = id;
            }
            // The three faces through v: each is matched with the new tetrahedron on the
            // other side by the edge of the boundary face it holds.
            for j in (0..4).filter(|&j| j != i) {
                let e: Vec<u32> = (0..4).filter(|&m| m != i && m != j).map(|m| verts[m]).collect();
                let edge = (e[0].min(e[1]), e[0].max(e[1]));
                match by_edge.remove(&edge) {
                    Some((other, oj)) => {
                        self.neigh[id as usize][j] = other;
                        self.neigh[other as usize][oj] = id;
                    }
                    None => {
                        by_edge.insert(edge, (id, j));
                    }
                }
            }
        }
        Some(made)
    }
}

/// Squared circumradius of a tetrahedron (infinite when it is flat).
fn circumradius2(p: [[f64; 3]; 4]) -> f64 {
    let d: [Vector3<f64>; 3] = std::array::from_fn(|k| Vector3::new(p[k + 1][0] - p[0][0], p[k + 1][1] - p[0][1], p[k + 1][2] - p[0][2]));
    let m = Matrix3::from_rows(&[d[0].transpose(), d[1].transpose(), d[2].transpose()]);
    let rhs = Vector3::new(d[0].norm_squared(), d[1].norm_squared(), d[2].norm_squared()) / 2.0;
    match m.lu().solve(&rhs) {
        Some(c) if c.iter().all(|v| v.is_finite()) => c.norm_squared(),
        _ => f64::INFINITY,
    }
}

/// spam's alpha clean-up (CGAL's `Alpha_shape_3` on a regular triangulation with every
/// weight 1, REGULARIZED mode): a tetrahedron's alpha value is the squared radius of the
/// sphere orthogonal to its four weighted points, r² − 1 with r its circumradius, and it is
/// kept when that is ≤ α. α = 0 keeps every tetrahedron; a negative α, or one below CGAL's
/// `find_alpha_solid` (the smallest α that leaves no point outside: for each point the
/// smallest alpha value of its tetrahedra, the largest of those), is replaced by the latter.
/// α is taken in f32, as spam passes it, and so is the solid α when it replaces α (spam
/// stores it back into its f32 argument): a tetrahedron whose value is the solid α itself
/// can drop out when the rounding goes down, as in spam.
pub fn alpha_filter(points: &[[f64; 3]], tets: Vec<[u32; 4]>, alpha: f64) -> Vec<[u32; 4]> {
    if alpha == 0.0 || tets.is_empty() {
        return tets;
    }
    let value: Vec<f64> = tets.iter().map(|t| circumradius2(t.map(|v| points[v as usize])) - 1.0).collect();
    let mut smallest = vec![f64::INFINITY; points.len()];
    for (t, &a) in tets.iter().zip(&value) {
        for &v in t {
            smallest[v as usize] = smallest[v as usize].min(a);
        }
    }
    let solid = smallest.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let alpha = alpha as f32 as f64;
    let alpha = if alpha < 0.0 || alpha < solid { solid as f32 as f64 } else { alpha };
    tets.into_iter().zip(value).filter(|(_, a)| *a <= alpha).map(|(t, _)| t).collect()
}

/// One tetrahedron, ready to interpolate.
struct Tet {
    /// First deformed vertex and the map from (x − d0) to barycentric λ1..λ3.
    d0: Vector3<f64>,
    to_bary: Matrix3<f64>,
    /// Reference (undeformed) vertices: the source of x is Σ λ_a ref_a.
    reference: [Vector3<f64>; 4],
    /// Deformed bounding box.
    lo: [f64; 3],
    hi: [f64; 3],
    /// Reference volume over deformed volume: the `-cgs` factor.
    volume_ratio: f64,
}

/// The mesh warp of a measured field: displacements known at points, linear in between.
pub struct TetWarp {
    tets: Vec<Tet>,
    /// Tetrahedra sorted by their lowest deformed Z.
    by_z: Vec<usize>,
    correct_grey: bool,
}

fn volume(p: &[Vector3<f64>; 4]) -> f64 {
    ((p[0] - p[3]).dot(&(p[1] - p[3]).cross(&(p[2] - p[3])))).abs() / 6.0
}

impl TetWarp {
    /// The mesh of `points` (reference positions) moved by `disp`, triangulated in the
    /// deformed positions (as spam, in f32 coordinates), carved with `alpha`. Points with a
    /// non-finite position or displacement are left out. Also returns the number of
    /// tetrahedra.
    pub fn new(points: &[Vector3<f64>], disp: &[Vector3<f64>], alpha: f64, correct_grey: bool) -> Result<TetWarp> {
        // Positions are triangulated in f32: one that does not fit is left out too.
        let finite = |i: usize| points[i].iter().chain(disp[i].iter()).all(|v| v.is_finite()) && (points[i] + disp[i]).iter().all(|v| (*v as f32).is_finite());
        let keep: Vec<usize> = (0..points.len()).filter(|&i| finite(i)).collect();
        let reference: Vec<Vector3<f64>> = keep.iter().map(|&i| points[i]).collect();
        let deformed: Vec<Vector3<f64>> = keep.iter().map(|&i| points[i] + disp[i]).collect();
        let as_f32: Vec<[f64; 3]> = deformed.iter().map(|p| [p[0] as f32 as f64, p[1] as f32 as f64, p[2] as f32 as f64]).collect();
        let tets = alpha_filter(&as_f32, delaunay(&as_f32), alpha);
        if tets.is_empty() {
            bail!("the {} points give no tetrahedron (fewer than 4, or all on one plane)", keep.len());
        }
        let mut out = Vec::with_capacity(tets.len());
        for t in tets {
            let d: [Vector3<f64>; 4] = t.map(|v| deformed[v as usize]);
            let r: [Vector3<f64>; 4] = t.map(|v| reference[v as usize]);
            let edges = Matrix3::from_columns(&[d[1] - d[0], d[2] - d[0], d[3] - d[0]]);
            // A flat tetrahedron holds no voxel.
            let Some(to_bary) = edges.try_inverse() else { continue };
            let (vd, vr) = (volume(&d), volume(&r));
            if !(vd > 0.0) {
                continue;
            }
            out.push(Tet {
                d0: d[0],
                to_bary,
                reference: r,
                lo: std::array::from_fn(|a| d.iter().map(|p| p[a]).fold(f64::INFINITY, f64::min)),
                hi: std::array::from_fn(|a| d.iter().map(|p| p[a]).fold(f64::NEG_INFINITY, f64::max)),
                volume_ratio: vr / vd,
            });
        }
        let mut by_z: Vec<usize> = (0..out.len()).collect();
        by_z.sort_by(|&a, &b| out[a].lo[0].total_cmp(&out[b].lo[0]));
        Ok(TetWarp { tets: out, by_z, correct_grey })
    }

    pub fn len(&self) -> usize {
        self.tets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tets.is_empty()
    }
}

/// Output planes `[z0, z1)` of `input` deformed by the mesh (spam's `applyMeshTransformation`):
/// a voxel x inside a tetrahedron takes the trilinear grey level of `input` at Σ λ_a ref_a
/// (x minus the interpolated displacement), 0 when that source is outside `[1, N − 1)` on an
/// axis; voxels outside the mesh are 0. With `-cgs` the value is multiplied by the
/// tetrahedron's reference over deformed volume. A voxel on a face shared by two
/// tetrahedra takes the one listed first (the displacement is the same on both sides).
pub fn tet_deformed_planes(input: &Volume, warp: &TetWarp, z0: usize, z1: usize) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let n = input.shape();
    let plane = n[1] * n[2];
    let mut out = vec![0f32; (z1 - z0) * plane];
    let (zlo, zhi) = (z0 as f64, (z1 - 1) as f64);
    let candidates: Vec<usize> = warp.by_z.iter().copied().take_while(|&i| warp.tets[i].lo[0] <= zhi).filter(|&i| warp.tets[i].hi[0] >= zlo).collect();
    if candidates.is_empty() {
        return Ok(out);
    }
    // The input box the slab's sources fall in: the reference vertices' bounding box.
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for &i in &candidates {
        for p in &warp.tets[i].reference {
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
    }
    // One voxel of slack on each side: a sampled point may fall a rounding error outside the
    // vertices' box (barycentric weights down to −TOLERANCE are accepted).
    let b0: [i64; 3] = std::array::from_fn(|a| (lo[a].floor() as i64 - 1).clamp(0, n[a] as i64));
    let b1: [i64; 3] = std::array::from_fn(|a| (hi[a].floor() as i64 + 3).clamp(0, n[a] as i64));
    if (0..3).any(|a| b1[a] <= b0[a]) {
        return Ok(out);
    }
    let src = input.read_box(b0[0]..b1[0], b0[1]..b1[1], b0[2]..b1[2])?;
    let sd = src.dim();
    let data = src.as_slice().expect("a new array is contiguous");
    let sample = |q: Vector3<f64>| -> Option<f64> {
        let f = q.map(f64::floor);
        if (0..3).any(|a| !(f[a] >= 1.0 && f[a] < (n[a] - 1) as f64)) {
            return None;
        }
        let i: [usize; 3] = std::array::from_fn(|a| (f[a] as i64 - b0[a]) as usize);
        let r = q - f;
        let mut acc = 0f64;
        for dz in 0..2 {
            let wz = if dz == 1 { r[0] } else { 1.0 - r[0] };
            for dy in 0..2 {
                let wy = if dy == 1 { r[1] } else { 1.0 - r[1] };
                for dx in 0..2 {
                    let wx = if dx == 1 { r[2] } else { 1.0 - r[2] };
                    let v = data[((i[0] + dz) * sd.1 + i[1] + dy) * sd.2 + i[2] + dx];
                    acc += v as f64 * wz * wy * wx;
                }
            }
        }
        Some(acc)
    };
    const TOLERANCE: f64 = 1e-9;
    out.par_chunks_mut(plane).enumerate().for_each(|(k, dst)| {
        let z = (z0 + k) as f64;
        let mut done = vec![false; plane];
        for &ti in &candidates {
            let t = &warp.tets[ti];
            if t.lo[0] > z || t.hi[0] < z {
                continue;
            }
            let y0 = t.lo[1].ceil().max(0.0) as usize;
            let x0 = t.lo[2].ceil().max(0.0) as usize;
            let y1 = (t.hi[1].floor() as i64).min(n[1] as i64 - 1);
            let x1 = (t.hi[2].floor() as i64).min(n[2] as i64 - 1);
            if y1 < 0 || x1 < 0 {
                continue;
            }
            for y in y0..=y1 as usize {
                for x in x0..=x1 as usize {
                    let at = y * n[2] + x;
                    if done[at] {
                        continue;
                    }
                    let l = t.to_bary * (Vector3::new(z, y as f64, x as f64) - t.d0);
                    let l0 = 1.0 - l[0] - l[1] - l[2];
                    if l0 < -TOLERANCE || l.iter().any(|&v| v < -TOLERANCE) {
                        continue;
                    }
                    done[at] = true;
                    let q = t.reference[0] * l0 + t.reference[1] * l[0] + t.reference[2] * l[1] + t.reference[3] * l[2];
                    if let Some(v) = sample(q) {
                        dst[at] = (if warp.correct_grey { v * t.volume_ratio } else { v }) as f32;
                    }
                }
            }
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total_volume(points: &[[f64; 3]], tets: &[[u32; 4]]) -> f64 {
        tets.iter().map(|t| volume(&t.map(|v| Vector3::from(points[v as usize])))).sum()
    }

    fn grid(n: usize, jitter: f64) -> Vec<[f64; 3]> {
        let mut s = 7u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut p = Vec::new();
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    p.push([z as f64 * 10.0 + jitter * r(), y as f64 * 10.0 + jitter * r(), x as f64 * 10.0 + jitter * r()]);
                }
            }
        }
        p
    }

    /// Every tetrahedron is positively oriented and no point lies strictly inside any
    /// tetrahedron's circumsphere (the empty-sphere property).
    fn is_delaunay(points: &[[f64; 3]], tets: &[[u32; 4]]) -> bool {
        tets.iter().all(|t| {
            let c = t.map(|v| c3(&points[v as usize]));
            orient3d(c[0], c[1], c[2], c[3]) > 0.0 && points.iter().all(|p| insphere(c[0], c[1], c[2], c[3], c3(p)) <= 0.0)
        })
    }

    #[test]
    fn a_regular_grid_is_filled_without_flat_tetrahedra() {
        // Cospherical cubes: exact predicates still give a full, valid triangulation.
        let p = grid(6, 0.0);
        let t = delaunay(&p);
        assert!((total_volume(&p, &t) - 50f64.powi(3)).abs() < 1e-6, "{}", total_volume(&p, &t));
        assert!(is_delaunay(&p, &t));
        assert!(t.iter().all(|t| volume(&t.map(|v| Vector3::from(p[v as usize]))) > 1e-9));
    }

    #[test]
    fn a_jittered_grid_is_delaunay_and_covers_its_hull() {
        let p = grid(7, 2.0);
        let t = delaunay(&p);
        assert!(is_delaunay(&p, &t));
        // Each point is a vertex, and the volume is the convex hull's (≈ the box, jittered).
        let mut used = vec![false; p.len()];
        t.iter().flatten().for_each(|&v| used[v as usize] = true);
        assert!(used.iter().all(|u| *u));
        // The mesh is the convex hull: each face that only one tetrahedron has leaves every
        // point on its inner side.
        let mut faces: std::collections::HashMap<[u32; 3], ([u32; 4], usize)> = std::collections::HashMap::new();
        for tet in &t {
            for i in 0..4 {
                let mut f: Vec<u32> = (0..4).filter(|&j| j != i).map(|j| tet[j]).collect();
                f.sort();
                let key = [f[0], f[1], f[2]];
                if faces.remove(&key).is_none() {
                    faces.insert(key, (*tet, i));
                }
            }
        }
        assert!(!faces.is_empty());
        for (tet, i) in faces.values() {
            let c = tet.map(|v| c3(&p[v as usize]));
            for q in &p {
                let mut w = c;
                w[*i] = c3(q);
                assert!(orient3d(w[0], w[1], w[2], w[3]) >= 0.0, "a boundary face that is not on the hull");
            }
        }
    }

    #[test]
    fn duplicates_and_flat_sets_are_handled() {
        let mut p = grid(3, 0.0);
        p.push(p[4]);
        let t = delaunay(&p);
        assert!((total_volume(&p, &t) - 20f64.powi(3)).abs() < 1e-9);
        let flat: Vec<[f64; 3]> = (0..10).map(|i| [0.0, i as f64, (i * i) as f64]).collect();
        assert!(delaunay(&flat).is_empty());
    }

    #[test]
    fn alpha_removes_flat_boundary_tetrahedra_only() {
        let p = grid(5, 1.0);
        let all = delaunay(&p);
        // A huge alpha keeps everything; a negative one takes CGAL's solid alpha, and so does
        // a positive one below it.
        assert_eq!(alpha_filter(&p, all.clone(), 1e12).len(), all.len());
        let solid = alpha_filter(&p, all.clone(), -1.0);
        assert_eq!(alpha_filter(&p, all.clone(), 1e-3), solid);
        assert!(solid.len() < all.len());
        // The solid alpha leaves every point in the mesh (but where its f32 rounding drops
        // the tetrahedron that sets it, as in spam).
        let mut used = vec![false; p.len()];
        solid.iter().flatten().for_each(|&v| used[v as usize] = true);
        assert!(used.iter().filter(|u| **u).count() >= p.len() - 1);
    }
}
