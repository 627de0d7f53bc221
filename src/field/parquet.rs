//! Φ fields as typed Arrow tables in Parquet files, for pandas, DuckDB and polars.
//!
//! One schema per layout: the id column (`NodeNumber`, or `Label` for label fields),
//! positions, the 12 Φ entries under spam's names, and exactly the status columns of the
//! layout's spam TSV, with real types (`returnStatus`, `iterations`, `LabelDilate` are
//! integers). Key-value metadata records the tool, its
//! version, the full command line, the parameters as JSON, the image shapes, the bin level
//! and the layout, so a table says how it was made. Rows are written in row groups as they
//! arrive: a field is never held whole in memory.
//!
//! Parquet's own page checksums are not written by the `parquet` crate (60), and zstd pages
//! carry none, so a flipped bit in a data page would be read as a value. Every table we
//! write therefore records a CRC-32 of its data (every byte before the footer) in the
//! key-value metadata, and every read checks it first: a damaged table fails naming the
//! file instead of feeding wrong numbers on.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use nalgebra::Vector3;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{FieldKind, FieldRow, Layout, PhiField};
use crate::phi;

/// Key of the data checksum: "CRC32HEX:LENGTH", the CRC-32 of the file's first LENGTH bytes.
const DATA_CRC_KEY: &str = "dvc_stream.data_crc32";

/// A file that hashes every byte written to it, for [`DATA_CRC_KEY`].
pub struct ChecksumFile {
    file: File,
    crc: crc32fast::Hasher,
    len: u64,
}

impl ChecksumFile {
    fn new(file: File) -> ChecksumFile {
        ChecksumFile { file, crc: crc32fast::Hasher::new(), len: 0 }
    }
}

impl std::io::Write for ChecksumFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Closes a table: flushes every row group to the file, records the data checksum, then
/// writes the footer.
fn close_with_checksum(mut w: ArrowWriter<ChecksumFile>, path: &Path) -> Result<()> {
    w.flush().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    w.sync().map_err(|e| anyhow!("{}: cannot write ({e})", path.display()))?;
    let f = w.inner();
    let value = format!("{:08x}:{}", f.crc.clone().finalize(), f.len);
    w.append_key_value_metadata(KeyValue::new(DATA_CRC_KEY.to_string(), value));
    let f = w.into_inner().map_err(|e| anyhow!("{}: cannot finish Parquet file ({e})", path.display()))?;
    // On disk before anything (a commit, a checkpoint manifest) names it as complete.
    f.file.sync_all().with_context(|| format!("{}: cannot flush to disk", path.display()))?;
    Ok(())
}

/// Checks a table's data against the checksum its writer recorded (tables written before
/// checksums, or by other programs, have none and are read as they are).
fn verify_checksum(path: &Path, meta: &[(String, String)]) -> Result<()> {
    let Some((_, v)) = meta.iter().find(|(k, _)| k == DATA_CRC_KEY) else { return Ok(()) };
    let parsed = v.split_once(':').and_then(|(c, l)| Some((u32::from_str_radix(c, 16).ok()?, l.parse::<u64>().ok()?)));
    let Some((want, len)) = parsed else {
        bail!("{}: corrupt Parquet table: unreadable data checksum '{v}'", path.display());
    };
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let file_len = f.metadata().with_context(|| format!("{}: cannot read", path.display()))?.len();
    if len > file_len {
        bail!("{}: truncated Parquet table: its checksum covers {len} bytes, the file has {file_len}", path.display());
    }
    let mut crc = crc32fast::Hasher::new();
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::io::Read::take(f, len));
    loop {
        let buf = std::io::BufRead::fill_buf(&mut r).with_context(|| format!("{}: cannot read", path.display()))?;
        if buf.is_empty() {
            break;
        }
        crc.update(buf);
        let n = buf.len();
        std::io::BufRead::consume(&mut r, n);
    }
    let got = crc.finalize();
    if got != want {
        bail!("{}: corrupt Parquet table: its data checksum is {got:08x}, the writer recorded {want:08x} (the file was damaged after it was written)", path.display());
    }
    Ok(())
}

/// Rows per row group (and per buffered batch).
pub const ROW_GROUP: usize = 16384;

const FLOAT_COLS: [&str; 15] = [
    "Zpos", "Ypos", "Xpos", "Fzz", "Fzy", "Fzx", "Zdisp", "Fyz", "Fyy", "Fyx", "Ydisp", "Fxz", "Fxy", "Fxx", "Xdisp",
];

