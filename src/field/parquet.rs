//! Φ fields as typed Arrow tables in Parquet files, for pandas, DuckDB and polars.
//!
//! One schema for every field: the id column (`NodeNumber`, or `Label` for label fields),
//! positions, the 12 Φ entries under spam's names, and the status columns with real types
//! (`returnStatus` and `iterations` are integers). Key-value metadata records the tool, its
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
use arrow::array::{Array, ArrayRef, Float64Array, Float64Builder, Int32Array, Int32Builder, Int64Array, Int64Builder, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use nalgebra::Vector3;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{FieldKind, FieldRow, Layout, PhiField};
use crate::phi;
use crate::store::output::PendingOutput;

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
    w.close().map_err(|e| anyhow!("{}: cannot finish Parquet file ({e})", path.display()))?;
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

/// The Arrow schema of a field with the given layout.
pub fn schema(layout: Layout) -> SchemaRef {
    let mut fields = vec![Field::new(if layout.is_labels() { "Label" } else { "NodeNumber" }, DataType::Int64, false)];
    for c in FLOAT_COLS {
        fields.push(Field::new(c, DataType::Float64, false));
    }
    fields.push(Field::new("pixelSearchCC", DataType::Float64, false));
    fields.push(Field::new("error", DataType::Float64, false));
    fields.push(Field::new("iterations", DataType::Int32, false));
    fields.push(Field::new("returnStatus", DataType::Int32, false));
    fields.push(Field::new("deltaPhiNorm", DataType::Float64, false));
    fields.push(Field::new("LabelDilate", DataType::Int32, false));
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
        }
    }
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue::new(format!("dvc_stream.{k}"), v)
}

/// A Parquet field being written row group by row group.
pub struct ParquetWriter {
    pending: PendingOutput,
    writer: ArrowWriter<ChecksumFile>,
    schema: SchemaRef,
    rows: Vec<FieldRow>,
}

impl ParquetWriter {
    pub fn create(path: &Path, layout: Layout, kind: &FieldKind, meta: &FieldMeta) -> Result<ParquetWriter> {
        let pending = PendingOutput::new(path, true)?;
        let file = File::create(pending.path()).with_context(|| format!("{}: cannot create", path.display()))?;
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
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .set_key_value_metadata(Some(meta_kv))
            .build();
        let schema = schema(layout);
        let writer = ArrowWriter::try_new(ChecksumFile::new(file), schema.clone(), Some(props))
            .map_err(|e| anyhow!("{}: cannot start Parquet file ({e})", path.display()))?;
        Ok(ParquetWriter { pending, writer, schema, rows: Vec::with_capacity(ROW_GROUP) })
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
            .map_err(|e| anyhow!("{}: {e}", self.pending.final_path().display()))?;
        self.writer.flush().map_err(|e| anyhow!("{}: {e}", self.pending.final_path().display()))?;
        self.rows.clear();
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        let path = self.pending.final_path().to_path_buf();
        close_with_checksum(self.writer, &path)?;
        self.pending.commit()?;
        Ok(())
    }
}

