//! Store conformance: read_box against whole arrays, TIFF back ends, Zarr layouts, pyramids.

use std::path::Path;
use std::sync::Arc;

use dvc_stream::store::binning::{binned_shape, binning_top};
use dvc_stream::store::convert::{tiff_to_zarr, ConvertOptions};
use dvc_stream::store::dtype::{DType, TypedBuf};
use dvc_stream::store::tiff_write::TiffStackWriter;
use dvc_stream::store::zarr::{ArrayLayout, Codec};
use dvc_stream::store::{ChunkCache, Volume};
use proptest::prelude::*;
use tiff::encoder::{colortype, compression::DeflateLevel, Compression, TiffEncoder};

/// A deterministic test pattern with values that exercise each type's range.
fn pattern(shape: [usize; 3], dtype: DType) -> TypedBuf {
    let n = shape.iter().product::<usize>();
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let h = dvc_stream::synth::texture::mix64(i as u64);
            match dtype {
                DType::U8 => (h % 256) as f64,
                DType::U16 => (h % 65536) as f64,
                DType::I16 => (h % 65536) as f64 - 32768.0,
                DType::U32 => (h % 16_000_000) as f64,
                DType::F32 => ((h % 1_000_000) as f64 / 7.0 - 5000.0) as f32 as f64,
                DType::F64 => (h % 1_000_000) as f64 / 3.0,
            }
        })
        .collect();
    match dtype {
        DType::U8 => TypedBuf::U8(v.iter().map(|&a| a as u8).collect()),
        DType::U16 => TypedBuf::U16(v.iter().map(|&a| a as u16).collect()),
        DType::I16 => TypedBuf::I16(v.iter().map(|&a| a as i16).collect()),
        DType::U32 => TypedBuf::U32(v.iter().map(|&a| a as u32).collect()),
        DType::F32 => TypedBuf::F32(v.iter().map(|&a| a as f32).collect()),
        DType::F64 => TypedBuf::F64(v),
    }
}

fn write_compressed_tiff(path: &Path, shape: [usize; 3], data: &TypedBuf, compression: Compression) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = TiffEncoder::new(f).unwrap().with_compression(compression);
    let plane = shape[1] * shape[2];
    let (w, h) = (shape[2] as u32, shape[1] as u32);
    for z in 0..shape[0] {
        let r = z * plane..(z + 1) * plane;
        match data {
            TypedBuf::U8(v) => enc.write_image::<colortype::Gray8>(w, h, &v[r]).unwrap(),
            TypedBuf::U16(v) => enc.write_image::<colortype::Gray16>(w, h, &v[r]).unwrap(),
            TypedBuf::I16(v) => enc.write_image::<colortype::GrayI16>(w, h, &v[r]).unwrap(),
            TypedBuf::F32(v) => enc.write_image::<colortype::Gray32Float>(w, h, &v[r]).unwrap(),
            _ => unreachable!(),
        }
    }
}

fn assert_volume_equals(vol: &Volume, shape: [usize; 3], data: &TypedBuf) {
    assert_eq!(vol.shape(), shape);
    let all = vol.read_all().unwrap();
    for (i, v) in all.iter().enumerate() {
        assert_eq!(*v as f64, data.get_f64(i) as f32 as f64, "voxel {i}");
    }
}

fn opts(chunk: [usize; 3], codec: Codec, shard: Option<usize>, levels: Option<usize>) -> ConvertOptions {
    ConvertOptions {
        // `shard`: chunks per shard along each axis.
        layout: ArrayLayout { chunk, codec, shard: shard.map(|k| [k; 3]) },
        levels,
        voxel_size: None,
        labels: false,
        overwrite: false,
        progress: false,
    }
}

#[test]
fn tiff_round_trip_every_dtype_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [9, 13, 11];
    for dtype in [DType::U8, DType::U16, DType::I16, DType::F32] {
        let data = pattern(shape, dtype);
        let cases: Vec<(&str, Option<Compression>)> = vec![
            ("raw", None),
            ("lzw", Some(Compression::Lzw)),
            ("deflate", Some(Compression::Deflate(DeflateLevel::Balanced))),
        ];
        for (name, comp) in cases {
            let tif = dir.path().join(format!("{dtype}-{name}.tif"));
            match comp {
                None => {
                    let mut w = TiffStackWriter::create(&tif, shape, dtype, false).unwrap();
                    w.write_pages(&data).unwrap();
                }
                Some(c) => write_compressed_tiff(&tif, shape, &data, c),
            }
            let cache = ChunkCache::new(1 << 20);
            assert_volume_equals(&Volume::open(&tif, cache.clone()).unwrap(), shape, &data);
            let zarr = dir.path().join(format!("{dtype}-{name}.zarr"));
            tiff_to_zarr(&tif, &zarr, &opts([4, 5, 6], Codec::Zstd(1), None, Some(2))).unwrap();
            let vol = Volume::open(&zarr, cache).unwrap();
            assert_eq!(vol.dtype(), dtype);
            assert_volume_equals(&vol, shape, &data);
        }
    }
}