/// The predicted standard deviations of the displacement that an ldic table carries after
/// spam's columns (Parquet only: the spam TSV keeps spam's layout).
pub const DISP_SD_COLS: [&str; 3] = ["Zdisp_sd", "Ydisp_sd", "Xdisp_sd"];

/// Whether a status column holds integers (stored as int32) or reals (float64).
fn is_integer_column(name: &str) -> bool {
    matches!(name, "iterations" | "returnStatus" | "LabelDilate")
}

/// The columns after the id, positions and Φ: exactly the layout's spam TSV columns, so a
/// table carries its tool's columns and no others (an ldic table has no pixelSearchCC).
fn status_columns(layout: Layout) -> Vec<&'static str> {
    super::tsv::columns(layout).into_iter().filter(|c| !FLOAT_COLS.contains(c) && !matches!(*c, "NodeNumber" | "Label")).collect()
}

/// The Arrow schema of a field with the given layout.
pub fn schema(layout: Layout) -> SchemaRef {
    let mut fields = vec![Field::new(if layout.is_labels() { "Label" } else { "NodeNumber" }, DataType::Int64, false)];
    for c in FLOAT_COLS {
        fields.push(Field::new(c, DataType::Float64, false));
    }
    for c in status_columns(layout) {
        fields.push(Field::new(c, if is_integer_column(c) { DataType::Int32 } else { DataType::Float64 }, false));
    }
    if layout == Layout::Ldic {
        for c in DISP_SD_COLS {
            fields.push(Field::new(c, DataType::Float64, false));
        }
    }
    Arc::new(Schema::new(fields))
}

/// Provenance stored in the file's key-value metadata.
#[derive(Clone, Debug, Default)]
pub struct FieldMeta {
    pub tool: String,
    pub command_line: String,
    pub parameters: serde_json::Value,
    pub image_shapes: Vec<[usize; 3]>,
    pub bin: usize,
    /// Nodes per axis and spacing of a table on a grid that is not a Φ field (a strain
    /// table), recorded like a Φ grid's.
    pub grid: Option<([usize; 3], [f64; 3])>,
    /// Columns of a [`write_columns`] table that hold integers (bounding boxes, volumes):
    /// stored as int64, a NaN (a missing label) as null.
    pub integer_columns: Vec<String>,
    /// The physical size of a voxel of the images the table was measured on (positions and
    /// displacements stay in voxels, as spam's).
    pub voxel_size: Option<crate::store::voxel_size::VoxelSize>,
}

impl FieldMeta {
    /// Metadata for the running command.
    pub fn for_command(tool: &str, parameters: serde_json::Value) -> FieldMeta {
        FieldMeta {
            tool: tool.to_string(),
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
            parameters,
            image_shapes: vec![],
            bin: 1,
            grid: None,
            integer_columns: vec![],
            voxel_size: None,
        }
    }
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue::new(format!("dvc_stream.{k}"), v)
}

/// A Parquet field being written row group by row group, at `path` (a partial name of the
/// run's output set, or a checkpoint segment that a manifest names once it is complete).
pub struct ParquetWriter {
    path: std::path::PathBuf,
    writer: ArrowWriter<ChecksumFile>,
    schema: SchemaRef,
    rows: Vec<FieldRow>,
}

impl ParquetWriter {
    pub fn create(path: &Path, layout: Layout, kind: &FieldKind, meta: &FieldMeta) -> Result<ParquetWriter> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let (kind_s, dims, spacing) = match kind {
            FieldKind::Registration => ("registration", [1, 1, 1], [0.0; 3]),
            FieldKind::Grid { dims, spacing } => ("grid", *dims, *spacing),
            FieldKind::Labels => ("labels", [0, 0, 0], [0.0; 3]),
        };
        let meta_kv = vec![
            kv("tool", meta.tool.clone()),
            kv("version", env!("CARGO_PKG_VERSION").to_string()),
            kv("command_line", meta.command_line.clone()),
            kv("parameters", meta.parameters.to_string()),
            kv("image_shapes", serde_json::to_string(&meta.image_shapes).unwrap()),
            kv("bin", meta.bin.to_string()),
            kv("layout", layout.name().to_string()),
            kv("kind", kind_s.to_string()),
            kv("grid_dims", serde_json::to_string(&dims).unwrap()),
            kv("grid_spacing", serde_json::to_string(&spacing).unwrap()),
        ];
        let mut meta_kv = meta_kv;
        if let Some(v) = &meta.voxel_size {
            meta_kv.push(kv("voxel_size", serde_json::to_string(v).unwrap_or_default()));
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .set_key_value_metadata(Some(meta_kv))
            .build();
        let schema = schema(layout);
        let writer = ArrowWriter::try_new(ChecksumFile::new(file), schema.clone(), Some(props))
            .map_err(|e| anyhow!("{}: cannot start Parquet file ({e})", path.display()))?;
        Ok(ParquetWriter { path: path.to_path_buf(), writer, schema, rows: Vec::with_capacity(ROW_GROUP) })
    }

