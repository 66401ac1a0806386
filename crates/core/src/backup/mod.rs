//! guard's portable backup format, the same for both backends, so a backup of one
//! restores into the other.
//!
//! A backup is one file (`*.guardbak`):
//!
//! ```text
//! "GUARDBAK" u32le(format version)
//! member*:  u16le(name length) name u64le(data length) data
//! u16le(0)                                     end of members
//! sha256(manifest member's data)               32 bytes
//! ```
//!
//! Each table is one member, `tables/<name>`: its rows, zstd-compressed, each value a
//! tag byte and its bytes (see [`Value`]). The last member, `manifest.json`, names
//! every member with its offset, length and SHA-256, so every byte of the file is
//! covered by a check: the members by their hashes, their headers by the offsets and
//! lengths in the manifest, and the manifest by the trailer.
//!
//! Values are kept as SQLite stores them (UUIDs as 16 bytes, times as RFC 3339 text,
//! booleans as 0/1); the PostgreSQL side converts on the way in and out.

mod archive;
mod retention;

use std::io::{self, Read, Write};

pub use archive::{ArchiveReader, ArchiveWriter, TableWriter, read_manifest};
pub use retention::{Retention, select_kept};
use serde::{Deserialize, Serialize};

/// File name extension of backups.
pub const EXTENSION: &str = "guardbak";
/// Version of the container and row encoding; a reader refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"GUARDBAK";
/// Tables holding key material: left out unless `--include-secrets`. Their secret
/// columns are already encrypted under the master key, and stay so in a backup.
pub const SECRET_TABLES: &[&str] = &["signing_keys"];

/// One stored value, in SQLite's storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

const TAG_NULL: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_REAL: u8 = 2;
/// Tags of values whose bytes follow a little-endian u32 length.
pub const TAG_TEXT: u8 = 3;
pub const TAG_BYTES: u8 = 4;

impl Value {
    /// Appends the encoding of this value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(TAG_NULL),
            Value::Int(n) => {
                out.push(TAG_INT);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Real(x) => {
                out.push(TAG_REAL);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Text(s) => encode_bytes(out, TAG_TEXT, s.as_bytes()),
            Value::Bytes(b) => encode_bytes(out, TAG_BYTES, b),
        }
    }

    /// Reads one value; `Ok(None)` at a clean end of the stream.
    pub fn decode(input: &mut impl Read) -> io::Result<Option<Value>> {
        let mut tag = [0u8; 1];
        if input.read(&mut tag)? == 0 {
            return Ok(None);
        }
        let mut word = [0u8; 8];
        let value = match tag[0] {
            TAG_NULL => Value::Null,
            TAG_INT => {
                input.read_exact(&mut word)?;
                Value::Int(i64::from_le_bytes(word))
            }
            TAG_REAL => {
                input.read_exact(&mut word)?;
                Value::Real(f64::from_le_bytes(word))
            }
            TAG_TEXT => {
                Value::Text(String::from_utf8(read_bytes(input)?).map_err(|_| invalid("a text value is not UTF-8"))?)
            }
            TAG_BYTES => Value::Bytes(read_bytes(input)?),
            other => return Err(invalid(&format!("unknown value tag {other}"))),
        };
        Ok(Some(value))
    }
}

fn encode_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Longest single value accepted when reading (a corrupt length must not allocate
/// gigabytes).
const MAX_VALUE_BYTES: usize = 256 << 20;

fn read_bytes(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_VALUE_BYTES {
        return Err(invalid("a value is longer than any guard stores"));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

pub(crate) fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// What a backup holds, written as its last member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub guard_version: String,
    /// The latest applied migration of the database the backup was taken from.
    pub schema_version: i64,
    /// `sqlite` or `postgres`.
    pub source_backend: String,
    pub includes_secrets: bool,
    /// Tables deliberately left out (secrets without `--include-secrets`).
    #[serde(default)]
    pub excluded_tables: Vec<String>,
    pub tables: Vec<TableEntry>,
}

/// One table of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableEntry {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: u64,
    /// The member holding the rows.
    pub member: String,
    pub offset: u64,
    pub length: u64,
    /// Lowercase hex SHA-256 of the member's bytes.
    pub sha256: String,
}

impl Manifest {
    /// Total rows in the backup.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn table(&self, name: &str) -> Option<&TableEntry> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Reads the rows of one table member, `columns` values each.
pub struct RowReader<R: Read> {
    input: R,
    columns: usize,
}

impl<R: Read> RowReader<R> {
    pub fn new(input: R, columns: usize) -> Self {
        RowReader { input, columns }
    }

    /// The next row, or `None` at the end; a row cut short is an error.
    pub fn next_row(&mut self, row: &mut Vec<Value>) -> io::Result<bool> {
        row.clear();
        for i in 0..self.columns {
            match Value::decode(&mut self.input)? {
                Some(v) => row.push(v),
                None if i == 0 => return Ok(false),
                None => return Err(invalid("the last row is cut short")),
            }
        }
        Ok(true)
    }
}

/// Writes `bytes` to `out` and hashes them on the way.
pub(crate) struct HashingWriter<W: Write> {
    pub(crate) inner: W,
    pub(crate) hasher: sha2::Sha256,
    pub(crate) written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
