//! A corpus of hostile (and a few honest) zip archives, as bytes, for the ingest tests and any
//! other test that needs them (`#[path = "support/hostile.rs"] mod hostile;`).
//!
//! Honest archives come from the `zip` crate's writer. Hostile ones come from [`Archive`], a small
//! raw writer of local headers, central directory and end record, where every field can lie:
//! repeated names, sizes that disagree with the data, symlink and device modes, entries that share
//! bytes, non-UTF-8 names, wrong CRCs, data before or after the archive, the encryption flag,
//! exotic methods and ZIP64 sizes. Nothing here touches the file system.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Compression methods, as numbered in the zip format.
pub const STORED: u16 = 0;
/// Deflate.
pub const DEFLATED: u16 = 8;
/// Deflate64, which the server does not accept.
pub const DEFLATE64: u16 = 9;
/// Bzip2, which the server does not accept.
pub const BZIP2: u16 = 12;
/// LZMA, which the server does not accept.
pub const LZMA: u16 = 14;

/// General-purpose flag bits.
pub const FLAG_ENCRYPTED: u16 = 1;
/// The name (and comment) are UTF-8.
pub const FLAG_UTF8: u16 = 1 << 11;

/// Unix file-type bits, as they go in the high half of the external attributes.
pub const S_IFREG: u32 = 0o100_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Named pipe.
pub const S_IFIFO: u32 = 0o010_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Block device.
pub const S_IFBLK: u32 = 0o060_000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140_000;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// 1980-01-01, the first day a DOS date can say.
const DOS_DATE: u16 = (1 << 5) | 1;

/// One entry of a raw archive. Every field is written as given, so each can lie.
#[derive(Clone, Debug)]
pub struct Raw {
    /// The name in the central directory.
    pub name: Vec<u8>,
    /// The name in the local header, when it differs.
    pub local_name: Option<Vec<u8>>,
    /// The bytes stored in the archive (compressed, for a deflated entry).
    pub data: Vec<u8>,
    /// Compression method.
    pub method: u16,
    /// General-purpose flags.
    pub flags: u16,
    /// The CRC-32 the headers declare.
    pub crc32: u32,
    /// The compressed size the headers declare (ZIP64 when it does not fit 32 bits).
    pub compressed_size: u64,
    /// The uncompressed size the headers declare (ZIP64 when it does not fit 32 bits).
    pub uncompressed_size: u64,
    /// "Version made by": the high byte says which system (3 = unix) the attributes are for.
    pub made_by: u16,
    /// External attributes: for unix, the mode in the high 16 bits.
    pub external_attributes: u32,
    /// Extra fields of both headers (besides a ZIP64 one the writer adds itself).
    pub extra: Vec<u8>,
    /// Reuse the local header and data of an earlier entry instead of writing its own: an
    /// overlapping entry.
    pub shares_data_of: Option<usize>,
}

impl Raw {
    /// A stored file with honest headers.
    pub fn stored(name: &str, data: &[u8]) -> Raw {
        Raw::stored_bytes(name.as_bytes(), data)
    }

    /// A stored file with a name given as raw bytes.
    pub fn stored_bytes(name: &[u8], data: &[u8]) -> Raw {
        Raw {
            name: name.to_vec(),
            local_name: None,
            data: data.to_vec(),
            method: STORED,
            flags: 0,
            crc32: crc32(data),
            compressed_size: data.len() as u64,
            uncompressed_size: data.len() as u64,
            made_by: 20,
            external_attributes: 0,
            extra: Vec::new(),
            shares_data_of: None,
        }
    }

    /// A deflated file with honest headers.
    pub fn deflated(name: &str, data: &[u8]) -> Raw {
        let compressed = deflate(data);
        Raw {
            method: DEFLATED,
            compressed_size: compressed.len() as u64,
            data: compressed,
            ..Raw::stored(name, data)
        }
    }

    /// A deflated file whose data is `compressed` as given, declaring `size` bytes uncompressed
    /// and a CRC of `crc32`.
    pub fn deflated_raw(name: &str, compressed: Vec<u8>, size: u64, crc32: u32) -> Raw {
        Raw {
            method: DEFLATED,
            compressed_size: compressed.len() as u64,
            uncompressed_size: size,
            crc32,
            data: compressed,
            ..Raw::stored(name, b"")
        }
    }