fn rows_to_batch(schema: &SchemaRef, rows: &[FieldRow]) -> Result<RecordBatch> {
    let mut id = Int64Builder::with_capacity(rows.len());
    let mut floats: Vec<Float64Builder> = (0..FLOAT_COLS.len()).map(|_| Float64Builder::with_capacity(rows.len())).collect();
    let (mut cc, mut err, mut dpn) = (Float64Builder::new(), Float64Builder::new(), Float64Builder::new());
    let (mut its, mut rs, mut ld) = (Int32Builder::new(), Int32Builder::new(), Int32Builder::new());
    for r in rows {
        id.append_value(r.id);
        for (k, c) in FLOAT_COLS.iter().enumerate() {
            floats[k].append_value(super::tsv::value(r, c));
        }
        cc.append_value(r.cc);
        err.append_value(r.error);
        its.append_value(r.iterations as i32);
        rs.append_value(r.return_status as i32);
        dpn.append_value(r.delta_phi_norm);
        ld.append_value(r.label_dilate as i32);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(id.finish())];
    for mut f in floats {
        cols.push(Arc::new(f.finish()));
    }
    cols.push(Arc::new(cc.finish()));
    cols.push(Arc::new(err.finish()));
    cols.push(Arc::new(its.finish()));
    cols.push(Arc::new(rs.finish()));
    cols.push(Arc::new(dpn.finish()));
    cols.push(Arc::new(ld.finish()));
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Writes a whole field.
pub fn write_field(path: &Path, field: &PhiField, meta: &FieldMeta) -> Result<()> {
    let mut w = ParquetWriter::create(path, field.layout, &field.kind, meta)?;
    for i in 0..field.len() {
        w.write_row(field.row(i))?;
    }
    w.finish()
}

/// Writes a table of named f64 columns (an integer id column first) with the run's
/// metadata: the form of tables that are not Φ fields (strain components).
pub fn write_columns(path: &Path, id_name: &str, columns: &[(String, Vec<f64>)], meta: &FieldMeta) -> Result<()> {
    let n = columns.first().map(|c| c.1.len()).unwrap_or(0);
    let mut fields = vec![Field::new(id_name, DataType::Int64, false)];
    fields.extend(columns.iter().map(|(name, _)| Field::new(name, DataType::Float64, false)));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let pending = PendingOutput::new(path, true)?;
    let file = File::create(pending.path()).with_context(|| format!("{}: cannot create", path.display()))?;
    let kvs = vec![
        kv("tool", meta.tool.clone()),
        kv("version", env!("CARGO_PKG_VERSION").to_string()),
        kv("command_line", meta.command_line.clone()),
        kv("parameters", meta.parameters.to_string()),
    ];
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_key_value_metadata(Some(kvs))
        .build();
    let mut w = ArrowWriter::try_new(ChecksumFile::new(file), schema.clone(), Some(props)).map_err(|e| anyhow!("{}: cannot start Parquet file ({e})", path.display()))?;
    for start in (0..n.max(1)).step_by(ROW_GROUP) {
        let end = (start + ROW_GROUP).min(n);
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(start as i64..end as i64))];
        for (_, v) in columns {
            cols.push(Arc::new(Float64Array::from(v[start..end].to_vec())));
        }
        w.write(&RecordBatch::try_new(schema.clone(), cols)?).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    close_with_checksum(w, path)?;
    pending.commit()?;
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
        Ok(RowReader { path: path.to_path_buf(), layout, kind, batches, rows: Vec::new().into_iter() })
    }

    /// The next row, or None at the end.
    pub fn next_row(&mut self) -> Result<Option<FieldRow>> {
        loop {
            if let Some(r) = self.rows.next() {
                return Ok(Some(r));
            }
            let Some(batch) = self.batches.next() else { return Ok(None) };
            let b = batch.map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
            self.rows = batch_rows(&b, self.layout, &self.path)?.into_iter();
        }
    }
}

fn batch_rows(b: &RecordBatch, layout: Layout, path: &Path) -> Result<Vec<FieldRow>> {
    let idname = if layout.is_labels() { "Label" } else { "NodeNumber" };
    let ids = b
        .column_by_name(idname)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        .ok_or_else(|| anyhow!("{}: missing column '{idname}'", path.display()))?;
    let fl: Vec<&Float64Array> = FLOAT_COLS.iter().map(|c| f64_col(b, c, path)).collect::<Result<_>>()?;
    let cc = f64_col(b, "pixelSearchCC", path)?;
    let err = f64_col(b, "error", path)?;
    let dpn = f64_col(b, "deltaPhiNorm", path)?;
    let its = i32_col(b, "iterations", path)?;
    let rs = i32_col(b, "returnStatus", path)?;
    let ld = i32_col(b, "LabelDilate", path)?;
    Ok((0..b.num_rows())
        .map(|i| {
            let v = |k: usize| fl[k].value(i);
            let f = nalgebra::Matrix3::new(v(3), v(4), v(5), v(7), v(8), v(9), v(11), v(12), v(13));
            FieldRow {
                id: ids.value(i),
                position: Vector3::new(v(0), v(1), v(2)),
                phi: phi::from_f_t(&f, &Vector3::new(v(6), v(10), v(14))),
                cc: cc.value(i),
                error: err.value(i),
                iterations: its.value(i) as f64,
                return_status: rs.value(i) as f64,
                delta_phi_norm: dpn.value(i),
                label_dilate: ld.value(i) as f64,
            }
        })
        .collect())
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
                return_status: 2.0,
                delta_phi_norm: 0.0,
                label_dilate: 0.0,
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