#[test]
fn bigtiff_and_memory_map() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [6, 20, 17];
    let data = pattern(shape, DType::U16);
    let tif = dir.path().join("big.tif");
    let mut w = TiffStackWriter::create(&tif, shape, DType::U16, true).unwrap();
    w.write_pages(&data).unwrap();
    drop(w);
    let bytes = std::fs::read(&tif).unwrap();
    assert_eq!(&bytes[..4], &[0x49, 0x49, 43, 0], "BigTIFF magic");
    let src = dvc_stream::store::tiff::TiffSource::open(&tif).unwrap();
    assert!(src.is_memory_mapped());
    assert_volume_equals(&Volume::open(&tif, ChunkCache::new(1 << 20)).unwrap(), shape, &data);
}

#[test]
fn slice_folder_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [12, 7, 9];
    let data = pattern(shape, DType::U16);
    let folder = dir.path().join("slices");
    std::fs::create_dir(&folder).unwrap();
    let plane = shape[1] * shape[2];
    for z in 0..shape[0] {
        // slice_2 must come before slice_10.
        let p = folder.join(format!("slice_{z}.tif"));
        let page = dvc_stream::store::tiff_write::slice_typed(&data, z * plane, (z + 1) * plane);
        dvc_stream::store::tiff_write::write_tiff(&p, [1, shape[1], shape[2]], &page).unwrap();
    }
    let vol = Volume::open(&folder, ChunkCache::new(1 << 20)).unwrap();
    assert_volume_equals(&vol, shape, &data);
    let zarr = dir.path().join("s.zarr");
    tiff_to_zarr(&folder, &zarr, &opts([4, 4, 4], Codec::None, None, Some(1))).unwrap();
    assert_volume_equals(&Volume::open(&zarr, ChunkCache::new(1 << 20)).unwrap(), shape, &data);
}

/// spam's binning, computed directly on the whole array.
fn reference_binning(shape: [usize; 3], data: &TypedBuf, b: usize) -> Vec<f64> {
    let s = binned_shape(shape, b);
    let t = binning_top(shape, b);
    let mut out = vec![0f64; s.iter().product()];
    for z in 0..s[0] {
        for y in 0..s[1] {
            for x in 0..s[2] {
                let mut sum = 0.0;
                for dz in 0..b {
                    for dy in 0..b {
                        for dx in 0..b {
                            let i = ((t[0] + z * b + dz) * shape[1] + t[1] + y * b + dy) * shape[2] + t[2] + x * b + dx;
                            sum += data.get_f64(i);
                        }
                    }
                }
                let m = sum / (b * b * b) as f64;
                out[(z * s[1] + y) * s[2] + x] = if data.dtype().is_integer() { m.floor() } else { m as f32 as f64 };
            }
        }
    }
    out
}

#[test]
fn pyramid_levels_equal_spam_binning() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [23, 30, 37];
    for dtype in [DType::U16, DType::F32] {
        let data = pattern(shape, dtype);
        let tif = dir.path().join(format!("p-{dtype}.tif"));
        dvc_stream::store::tiff_write::write_tiff(&tif, shape, &data).unwrap();
        let zarr = dir.path().join(format!("p-{dtype}.zarr"));
        tiff_to_zarr(&tif, &zarr, &opts([5, 6, 7], Codec::Zstd(3), None, Some(3))).unwrap();
        let cache = ChunkCache::new(1 << 20);
        let base = Volume::open(&zarr, cache.clone()).unwrap();
        let on_the_fly = Volume::open(&tif, cache).unwrap();
        for b in [2usize, 4] {
            let want = reference_binning(shape, &data, b);
            for vol in [base.level(b).unwrap(), on_the_fly.level(b).unwrap()] {
                assert_eq!(vol.shape(), binned_shape(shape, b));
                let got = vol.read_all().unwrap();
                for (i, v) in got.iter().enumerate() {
                    assert!((*v as f64 - want[i]).abs() <= want[i].abs() * 1e-6, "{dtype} bin {b} voxel {i}: {v} vs {}", want[i]);
                }
            }
        }
    }
}

#[test]
fn sharded_and_blosc_stores() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [17, 19, 21];
    let data = pattern(shape, DType::U16);
    let tif = dir.path().join("a.tif");
    dvc_stream::store::tiff_write::write_tiff(&tif, shape, &data).unwrap();
    for (name, codec, shard) in [("shard", Codec::Zstd(1), Some(2)), ("blosc", Codec::Blosc, None)] {
        let zarr = dir.path().join(format!("{name}.zarr"));
        tiff_to_zarr(&tif, &zarr, &opts([4, 4, 4], codec, shard, Some(2))).unwrap();
        let vol = Volume::open(&zarr, ChunkCache::new(1 << 20)).unwrap();
        assert_eq!(vol.chunk_shape(), [4, 4, 4], "reads inner chunks of shards");
        assert_volume_equals(&vol, shape, &data);
    }
}