    /// A directory entry (`name` should end in `/`), made on unix with mode 0755.
    pub fn dir(name: &str) -> Raw {
        Raw::stored(name, b"").unix_mode(S_IFDIR | 0o755)
    }

    /// Marks the entry as made on unix with this mode (file type and permissions).
    pub fn unix_mode(mut self, mode: u32) -> Raw {
        self.made_by = (3 << 8) | 30;
        self.external_attributes = mode << 16;
        self
    }

    /// Marks the entry as made on MS-DOS (as Windows tools do) with these attributes (0x10 for a
    /// directory, 0x20 for "archive", 0x01 for read-only).
    pub fn dos_attributes(mut self, attributes: u8) -> Raw {
        self.made_by = 20;
        self.external_attributes = u32::from(attributes);
        self
    }

    /// A symbolic link to `target`, as `zip --symlinks` stores one.
    pub fn symlink(name: &str, target: &str) -> Raw {
        Raw::stored(name, target.as_bytes()).unix_mode(S_IFLNK | 0o777)
    }
}

/// A raw archive: entries, then the central directory and the end record, with optional bytes
/// before and after and a few ways to make the structures disagree.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    /// The entries, in order.
    pub entries: Vec<Raw>,
    /// Bytes before the first local header.
    pub prefix: Vec<u8>,
    /// Whether the offsets count the prefix (as `zip -A` leaves a self-extractor), so the archive
    /// still opens at offset 0 with data before it.
    pub offsets_include_prefix: bool,
    /// Extra local headers and data that no central-directory entry lists, written after the
    /// entries.
    pub unlisted: Vec<Raw>,
    /// Overrides the entry count of the end record.
    pub end_count: Option<u16>,
    /// Writes ZIP64 end records declaring this many entries, the classic one deferring to them.
    pub zip64_end_count: Option<u64>,
    /// The archive comment.
    pub comment: Vec<u8>,
    /// Bytes after the end record and its comment.
    pub suffix: Vec<u8>,
}

impl Archive {
    /// An archive of these entries and nothing else.
    pub fn of(entries: Vec<Raw>) -> Archive {
        Archive {
            entries,
            ..Archive::default()
        }
    }

    /// The archive's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.prefix.clone();
        let base = if self.offsets_include_prefix {
            0
        } else {
            self.prefix.len() as u64
        };
        let mut offsets = Vec::new();
        for entry in &self.entries {
            match entry.shares_data_of {
                Some(earlier) => offsets.push(offsets[earlier]),
                None => {
                    offsets.push(out.len() as u64 - base);
                    write_local(&mut out, entry);
                }
            }
        }
        for entry in &self.unlisted {
            write_local(&mut out, entry);
        }
        let directory_start = out.len() as u64 - base;
        for (entry, &offset) in self.entries.iter().zip(&offsets) {
            write_central(&mut out, entry, offset);
        }
        let directory_size = out.len() as u64 - base - directory_start;
        let mut count = self.end_count.unwrap_or(self.entries.len() as u16);
        if let Some(declared) = self.zip64_end_count {
            let zip64_end = out.len() as u64 - base;
            put32(&mut out, ZIP64_END);
            out.extend_from_slice(&44u64.to_le_bytes());
            put16(&mut out, 45);
            put16(&mut out, 45);
            put32(&mut out, 0);
            put32(&mut out, 0);
            out.extend_from_slice(&declared.to_le_bytes());
            out.extend_from_slice(&declared.to_le_bytes());
            out.extend_from_slice(&directory_size.to_le_bytes());
            out.extend_from_slice(&directory_start.to_le_bytes());
            put32(&mut out, ZIP64_LOCATOR);
            put32(&mut out, 0);
            out.extend_from_slice(&zip64_end.to_le_bytes());
            put32(&mut out, 1);
            count = 0xFFFF;
        }
        put32(&mut out, END);
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, count);
        put16(&mut out, count);
        put32(&mut out, directory_size as u32);
        put32(&mut out, directory_start as u32);
        put16(&mut out, self.comment.len() as u16);
        out.extend_from_slice(&self.comment);
        out.extend_from_slice(&self.suffix);
        out
    }
}