    /// Buffers a row; a full row group is written out at once.
    pub fn write_row(&mut self, r: FieldRow) -> Result<()> {
        self.rows.push(r);
        if self.rows.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch = rows_to_batch(&self.schema, &self.rows)?;
        self.writer
            .write(&batch)
            .map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
        self.writer.flush().map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
        self.rows.clear();
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        let path = self.path;
        close_with_checksum(self.writer, &path)?;
        Ok(())
    }
}

fn rows_to_batch(schema: &SchemaRef, rows: &[FieldRow]) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        cols.push(match field.data_type() {
            DataType::Int64 => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
            DataType::Int32 => Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| super::tsv::value(r, name) as i32))),
            _ if DISP_SD_COLS.contains(&name) => {
                let k = DISP_SD_COLS.iter().position(|c| *c == name).expect("one of the three");
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.disp_sd.map_or(f64::NAN, |sd| sd[k]))))
            }
            _ => Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| super::tsv::value(r, name)))),
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Writes a whole field at `path` (a partial name of the run's output set).
pub fn write_field(path: &Path, field: &PhiField, meta: &FieldMeta) -> Result<()> {
    let mut w = ParquetWriter::create(path, field.layout, &field.kind, meta)?;
    for i in 0..field.len() {
        w.write_row(field.row(i))?;
    }
    w.finish()
}

/// Writes a table of named columns (an integer id column first) with the run's metadata:
/// the form of tables that are not Φ fields (strain components, the label table). Columns
/// named in `meta.integer_columns` are stored as int64, the rest as float64. Written at
/// `path` (a partial name of the run's output set).
pub fn write_columns(path: &Path, id_name: &str, columns: &[(String, Vec<f64>)], meta: &FieldMeta) -> Result<()> {
    let n = columns.first().map(|c| c.1.len()).unwrap_or(0);
    let integer = |name: &str| meta.integer_columns.iter().any(|c| c == name);
    let mut fields = vec![Field::new(id_name, DataType::Int64, false)];
    fields.extend(columns.iter().map(|(name, _)| if integer(name) { Field::new(name, DataType::Int64, true) } else { Field::new(name, DataType::Float64, false) }));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut kvs = vec![
        kv("tool", meta.tool.clone()),
        kv("version", env!("CARGO_PKG_VERSION").to_string()),
        kv("command_line", meta.command_line.clone()),
        kv("parameters", meta.parameters.to_string()),
    ];
    if !meta.image_shapes.is_empty() {
        kvs.push(kv("image_shapes", serde_json::to_string(&meta.image_shapes).unwrap_or_default()));
    }
    if let Some(v) = &meta.voxel_size {
        kvs.push(kv("voxel_size", serde_json::to_string(v).unwrap_or_default()));
    }
    if let Some((dims, spacing)) = meta.grid {
        kvs.push(kv("kind", "grid".into()));
        kvs.push(kv("grid_dims", serde_json::to_string(&dims).unwrap_or_default()));
        kvs.push(kv("grid_spacing", serde_json::to_string(&spacing).unwrap_or_default()));
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_key_value_metadata(Some(kvs))
        .build();
    let mut w = ArrowWriter::try_new(ChecksumFile::new(file), schema.clone(), Some(props)).map_err(|e| anyhow!("{}: cannot start Parquet file ({e})", path.display()))?;
    for start in (0..n.max(1)).step_by(ROW_GROUP) {
        let end = (start + ROW_GROUP).min(n);
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(start as i64..end as i64))];
        for (name, v) in columns {
            let part = &v[start..end];
            cols.push(if integer(name) {
                Arc::new(part.iter().map(|x| x.is_finite().then_some(*x as i64)).collect::<Int64Array>())
            } else {
                Arc::new(Float64Array::from(part.to_vec()))
            });
        }
        w.write(&RecordBatch::try_new(schema.clone(), cols)?).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    close_with_checksum(w, path)?;
    Ok(())
}

/// Every column of a Parquet table as f64 (integer columns converted, other types and nulls
/// NaN): for tables that are not Φ fields, such as strain tables.
pub fn read_columns(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    verify_checksum(path, &read_metadata(path)?)?;
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| anyhow!("{}: not a Parquet file ({e})", path.display()))?;
    let names: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut columns = vec![Vec::new(); names.len()];
    for batch in builder.build().map_err(|e| anyhow!("{}: {e}", path.display()))? {
        let b = batch.map_err(|e| anyhow!("{}: {e}", path.display()))?;
        for (k, c) in b.columns().iter().enumerate() {
            let any = c.as_any();
            if let Some(a) = any.downcast_ref::<Float64Array>() {
                columns[k].extend(a.iter().map(|v| v.unwrap_or(f64::NAN)));
            } else if let Some(a) = any.downcast_ref::<Int32Array>() {
                columns[k].extend(a.iter().map(|v| v.map_or(f64::NAN, f64::from)));
            } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                columns[k].extend(a.iter().map(|v| v.map_or(f64::NAN, |x| x as f64)));
            } else {
                columns[k].extend(std::iter::repeat_n(f64::NAN, c.len()));
            }
        }
    }
    Ok((names, columns))
}

