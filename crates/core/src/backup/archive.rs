//! Writing and reading the backup container (see the module documentation).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{FORMAT_VERSION, HashingWriter, MAGIC, Manifest, RowReader, TableEntry, hex, invalid};

const MANIFEST_MEMBER: &str = "manifest.json";
/// zstd level: the fastest; a backup of millions of rows is bound by compression.
const LEVEL: i32 = 1;

/// Writes a backup file. Nothing is valid until [`ArchiveWriter::finish`].
pub struct ArchiveWriter {
    out: BufWriter<File>,
    offset: u64,
    tables: Vec<TableEntry>,
}

impl ArchiveWriter {
    pub fn create(path: &Path) -> io::Result<ArchiveWriter> {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Backups hold password hashes: only the owner reads them.
        let file = File::options().write(true).create_new(true).mode(0o600).open(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        Ok(ArchiveWriter { out, offset: (MAGIC.len() + 4) as u64, tables: Vec::new() })
    }

    /// Starts the member of table `name`; write its rows, then call
    /// [`TableWriter::finish`].
    pub fn table(&mut self, name: &str, columns: Vec<String>) -> io::Result<TableWriter<'_>> {
        let member = format!("tables/{name}");
        let header_at = self.offset;
        self.write_member_header(&member, 0)?;
        let data_at = self.offset;
        let sink = HashingWriter { inner: &mut self.out, hasher: Sha256::new(), written: 0 };
        let mut encoder = zstd::Encoder::new(sink, LEVEL)?;
        // Compression on a worker thread of its own, beside the thread reading rows.
        encoder.multithread(1)?;
        Ok(TableWriter {
            encoder,
            entry: TableEntry {
                name: name.to_owned(),
                columns,
                rows: 0,
                member,
                offset: data_at,
                length: 0,
                sha256: String::new(),
            },
            header_at,
            tables: &mut self.tables,
            offset: &mut self.offset,
        })
    }

    fn write_member_header(&mut self, name: &str, length: u64) -> io::Result<()> {
        let name_len = u16::try_from(name.len()).map_err(|_| invalid("member name too long"))?;
        self.out.write_all(&name_len.to_le_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&length.to_le_bytes())?;
        self.offset += 2 + name.len() as u64 + 8;
        Ok(())
    }

    /// Writes the manifest (`manifest` with this writer's tables) and the trailer,
    /// and flushes the file to disk.
    pub fn finish(mut self, mut manifest: Manifest) -> io::Result<Manifest> {
        manifest.tables = std::mem::take(&mut self.tables);
        let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        self.write_member_header(MANIFEST_MEMBER, json.len() as u64)?;
        self.out.write_all(&json)?;
        self.out.write_all(&0u16.to_le_bytes())?;
        self.out.write_all(&Sha256::digest(&json))?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(manifest)
    }
}

/// Writes one table's rows into its member.
pub struct TableWriter<'a> {
    encoder: zstd::Encoder<'static, HashingWriter<&'a mut BufWriter<File>>>,
    entry: TableEntry,
    header_at: u64,
    tables: &'a mut Vec<TableEntry>,
    offset: &'a mut u64,
}

impl TableWriter<'_> {
    /// Appends `rows` rows already encoded with [`super::Value::encode`].
    pub fn write_rows(&mut self, encoded: &[u8], rows: u64) -> io::Result<()> {
        self.encoder.write_all(encoded)?;
        self.entry.rows += rows;
        Ok(())
    }

    pub fn finish(self) -> io::Result<()> {
        let TableWriter { encoder, mut entry, header_at, tables, offset } = self;
        let sink = encoder.finish()?;
        entry.length = sink.written;
        entry.sha256 = hex(&sink.hasher.finalize());
        let out = sink.inner;
        // The member's length is known only now: write it into its header.
        out.flush()?;
        let file = out.get_mut();
        let length_at = header_at + 2 + entry.member.len() as u64;
        file.seek(SeekFrom::Start(length_at))?;
        file.write_all(&entry.length.to_le_bytes())?;
        file.seek(SeekFrom::End(0))?;
        *offset = entry.offset + entry.length;
        tables.push(entry);
        Ok(())
    }
}

/// A member's place in the file, as its header says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    offset: u64,
    length: u64,
}

/// Reads and checks a backup file.
pub struct ArchiveReader {
    path: PathBuf,
    pub manifest: Manifest,
}

/// Reads only the manifest, checking the container's structure and the manifest's
/// own hash (not the tables: see [`ArchiveReader::verify_checksums`]).
pub fn read_manifest(path: &Path) -> io::Result<Manifest> {
    Ok(ArchiveReader::open(path)?.manifest)
}