/// The ZIP64 extra field for the sizes that do not fit 32 bits (and the offset, in a central
/// header), in the order the format asks.
fn zip64_extra(entry: &Raw, offset: Option<u64>) -> Vec<u8> {
    let mut fields = Vec::new();
    let local = offset.is_none();
    let big_size = entry.uncompressed_size >= 0xFFFF_FFFF;
    let big_compressed = entry.compressed_size >= 0xFFFF_FFFF;
    if local && (big_size || big_compressed) {
        // A local ZIP64 field holds both sizes.
        fields.extend_from_slice(&entry.uncompressed_size.to_le_bytes());
        fields.extend_from_slice(&entry.compressed_size.to_le_bytes());
    } else if !local {
        if big_size {
            fields.extend_from_slice(&entry.uncompressed_size.to_le_bytes());
        }
        if big_compressed {
            fields.extend_from_slice(&entry.compressed_size.to_le_bytes());
        }
        if let Some(offset) = offset.filter(|&o| o >= 0xFFFF_FFFF) {
            fields.extend_from_slice(&offset.to_le_bytes());
        }
    }
    if fields.is_empty() {
        return fields;
    }
    let mut extra = Vec::new();
    put16(&mut extra, 0x0001);
    put16(&mut extra, fields.len() as u16);
    extra.extend_from_slice(&fields);
    extra
}

fn size32(size: u64) -> u32 {
    u32::try_from(size)
        .ok()
        .filter(|&s| s != 0xFFFF_FFFF)
        .unwrap_or(0xFFFF_FFFF)
}

fn write_local(out: &mut Vec<u8>, entry: &Raw) {
    let name = entry.local_name.as_ref().unwrap_or(&entry.name);
    let mut extra = zip64_extra(entry, None);
    extra.extend_from_slice(&entry.extra);
    put32(out, LOCAL_HEADER);
    put16(out, 20);
    put16(out, entry.flags);
    put16(out, entry.method);
    put16(out, 0);
    put16(out, DOS_DATE);
    put32(out, entry.crc32);
    put32(out, size32(entry.compressed_size));
    put32(out, size32(entry.uncompressed_size));
    put16(out, name.len() as u16);
    put16(out, extra.len() as u16);
    out.extend_from_slice(name);
    out.extend_from_slice(&extra);
    out.extend_from_slice(&entry.data);
}

fn write_central(out: &mut Vec<u8>, entry: &Raw, offset: u64) {
    let mut extra = zip64_extra(entry, Some(offset));
    extra.extend_from_slice(&entry.extra);
    put32(out, CENTRAL_HEADER);
    put16(out, entry.made_by);
    put16(out, 20);
    put16(out, entry.flags);
    put16(out, entry.method);
    put16(out, 0);
    put16(out, DOS_DATE);
    put32(out, entry.crc32);
    put32(out, size32(entry.compressed_size));
    put32(out, size32(entry.uncompressed_size));
    put16(out, entry.name.len() as u16);
    put16(out, extra.len() as u16);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put32(out, entry.external_attributes);
    put32(out, size32(offset));
    out.extend_from_slice(&entry.name);
    out.extend_from_slice(&extra);
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// CRC-32 of `data`, as zip headers carry it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    !data
        .iter()
        .fold(!0u32, |c, &b| table[usize::from((c as u8) ^ b)] ^ (c >> 8))
}

/// The raw deflate stream of `data`, as the `zip` crate's writer compresses it.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    writer.start_file("x", options).unwrap();
    writer.write_all(data).unwrap();
    let bytes = writer.finish().unwrap().into_inner();
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut raw = Vec::new();
    archive
        .by_index_raw(0)
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