/// The voxel size a table written by dvc-stream records, if any.
pub fn read_voxel_size(path: &Path) -> Option<crate::store::voxel_size::VoxelSize> {
    let meta = read_metadata(path).ok()?;
    let v = meta.iter().find(|(k, _)| k == "dvc_stream.voxel_size")?;
    serde_json::from_str(&v.1).ok()
}

/// The key-value metadata of a Parquet file written by dvc-stream.
pub fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| anyhow!("{}: not a Parquet file ({e})", path.display()))?;
    Ok(b.metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|v| v.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default())).collect())
        .unwrap_or_default())
}

fn f64_col<'a>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a Float64Array> {
    b.column_by_name(name)
        .ok_or_else(|| anyhow!("{}: missing column '{name}'", path.display()))?
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| anyhow!("{}: column '{name}' is not float64", path.display()))
}

fn i32_col<'a>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a Int32Array> {
    b.column_by_name(name)
        .ok_or_else(|| anyhow!("{}: missing column '{name}'", path.display()))?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| anyhow!("{}: column '{name}' is not int32", path.display()))
}

/// The rows of a field written by [`ParquetWriter`], a row group at a time: what reads a
/// table too large to hold (`merge` of a sharded run).
pub struct RowReader {
    path: std::path::PathBuf,
    pub layout: Layout,
    /// Registration, labels, or a grid whose shape is not known from the rows read so far.
    pub kind: FieldKind,
    batches: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    rows: std::vec::IntoIter<FieldRow>,
    /// Rows of the batches read so far (to name a bad row by its place in the file).
    rows_read: usize,
}

impl RowReader {
    pub fn open(path: &Path) -> Result<RowReader> {
        let meta = read_metadata(path)?;
        verify_checksum(path, &meta)?;
        let get = |k: &str| meta.iter().find(|(a, _)| a == &format!("dvc_stream.{k}")).map(|(_, v)| v.clone());
        let layout = get("layout")
            .and_then(|l| Layout::parse(&l))
            .ok_or_else(|| anyhow!("{}: not a dvc-stream field (no layout metadata)", path.display()))?;
        let kind = match get("kind").as_deref() {
            Some("registration") => FieldKind::Registration,
            Some("labels") => FieldKind::Labels,
            Some("grid") => FieldKind::Grid { dims: [0; 3], spacing: [0.0; 3] },
            other => bail!("{}: unknown field kind {:?}", path.display(), other),
        };
        let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let batches = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| anyhow!("{}: not a Parquet file ({e})", path.display()))?
            .build()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(RowReader { path: path.to_path_buf(), layout, kind, batches, rows: Vec::new().into_iter(), rows_read: 0 })
    }

    /// The next row, or None at the end.
    pub fn next_row(&mut self) -> Result<Option<FieldRow>> {
        loop {
            if let Some(r) = self.rows.next() {
                return Ok(Some(r));
            }
            let Some(batch) = self.batches.next() else { return Ok(None) };
            let b = batch.map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
            self.rows = batch_rows(&b, self.layout, &self.path, self.rows_read)?.into_iter();
            self.rows_read += b.num_rows();
        }
    }
}

