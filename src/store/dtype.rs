//! Voxel data types a volume may be stored in.
//!
//! Every kernel works on `f32` boxes; the stored type only matters for reading, for
//! writing results back in the input's type (as spam does), and for spam's integer binning.

use anyhow::{bail, Result};

/// The element type of a stored volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8,
    U16,
    I16,
    U32,
    F32,
    F64,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// The name used on the command line, in Zarr metadata and in messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::U32 => "uint32",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    pub fn parse(s: &str) -> Result<DType> {
        Ok(match s {
            "uint8" | "u8" => DType::U8,
            "uint16" | "u16" => DType::U16,
            "int16" | "i16" => DType::I16,
            "uint32" | "u32" => DType::U32,
            "float32" | "f32" => DType::F32,
            "float64" | "f64" => DType::F64,
            other => bail!("unsupported data type '{other}' (use uint8, uint16, int16, uint32, float32 or float64)"),
        })
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, DType::F32 | DType::F64)
    }

    /// Converts an f32 value to this type the way NumPy's `astype` does for the values
    /// spam writes: floats truncate toward zero and saturate here instead of wrapping
    /// (spam wraps negative values; see docs/spam-differences.md).
    pub fn clamp_value(self, v: f32) -> f64 {
        let v = v as f64;
        if !v.is_finite() {
            return if self.is_integer() { 0.0 } else { v };
        }
        match self {
            DType::U8 => v.trunc().clamp(0.0, u8::MAX as f64),
            DType::U16 => v.trunc().clamp(0.0, u16::MAX as f64),
            DType::I16 => v.trunc().clamp(i16::MIN as f64, i16::MAX as f64),
            DType::U32 => v.trunc().clamp(0.0, u32::MAX as f64),
            DType::F32 | DType::F64 => v,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed buffer of voxels in Z-major order, as read from or written to a file.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedBuf {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl TypedBuf {
    pub fn dtype(&self) -> DType {
        match self {
            TypedBuf::U8(_) => DType::U8,
            TypedBuf::U16(_) => DType::U16,
            TypedBuf::I16(_) => DType::I16,
            TypedBuf::U32(_) => DType::U32,
            TypedBuf::F32(_) => DType::F32,
            TypedBuf::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TypedBuf::U8(v) => v.len(),
            TypedBuf::U16(v) => v.len(),
            TypedBuf::I16(v) => v.len(),
            TypedBuf::U32(v) => v.len(),
            TypedBuf::F32(v) => v.len(),
            TypedBuf::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn zeros(dtype: DType, n: usize) -> TypedBuf {
        match dtype {
            DType::U8 => TypedBuf::U8(vec![0; n]),
            DType::U16 => TypedBuf::U16(vec![0; n]),
            DType::I16 => TypedBuf::I16(vec![0; n]),
            DType::U32 => TypedBuf::U32(vec![0; n]),
            DType::F32 => TypedBuf::F32(vec![0.0; n]),
            DType::F64 => TypedBuf::F64(vec![0.0; n]),
        }
    }

    /// Sets the length to `n`, zero-filling new values (a recycled buffer of the same length is
    /// left as it is, its values to be overwritten).
    pub fn resize(&mut self, n: usize) {
        match self {
            TypedBuf::U8(v) => v.resize(n, 0),
            TypedBuf::U16(v) => v.resize(n, 0),
            TypedBuf::I16(v) => v.resize(n, 0),
            TypedBuf::U32(v) => v.resize(n, 0),
            TypedBuf::F32(v) => v.resize(n, 0.0),
            TypedBuf::F64(v) => v.resize(n, 0.0),
        }
    }

    /// The values as native-endian bytes.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            TypedBuf::U8(v) => v,
            TypedBuf::U16(v) => bytemuck::cast_slice_mut(v),
            TypedBuf::I16(v) => bytemuck::cast_slice_mut(v),
            TypedBuf::U32(v) => bytemuck::cast_slice_mut(v),
            TypedBuf::F32(v) => bytemuck::cast_slice_mut(v),
            TypedBuf::F64(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// Value at `i` widened to f64 (exact for every supported type but f64 itself).
    #[inline]
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            TypedBuf::U8(v) => v[i] as f64,
            TypedBuf::U16(v) => v[i] as f64,
            TypedBuf::I16(v) => v[i] as f64,
            TypedBuf::U32(v) => v[i] as f64,
            TypedBuf::F32(v) => v[i] as f64,
            TypedBuf::F64(v) => v[i],
        }
    }


    /// Writes values `start..start + dst.len()` into `dst` as f32. `as f32` is exact for the
    /// 8- and 16-bit types and rounds to nearest for uint32 and float64, the same value the
    /// readers produced when chunks were converted at decode time.
    #[inline]
    pub fn copy_f32(&self, start: usize, dst: &mut [f32]) {
        let end = start + dst.len();
        macro_rules! conv {
            ($v:expr) => {
                for (d, s) in dst.iter_mut().zip(&$v[start..end]) {
                    *d = *s as f32;
                }
            };
        }
        match self {
            TypedBuf::U8(v) => conv!(v),
            TypedBuf::U16(v) => conv!(v),
            TypedBuf::I16(v) => conv!(v),
            TypedBuf::U32(v) => conv!(v),
            TypedBuf::F32(v) => dst.copy_from_slice(&v[start..end]),
            TypedBuf::F64(v) => conv!(v),
        }
    }

    /// All values as f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        self.copy_f32(0, &mut out);
        out
    }

    /// f32 values read from a volume stored as `dtype`, held back in that type when it is
    /// narrower than f32 (uint8, uint16, int16: exact, as the values came from it), else as f32.
    pub fn narrowed(dtype: DType, values: Vec<f32>) -> TypedBuf {
        match dtype {
            DType::U8 | DType::U16 | DType::I16 => TypedBuf::from_f32(dtype, &values),
            _ => TypedBuf::F32(values),
        }
    }

    /// Builds a buffer of `dtype` from f32 values, truncating and saturating integers.
    pub fn from_f32(dtype: DType, values: &[f32]) -> TypedBuf {
        match dtype {
            DType::U8 => TypedBuf::U8(values.iter().map(|&v| dtype.clamp_value(v) as u8).collect()),
            DType::U16 => TypedBuf::U16(values.iter().map(|&v| dtype.clamp_value(v) as u16).collect()),
            DType::I16 => TypedBuf::I16(values.iter().map(|&v| dtype.clamp_value(v) as i16).collect()),
            DType::U32 => TypedBuf::U32(values.iter().map(|&v| dtype.clamp_value(v) as u32).collect()),
            DType::F32 => TypedBuf::F32(values.to_vec()),
            DType::F64 => TypedBuf::F64(values.iter().map(|&v| v as f64).collect()),
        }
    }

}