/// A raw deflate stream that inflates to `len` zero bytes (`len` ≥ 1), written by hand with the
/// fixed Huffman code: one literal, then back-references of 258 bytes at distance 1, 13 bits
/// each, so about 160 times smaller than its output and quick to make at any size.
pub fn deflate_zeros(len: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// Header fields: least significant bit first.
        fn value(&mut self, value: u64, bits: u32) {
            self.acc |= value << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// Huffman codes: most significant bit first.
        fn code(&mut self, code: u64, bits: u32) {
            let mut reversed = 0;
            for i in 0..bits {
                reversed |= ((code >> i) & 1) << (bits - 1 - i);
            }
            self.value(reversed, bits);
        }
    }
    assert!(len >= 1);
    let mut bits = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    bits.value(1, 1); // the final block
    bits.value(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    let mut left = len - 1;
    while left >= 258 {
        bits.code(0xC5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    bits.value(0, 7); // pad to a byte
    bits.out
}

/// Reproducible filler bytes (a linear congruential generator), incompressible enough.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// Text that compresses well but not absurdly, like a bundle: `lines` numbered lines.
pub fn script(lines: usize) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!(
            "export function f{i}(x) {{ return x * {} + {}; }}\n",
            i % 97,
            i * 7 % 1013
        ));
    }
    text.into_bytes()
}

/// One file of [`normal_build`]: its path and its bytes (`None` for a directory entry).
pub type BuildEntry = (&'static str, Option<Vec<u8>>);

/// The entries of a normal web build, in the order [`normal_build`] writes them: nested
/// directories with explicit directory entries, stored and deflated files, one content under two
/// paths, an empty file, a non-ASCII name and a file larger than one read buffer.
pub fn normal_build_entries() -> Vec<BuildEntry> {
    let app = script(3000);
    vec![
        (
            "index.html",
            Some(b"<!doctype html><html><head><script src=\"assets/js/app.3f2a1b.js\"></script></head><body></body></html>\n".to_vec()),
        ),
        ("assets/", None),
        ("assets/js/", None),
        ("assets/js/app.3f2a1b.js", Some(app.clone())),
        ("assets/js/app.3f2a1b.js.map", Some(script(500))),
        ("assets/img/logo.png", Some(noise(5000, 1))),
        ("assets/js/copy-of-app.js", Some(app)),
        ("empty.txt", Some(Vec::new())),
        ("robots.txt", Some(b"User-agent: *\n".to_vec())),
        ("fonts/\u{fc}ber.woff2", Some(noise(3000, 2))),
    ]
}

/// [`normal_build_entries`] zipped by the `zip` crate's writer: `.png` and `.woff2` stored,
/// everything else deflated, unix permissions set.
pub fn normal_build() -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    write_normal_build(&mut writer);
    writer.finish().unwrap().into_inner()
}

/// [`normal_build`] as a streaming writer makes it, with no seeking back: every entry's sizes and
/// CRC follow its data in a data descriptor.
pub fn normal_build_streamed() -> Vec<u8> {
    let mut writer = ZipWriter::new_stream(Vec::new());
    write_normal_build(&mut writer);
    writer.finish().unwrap().into_inner()
}

fn write_normal_build<W: Write + std::io::Seek>(writer: &mut ZipWriter<W>) {
    for (name, data) in normal_build_entries() {
        match data {
            None => writer
                .add_directory(name, SimpleFileOptions::default())
                .unwrap(),
            Some(data) => {
                let method = if name.ends_with(".png") || name.ends_with(".woff2") {
                    CompressionMethod::Stored
                } else {
                    CompressionMethod::Deflated
                };
                let options = SimpleFileOptions::default()
                    .compression_method(method)
                    .unix_permissions(0o644);
                writer.start_file(name, options).unwrap();
                writer.write_all(&data).unwrap();
            }
        }
    }
}

/// A one-file archive whose only entry has this name.
pub fn named(name: &[u8]) -> Vec<u8> {
    Archive::of(vec![Raw::stored_bytes(name, b"pwned")]).build()
}

/// Zip-slip names (THREATS row 8) and other names the path rules refuse.
pub const UNSAFE_NAMES: &[&str] = &[
    "../../x",
    "a/../../x",
    "..\\x",
    "/etc/x",
    "C:\\x",
    "C:/x",
    "../dest_evil/x",
    "..",
    "a/..",
    "./x",
    "a/./b",
    "a//b",
    "\\\\server\\share\\x",
    "a\\b",
    "x\0.txt",
    "x\n.txt",
    "e\u{301}.txt",
];