/// The rows of one batch, the first being row `first + 1` of the file.
fn batch_rows(b: &RecordBatch, layout: Layout, path: &Path, first: usize) -> Result<Vec<FieldRow>> {
    let idname = if layout.is_labels() { "Label" } else { "NodeNumber" };
    let ids = b
        .column_by_name(idname)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        .ok_or_else(|| anyhow!("{}: missing column '{idname}'", path.display()))?;
    let fl: Vec<&Float64Array> = FLOAT_COLS.iter().map(|c| f64_col(b, c, path)).collect::<Result<_>>()?;
    // Status columns a layout does not carry read as 0 (tables written before each table had
    // exactly its tool's columns carry them all).
    let real = |names: &[&str]| -> Result<Option<&Float64Array>> {
        names.iter().find(|n| b.column_by_name(n).is_some()).map(|n| f64_col(b, n, path)).transpose()
    };
    let int = |name: &str| -> Result<Option<&Int32Array>> { b.column_by_name(name).map(|_| i32_col(b, name, path)).transpose() };
    let (cc, err, dpn) = (real(&["pixelSearchCC", "PSCC"])?, real(&["error"])?, real(&["deltaPhiNorm"])?);
    let (its, rs, ld) = (int("iterations")?, int("returnStatus")?, int("LabelDilate")?);
    // Tables written before ldic gave an uncertainty have none: NaN.
    let sd: Vec<Option<&Float64Array>> = DISP_SD_COLS.iter().map(|c| real(&[c])).collect::<Result<_>>()?;
    let fv = |c: Option<&Float64Array>, i: usize| c.map_or(0.0, |a| a.value(i));
    let iv = |c: Option<&Int32Array>, i: usize| c.map_or(0.0, |a| a.value(i) as f64);
    (0..b.num_rows())
        .map(|i| {
            let v = |k: usize| fl[k].value(i);
            let f = nalgebra::Matrix3::new(v(3), v(4), v(5), v(7), v(8), v(9), v(11), v(12), v(13));
            Ok(FieldRow {
                id: ids.value(i),
                position: Vector3::new(v(0), v(1), v(2)),
                phi: phi::from_f_t(&f, &Vector3::new(v(6), v(10), v(14))),
                cc: fv(cc, i),
                error: fv(err, i),
                iterations: iv(its, i),
                return_status: match rs {
                    Some(a) => super::Status::read(f64::from(a.value(i)), path, first + i + 1)?,
                    None => super::Status::NotRun,
                },
                delta_phi_norm: fv(dpn, i),
                label_dilate: iv(ld, i),
                disp_sd: super::some_sd(std::array::from_fn(|k| sd[k].map_or(f64::NAN, |a| a.value(i)))),
            })
        })
        .collect()
}

/// Reads a field written by [`ParquetWriter`].
pub fn read_field(path: &Path) -> Result<PhiField> {
    let mut reader = RowReader::open(path)?;
    let mut field = PhiField::new(reader.kind.clone(), reader.layout);
    while let Some(r) = reader.next_row()? {
        field.push(r);
    }
    if let FieldKind::Grid { .. } = field.kind {
        field.kind = PhiField::grid_from_positions(&field.positions);
    }
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fields_are_written_in_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.parquet");
        let kind = FieldKind::Grid { dims: [2, 500, 200], spacing: [1.0; 3] };
        let mut w = ParquetWriter::create(&path, Layout::Ldic, &kind, &FieldMeta::for_command("test", serde_json::json!({}))).unwrap();
        for i in 0..200_000i64 {
            let p = Vector3::new((i / 100_000) as f64, ((i / 200) % 500) as f64, (i % 200) as f64);
            w.write_row(FieldRow {
                id: i,
                position: p,
                phi: phi::identity(),
                cc: 0.0,
                error: 0.0,
                iterations: 1.0,
                return_status: crate::field::Status::Converged,
                delta_phi_norm: 0.0,
                label_dilate: 0.0,
                disp_sd: None,
            })
            .unwrap();
            // Never more than one row group waits in memory.
            assert!(w.rows.len() < ROW_GROUP);
        }
        w.finish().unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        assert_eq!(b.metadata().num_row_groups(), 200_000usize.div_ceil(ROW_GROUP));
        assert_eq!(b.metadata().file_metadata().num_rows(), 200_000);
        let back = read_field(&path).unwrap();
        assert_eq!(back.ids[199_999], 199_999);
    }
}