impl ArchiveReader {
    pub fn open(path: &Path) -> io::Result<ArchiveReader> {
        let mut file = BufReader::new(File::open(path)?);
        let size = file.get_ref().metadata()?.len();
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic).map_err(|_| invalid("not a guard backup (too short)"))?;
        if &magic != MAGIC {
            return Err(invalid("not a guard backup (wrong magic bytes)"));
        }
        let mut word = [0u8; 4];
        file.read_exact(&mut word)?;
        let version = u32::from_le_bytes(word);
        if version != FORMAT_VERSION {
            return Err(invalid(&format!(
                "backup format version {version}; this guard reads version {FORMAT_VERSION}"
            )));
        }
        let mut offset = 12u64;
        let mut members = Vec::new();
        loop {
            let mut len = [0u8; 2];
            file.read_exact(&mut len).map_err(|_| invalid("the file ends inside a member header"))?;
            let name_len = u16::from_le_bytes(len) as u64;
            if name_len == 0 {
                offset += 2;
                break;
            }
            let mut name = vec![0u8; name_len as usize];
            file.read_exact(&mut name).map_err(|_| invalid("the file ends inside a member header"))?;
            let mut length = [0u8; 8];
            file.read_exact(&mut length).map_err(|_| invalid("the file ends inside a member header"))?;
            let length = u64::from_le_bytes(length);
            let data_at = offset + 2 + name_len + 8;
            if data_at.checked_add(length).is_none_or(|end| end > size) {
                return Err(invalid("a member is longer than the file"));
            }
            let name = String::from_utf8(name).map_err(|_| invalid("a member name is not UTF-8"))?;
            members.push(Member { name, offset: data_at, length });
            file.seek(SeekFrom::Start(data_at + length))?;
            offset = data_at + length;
        }
        let mut trailer = [0u8; 32];
        file.read_exact(&mut trailer).map_err(|_| invalid("the file ends before its trailer"))?;
        if offset + 32 != size {
            return Err(invalid("bytes after the trailer"));
        }
        let manifest_member = match members.last() {
            Some(m) if m.name == MANIFEST_MEMBER => m.clone(),
            _ => return Err(invalid("the last member is not the manifest")),
        };
        if manifest_member.length > 64 << 20 {
            return Err(invalid("the manifest is implausibly large"));
        }
        file.seek(SeekFrom::Start(manifest_member.offset))?;
        let mut json = vec![0u8; manifest_member.length as usize];
        file.read_exact(&mut json)?;
        if Sha256::digest(&json).as_slice() != trailer {
            return Err(invalid("the manifest does not match the trailer's checksum"));
        }
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| invalid(&format!("the manifest is not valid: {e}")))?;
        let listed: Vec<Member> = manifest
            .tables
            .iter()
            .map(|t| Member { name: t.member.clone(), offset: t.offset, length: t.length })
            .chain(std::iter::once(manifest_member))
            .collect();
        if listed != members {
            return Err(invalid("the members in the file are not those the manifest lists"));
        }
        Ok(ArchiveReader { path: path.to_owned(), manifest })
    }

    fn member(&self, entry: &TableEntry) -> io::Result<io::Take<BufReader<File>>> {
        let mut file = BufReader::with_capacity(1 << 20, File::open(&self.path)?);
        file.seek(SeekFrom::Start(entry.offset))?;
        Ok(file.take(entry.length))
    }

    /// Checks every table member against its SHA-256; the first mismatch is an error
    /// naming the table.
    pub fn verify_checksums(&self) -> io::Result<()> {
        for entry in &self.manifest.tables {
            let mut sink = HashingWriter { inner: io::sink(), hasher: Sha256::new(), written: 0 };
            io::copy(&mut self.member(entry)?, &mut sink)?;
            if hex(&sink.hasher.finalize()) != entry.sha256 {
                return Err(invalid(&format!("table {}: checksum mismatch", entry.name)));
            }
        }
        Ok(())
    }

    /// The rows of one table.
    pub fn rows(&self, entry: &TableEntry) -> io::Result<RowReader<impl Read + use<>>> {
        let decoder = zstd::Decoder::new(self.member(entry)?)?;
        Ok(RowReader::new(BufReader::with_capacity(1 << 16, decoder), entry.columns.len()))
    }

    /// Decodes every row of every table and checks the counts against the manifest;
    /// returns the rows read per table.
    pub fn verify_rows(&self, mut progress: impl FnMut(&TableEntry, u64)) -> io::Result<Vec<(String, u64)>> {
        let mut counts = Vec::new();
        let mut row = Vec::new();
        for entry in &self.manifest.tables {
            let mut reader = self.rows(entry)?;
            let mut n = 0u64;
            while reader
                .next_row(&mut row)
                .map_err(|e| invalid(&format!("table {}: row {}: {e}", entry.name, n + 1)))?
            {
                n += 1;
                if n.is_multiple_of(1_000_000) {
                    progress(entry, n);
                }
            }
            if n != entry.rows {
                return Err(invalid(&format!("table {}: {n} rows, the manifest says {}", entry.name, entry.rows)));
            }
            progress(entry, n);
            counts.push((entry.name.clone(), n));
        }
        Ok(counts)
    }
}