/// A symlink to `/`, then a file under it (THREATS row 9).
pub fn symlink_then_file() -> Vec<u8> {
    Archive::of(vec![
        Raw::symlink("link", "/"),
        Raw::stored("link/etc/passwd", b"root::0:0::/:/bin/sh\n"),
    ])
    .build()
}

/// Chained links: `a` → `b`, `b` → `..`, then a file through them.
pub fn chained_symlinks() -> Vec<u8> {
    Archive::of(vec![
        Raw::symlink("a", "b"),
        Raw::symlink("b", ".."),
        Raw::stored("a/x", b"x"),
    ])
    .build()
}

/// A directory entry whose mode says symlink.
pub fn dir_named_like_link() -> Vec<u8> {
    Archive::of(vec![
        Raw::stored("link/", b"/").unix_mode(S_IFLNK | 0o777),
        Raw::stored("link/x", b"x"),
    ])
    .build()
}

/// A symlink written by the `zip` crate's own writer.
pub fn symlink_by_writer() -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer
        .add_symlink("link", "/etc", SimpleFileOptions::default())
        .unwrap();
    writer
        .start_file("index.html", SimpleFileOptions::default())
        .unwrap();
    writer.write_all(b"hi").unwrap();
    writer.finish().unwrap().into_inner()
}

/// A file with one of the other non-regular unix types.
pub fn special(mode: u32) -> Vec<u8> {
    Archive::of(vec![Raw::stored("dev", b"").unix_mode(mode | 0o644)]).build()
}

/// Two entries named `index.html`, the second with other content (THREATS row 11).
pub fn duplicate_index() -> Vec<u8> {
    Archive::of(vec![
        Raw::stored("index.html", b"<p>first</p>"),
        Raw::stored("index.html", b"<script>evil()</script>"),
    ])
    .build()
}

/// The same directory entry twice.
pub fn duplicate_dir() -> Vec<u8> {
    Archive::of(vec![
        Raw::dir("assets/"),
        Raw::dir("assets/"),
        Raw::stored("assets/a.js", b"1"),
    ])
    .build()
}

/// Files whose names collide on a case-insensitive or normalising file system, or where one file
/// is needed as a directory.
pub fn colliding(a: &str, b: &str) -> Vec<u8> {
    Archive::of(vec![Raw::stored(a, b"1"), Raw::stored(b, b"2")]).build()
}

/// A file and a directory entry of the same name, in other case.
pub fn file_and_dir_entry() -> Vec<u8> {
    Archive::of(vec![Raw::stored("docs", b"1"), Raw::dir("Docs/")]).build()
}

/// `café.txt` with `é` as CP437 byte 0x82, as an old DOS tool would write it (THREATS row 11).
pub fn cp437_name() -> Vec<u8> {
    named(b"caf\x82.txt")
}

/// The same name bytes, with the UTF-8 flag set though they are not UTF-8.
pub fn invalid_utf8_flagged() -> Vec<u8> {
    let mut entry = Raw::stored_bytes(b"caf\xe9.txt", b"x");
    entry.flags |= FLAG_UTF8;
    Archive::of(vec![entry]).build()
}

/// Info-ZIP's Unicode Path extra field (0x7075) for an entry whose header name is `header_name`.
pub fn unicode_path_extra(header_name: &[u8], path: &str) -> Vec<u8> {
    let mut extra = Vec::new();
    put16(&mut extra, 0x7075);
    put16(&mut extra, (5 + path.len()) as u16);
    extra.push(1);
    extra.extend_from_slice(&crc32(header_name).to_le_bytes());
    extra.extend_from_slice(path.as_bytes());
    extra
}

/// A harmless header name whose Unicode Path extra field says `../../x`.
pub fn unicode_path_traversal() -> Vec<u8> {
    let mut entry = Raw::stored("x.txt", b"x");
    entry.extra = unicode_path_extra(b"x.txt", "../../x");
    Archive::of(vec![entry]).build()
}