#[test]
fn a_box_in_a_sharded_store_decodes_only_the_inner_chunks_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [64, 64, 64];
    let data = pattern(shape, DType::U16);
    let tif = dir.path().join("a.tif");
    dvc_stream::store::tiff_write::write_tiff(&tif, shape, &data).unwrap();
    // 8³ inner chunks in 32³ shards: a 6³ box inside one inner chunk, then one across 2×2×2.
    let zarr = dir.path().join("s.zarr");
    tiff_to_zarr(&tif, &zarr, &opts([8, 8, 8], Codec::Zstd(1), Some(4), Some(1))).unwrap();
    let vol = Volume::open(&zarr, ChunkCache::new(1 << 20)).unwrap();
    let b = vol.read_box(17..23, 9..15, 41..47).unwrap();
    assert_eq!(b[[0, 0, 0]] as f64, data.get_f64((17 * 64 + 9) * 64 + 41));
    let s = vol.cache().stats();
    assert_eq!((s.misses, s.bytes_read), (1, 8 * 8 * 8 * 2), "one inner chunk of the 32³ shard: {s}");
    vol.read_box(20..28, 12..20, 44..52).unwrap();
    let s = vol.cache().stats();
    assert_eq!((s.misses, s.bytes_read), (8, 8 * 8 * 8 * 2 * 8), "{s}");
    // Held in their stored type: 8 uint16 inner chunks.
    assert_eq!(vol.cache().resident_bytes(), 8 * 1024);
}

fn memory_volume(shape: [usize; 3], chunk: [usize; 3]) -> (Volume, Vec<f32>) {
    let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32).collect();
    let src = dvc_stream::store::memory::MemorySource {
        path: "memory".into(),
        shape,
        chunk,
        data: Arc::new(data.clone()),
    };
    (Volume::new(Arc::new(src), ChunkCache::new(4096)), data)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn read_box_equals_slicing(z0 in -6i64..20, y0 in -6i64..20, x0 in -6i64..20, dz in 0i64..14, dy in 0i64..14, dx in 0i64..14) {
        let shape = [13usize, 11, 15];
        let (vol, data) = memory_volume(shape, [4, 3, 5]);
        let b = vol.read_box(z0..z0 + dz, y0..y0 + dy, x0..x0 + dx).unwrap();
        for ((i, j, k), v) in b.indexed_iter() {
            let (z, y, x) = (z0 + i as i64, y0 + j as i64, x0 + k as i64);
            let inside = z >= 0 && y >= 0 && x >= 0 && (z as usize) < shape[0] && (y as usize) < shape[1] && (x as usize) < shape[2];
            if inside {
                prop_assert_eq!(*v, data[((z as usize) * shape[1] + y as usize) * shape[2] + x as usize]);
            } else {
                prop_assert!(v.is_nan());
            }
        }
    }
}

#[test]
fn reading_a_volume_many_times_the_cache_keeps_it_bounded() {
    let (vol, _) = memory_volume([40, 40, 40], [8, 8, 8]);
    // 4096-byte budget = 2 chunks of 8³ f32... each chunk is 2 KiB: the whole volume is 125 chunks.
    for _ in 0..2 {
        let b = vol.read_all().unwrap();
        assert_eq!(b.len(), 64000);
    }
    assert!(vol.cache().resident_bytes() <= 4096);
    let s = vol.cache().stats();
    assert_eq!(s.misses, 250, "nothing stays cached beyond the budget");
}

#[test]
fn synth_images_are_the_texture() {
    use dvc_stream::phi::{compute_phi, PhiComponents};
    use dvc_stream::synth::{deformation::Deformation, texture::Texture, SynthFormat, SynthSpec};
    let dir = tempfile::tempdir().unwrap();
    let phi = compute_phi(&PhiComponents { t: Some([1.3, -2.7, 0.4]), r: Some([3.0, 4.0, 0.0]), z: Some([1.01, 1.01, 1.01]), ..Default::default() });
    let spec = SynthSpec {
        shape: [24, 20, 28],
        texture: Texture::new(5),
        deformation: Deformation::affine(phi, nalgebra::Vector3::new(11.5, 9.5, 13.5)),
        noise: 0.0,
        dtype: DType::F32,
    };
    let layout = ArrayLayout { chunk: [8, 8, 8], codec: Codec::Zstd(1), shard: None };
    for image in [1u8, 2] {
        let p = dir.path().join(format!("im{image}.zarr"));
        spec.write(image, &p, &SynthFormat::Zarr { layout, levels: 1, labels: false }, false).unwrap();
        let v = Volume::open(&p, ChunkCache::new(1 << 20)).unwrap().read_all().unwrap();
        for ((z, y, x), val) in v.indexed_iter() {
            let want = if image == 1 {
                spec.texture.eval([z as f64, y as f64, x as f64])
            } else {
                let r = spec.deformation.inverse(&nalgebra::Vector3::new(z as f64, y as f64, x as f64));
                spec.texture.eval([r[0], r[1], r[2]])
            };
            // Equal to float precision (bumps are summed in another order when splatted).
            assert!((*val - want as f32).abs() <= 1e-6 * want.abs() as f32, "image {image} at {z} {y} {x}: {val} vs {want}");
        }
    }
}