/// Two distinct header names that a Unicode Path extra field makes one.
pub fn unicode_path_duplicate() -> Vec<u8> {
    let mut second = Raw::stored("b.txt", b"evil");
    second.extra = unicode_path_extra(b"b.txt", "a.txt");
    Archive::of(vec![Raw::stored("a.txt", b"good"), second]).build()
}

/// `garbage` and then a normal archive whose offsets do not count it (THREATS row 12).
pub fn prepended_garbage(garbage: &[u8]) -> Vec<u8> {
    [garbage, &normal_build()].concat()
}

/// A polyglot: an HTML page, then an archive whose offsets count the page, so it opens at
/// offset 0 and the page is data before the first entry.
pub fn polyglot() -> Vec<u8> {
    Archive {
        prefix: b"<html><script>alert(1)</script></html>\n".to_vec(),
        offsets_include_prefix: true,
        ..Archive::of(vec![Raw::stored("index.html", b"hi")])
    }
    .build()
}

/// A normal archive and then other bytes.
pub fn trailing_garbage() -> Vec<u8> {
    Archive {
        suffix: b"<html>hidden</html>".to_vec(),
        ..Archive::of(vec![Raw::stored("index.html", b"hi")])
    }
    .build()
}

/// A stored entry whose headers carry a wrong CRC-32 (THREATS row 12).
pub fn crc_mismatch_stored() -> Vec<u8> {
    let mut entry = Raw::stored("index.html", b"<p>tampered</p>");
    entry.crc32 ^= 1;
    Archive::of(vec![entry]).build()
}

/// A deflated entry whose headers carry a wrong CRC-32.
pub fn crc_mismatch_deflated() -> Vec<u8> {
    let mut entry = Raw::deflated("app.js", &script(200));
    entry.crc32 = 0xDEAD_BEEF;
    Archive::of(vec![entry]).build()
}

/// An entry with the encryption flag (traditional PKWARE encryption) set.
pub fn encrypted() -> Vec<u8> {
    let mut entry = Raw::stored("secret.txt", &noise(24, 3));
    entry.flags |= FLAG_ENCRYPTED;
    Archive::of(vec![entry]).build()
}

/// An entry compressed with `method`.
pub fn method(method: u16) -> Vec<u8> {
    let mut entry = Raw::stored("data.bin", &noise(100, 4));
    entry.method = method;
    entry.uncompressed_size = 200;
    Archive::of(vec![entry]).build()
}

/// The overlapping-entry bomb (THREATS row 10): `copies` central entries, each named
/// differently, all pointing at one local header and its data.
pub fn overlapping(copies: usize) -> Vec<u8> {
    let data = script(50);
    let first = Raw::stored("f0.js", &data);
    let mut entries = vec![first.clone()];
    for i in 1..copies {
        entries.push(Raw {
            name: format!("f{i}.js").into_bytes(),
            shares_data_of: Some(0),
            ..first.clone()
        });
    }
    Archive::of(entries).build()
}

/// A deflated entry that declares `declared` bytes but inflates to `actual` zero bytes (THREATS
/// row 10: a 1 KB entry that inflates to far more).
pub fn lying_deflate(declared: u64, actual: u64) -> Vec<u8> {
    Archive::of(vec![Raw::deflated_raw(
        "app.js",
        deflate_zeros(actual),
        declared,
        0,
    )])
    .build()
}

/// A deflated entry that declares more than its data holds.
pub fn deflate_short_of_declared() -> Vec<u8> {
    let data = script(10);
    let mut entry = Raw::deflated("app.js", &data);
    entry.uncompressed_size = data.len() as u64 + 1000;
    Archive::of(vec![entry]).build()
}

/// A stored entry whose compressed and uncompressed sizes disagree.
pub fn stored_sizes_disagree() -> Vec<u8> {
    let mut entry = Raw::stored("a.txt", b"0123456789");
    entry.uncompressed_size = 5;
    Archive::of(vec![entry]).build()
}

/// A stored entry whose headers say it holds fewer bytes than it does.
pub fn stored_declares_less() -> Vec<u8> {
    let mut entry = Raw::stored("a.txt", b"0123456789");
    entry.uncompressed_size = 5;
    entry.compressed_size = 5;
    entry.crc32 = crc32(b"01234");
    Archive::of(vec![entry]).build()
}

/// A ZIP64 entry declaring `2^63` bytes uncompressed (THREATS row 10).
pub fn zip64_huge() -> Vec<u8> {
    let mut entry = Raw::deflated("huge.bin", b"tiny");
    entry.uncompressed_size = 1 << 63;
    Archive::of(vec![entry]).build()
}

/// A ZIP64 entry declaring `2^63` bytes compressed and uncompressed.
pub fn zip64_huge_compressed() -> Vec<u8> {
    let mut entry = Raw::stored("huge.bin", b"tiny");
    entry.uncompressed_size = 1 << 63;
    entry.compressed_size = 1 << 63;
    Archive::of(vec![entry]).build()
}

/// A highly compressed entry with honest headers: `len` zero bytes, about 160:1.
pub fn ratio_bomb(len: u64) -> Vec<u8> {
    let zeros = vec![0u8; len as usize];
    Archive::of(vec![Raw::deflated_raw(
        "zeros.bin",
        deflate_zeros(len),
        len,
        crc32(&zeros),
    )])
    .build()
}

/// `count` empty files (THREATS row 11, scaled down: run it against a small `max_entries`).
pub fn many_entries(count: usize) -> Vec<u8> {
    Archive::of(
        (0..count)
            .map(|i| Raw::stored(&format!("f{i}.txt"), b""))
            .collect(),
    )
    .build()
}

/// `count` files of `size` bytes of noise each.
pub fn files_of(count: usize, size: usize) -> Vec<u8> {
    Archive::of(
        (0..count)
            .map(|i| Raw::stored(&format!("f{i}.bin"), &noise(size, i as u32)))
            .collect(),
    )
    .build()
}

/// An archive with no entry at all: only the end record.
pub fn empty() -> Vec<u8> {
    Archive::default().build()
}

/// An archive with directory entries only.
pub fn only_dirs() -> Vec<u8> {
    Archive::of(vec![Raw::dir("a/"), Raw::dir("a/b/")]).build()
}

/// A directory entry that carries data.
pub fn dir_with_data() -> Vec<u8> {
    Archive::of(vec![
        Raw::stored("d/", b"hidden").unix_mode(S_IFDIR | 0o755),
        Raw::stored("index.html", b"hi"),
    ])
    .build()
}

/// A file entry (no trailing `/`) whose mode says directory.
pub fn file_with_dir_mode() -> Vec<u8> {
    Archive::of(vec![Raw::stored("x", b"").unix_mode(S_IFDIR | 0o755)]).build()
}

/// The end record counts one entry but the central directory holds two: the second is hidden
/// from readers that trust the count.
pub fn hidden_central_entry() -> Vec<u8> {
    Archive {
        end_count: Some(1),
        ..Archive::of(vec![
            Raw::stored("index.html", b"hi"),
            Raw::stored("evil.js", b"evil()"),
        ])
    }
    .build()
}

/// The local header names another file than the central directory does, so streaming readers
/// and central-directory readers see different archives.
pub fn local_name_mismatch() -> Vec<u8> {
    let mut entry = Raw::stored("good.js", b"ok()");
    entry.local_name = Some(b"evil.js".to_vec());
    Archive::of(vec![entry]).build()
}

/// A local header and data that no central-directory entry lists.
pub fn unlisted_local_header() -> Vec<u8> {
    Archive {
        unlisted: vec![Raw::stored("evil.js", b"evil()")],
        ..Archive::of(vec![Raw::stored("index.html", b"hi")])
    }
    .build()
}

/// A zip inside a zip (the first layer of a 42.zip-style nested bomb): the inner archive is a
/// file like any other, never opened.
pub fn nested() -> (Vec<u8>, Vec<u8>) {
    let inner = ratio_bomb(1 << 20);
    let outer = Archive::of(vec![Raw::stored("inner.zip", &inner)]).build();
    (outer, inner)
}
