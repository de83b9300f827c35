//! Ingest through its public API: the hostile corpus of `support/hostile.rs` (THREATS.md rows
//! 8–12 and more) is refused with the right code and leaves nothing behind; honest builds are
//! staged with the right paths, sizes and digests.

#![allow(clippy::unwrap_used)]

#[path = "support/hostile.rs"]
mod hostile;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use expect_test::expect;
use manifests::{Digest, RelPath};
use server::ingest::{IngestError, Ingested, Limits, ingest_zip};

use hostile::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "baleen-ingest-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An upload on disk and an empty staging directory beside it.
struct Upload {
    root: TempDir,
    zip: PathBuf,
    staging: PathBuf,
}

impl Upload {
    fn new(bytes: &[u8]) -> Upload {
        let root = TempDir::new();
        let zip = root.0.join("upload.zip");
        let staging = root.0.join("staging");
        fs::write(&zip, bytes).unwrap();
        fs::create_dir(&staging).unwrap();
        Upload { root, zip, staging }
    }

    fn ingest(&self, limits: &Limits) -> Result<Ingested, IngestError> {
        ingest_zip(&self.zip, limits, &self.staging)
    }

    /// Everything under the root, as sorted relative paths.
    fn tree(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                if meta.is_dir() {
                    walk(&path, root, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root.0, &self.root.0, &mut out);
        out.sort();
        out
    }

    /// After a refusal: the upload and an empty staging directory, nothing else anywhere.
    #[track_caller]
    fn assert_nothing_left(&self) {
        assert_eq!(self.tree(), ["staging", "upload.zip"]);
    }
}

/// Ingests `bytes` under `limits`, expects the refusal `code`, checks that nothing was left
/// behind, and returns the error.
#[track_caller]
fn refuse_with(bytes: &[u8], limits: &Limits, code: &str) -> IngestError {
    let upload = Upload::new(bytes);
    let error = match upload.ingest(limits) {
        Ok(ingested) => panic!("expected {code}, but ingested {:?}", ingested.files.keys()),
        Err(error) => error,
    };
    assert_eq!(error.code(), code, "wrong refusal: {error}");
    assert!(error.is_refusal(), "{error}");
    upload.assert_nothing_left();
    error
}

#[track_caller]
fn refuse(bytes: &[u8], code: &str) -> IngestError {
    refuse_with(bytes, &Limits::default(), code)
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

// ---- honest archives ----------------------------------------------------------------------

#[test]
fn a_normal_build_is_staged_with_paths_sizes_and_digests() {
    check_normal_build(&normal_build());
}

#[test]
fn a_streamed_build_with_data_descriptors_is_staged_too() {
    check_normal_build(&normal_build_streamed());
}

#[track_caller]
fn check_normal_build(bytes: &[u8]) {
    let upload = Upload::new(bytes);
    let ingested = upload.ingest(&Limits::default()).unwrap();

    let expected: Vec<(RelPath, Vec<u8>)> = normal_build_entries()
        .into_iter()
        .filter_map(|(name, data)| data.map(|data| (RelPath::parse(name).unwrap(), data)))
        .collect();
    let mut paths: Vec<&RelPath> = expected.iter().map(|(p, _)| p).collect();
    paths.sort();
    assert_eq!(ingested.files.keys().collect::<Vec<_>>(), paths);
    for (path, data) in &expected {
        let staged = &ingested.files[path];
        assert_eq!(staged.size, data.len() as u64, "{path}");
        assert_eq!(staged.sha256, sha256(data), "{path}");
        assert_eq!(
            staged.staged,
            upload.staging.join(staged.sha256.to_string())
        );
        assert_eq!(fs::read(&staged.staged).unwrap(), *data, "{path}");
    }
    let total: u64 = expected.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(ingested.total_bytes, total);

    // One content under two paths is staged once; nothing else is in the staging directory.
    let app = &ingested.files[&RelPath::parse("assets/js/app.3f2a1b.js").unwrap()];
    let copy = &ingested.files[&RelPath::parse("assets/js/copy-of-app.js").unwrap()];
    assert_eq!(app.staged, copy.staged);
    let mut staged_names: Vec<String> = fs::read_dir(&upload.staging)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    staged_names.sort();
    let mut distinct: Vec<String> = ingested
        .files
        .values()
        .map(|f| f.sha256.to_string())
        .collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(staged_names, distinct);
    assert_eq!(ingested.staged_bytes, total - app.size);
    // Every staged file hashes to its own name.
    for name in &staged_names {
        let bytes = fs::read(upload.staging.join(name)).unwrap();
        assert_eq!(sha256(&bytes).to_string(), *name);
    }
    // No directory was created, in staging or anywhere else.
    for path in upload.tree() {
        assert!(
            !fs::symlink_metadata(upload.root.0.join(&path))
                .unwrap()
                .is_dir()
                || path == "staging",
            "{path}"
        );
    }
}

#[test]
fn a_raw_archive_of_honest_entries_is_accepted() {
    // The raw writer makes honest archives too, so every refusal below is down to its one lie.
    let data = script(100);
    let bytes = Archive::of(vec![
        Raw::dir("a/"),
        Raw::stored("a/index.html", b"<p>hi</p>").unix_mode(S_IFREG | 0o644),
        Raw::deflated("a/app.js", &data),
        Raw::stored("a/empty", b""),
        Raw::stored("b/", b"").dos_attributes(0x10),
        Raw::stored("b/c.txt", b"windows").dos_attributes(0x21),
    ])
    .build();
    let upload = Upload::new(&bytes);
    let ingested = upload.ingest(&Limits::default()).unwrap();
    let files: Vec<String> = ingested
        .files
        .iter()
        .map(|(p, f)| format!("{p} {} {}", f.size, f.sha256.short()))
        .collect();
    expect![[r#"
        [
            "a/app.js 4760 ee8fad4a6cb0",
            "a/empty 0 e3b0c44298fc",
            "a/index.html 9 0a4735281db7",
            "b/c.txt 7 340d60039281",
        ]
    "#]]
    .assert_debug_eq(&files);
}

#[test]
fn a_nested_zip_is_one_opaque_file() {
    // 42.zip-style nesting needs the server to open inner archives; it never does.
    let (outer, inner) = nested();
    let upload = Upload::new(&outer);
    let ingested = upload.ingest(&Limits::default()).unwrap();
    let file = &ingested.files[&RelPath::parse("inner.zip").unwrap()];
    assert_eq!(fs::read(&file.staged).unwrap(), inner);
}

#[test]
fn small_text_compressing_past_the_ratio_is_exempt() {
    // 60 KiB of one repeated byte compresses about 160:1 here; with a 10:1 ratio it still
    // passes, being under the exemption size.
    let limits = Limits {
        max_ratio: 10,
        ..Limits::default()
    };
    let upload = Upload::new(&ratio_bomb(60 * 1024));
    assert!(upload.ingest(&limits).is_ok());
}

#[test]
fn limits_exactly_met_are_accepted() {
    let limits = Limits {
        max_entries: 4,
        max_file_bytes: 1000,
        max_total_bytes: 4000,
        max_ratio: 1000,
    };
    let upload = Upload::new(&files_of(4, 1000));
    let ingested = upload.ingest(&limits).unwrap();
    assert_eq!(ingested.total_bytes, 4000);
}

#[test]
fn the_staging_directory_must_be_empty_and_is_left_alone() {
    let upload = Upload::new(&normal_build());
    fs::write(upload.staging.join("someone-elses"), b"keep me").unwrap();
    let error = upload.ingest(&Limits::default()).unwrap_err();
    assert_eq!(error.code(), "staging_not_empty");
    assert!(!error.is_refusal());
    assert_eq!(
        fs::read(upload.staging.join("someone-elses")).unwrap(),
        b"keep me"
    );
}

#[test]
fn a_missing_upload_is_an_io_error() {
    let dir = TempDir::new();
    let error = ingest_zip(&dir.0.join("nope.zip"), &Limits::default(), &dir.0).unwrap_err();
    assert_eq!(error.code(), "io");
    assert!(!error.is_refusal());
}

// ---- THREATS row 8: zip-slip --------------------------------------------------------------

#[test]
fn zip_slip_and_other_unsafe_names_are_refused() {
    for name in UNSAFE_NAMES {
        refuse(&named(name.as_bytes()), "unsafe_path");
        // The same name as a directory entry is refused too.
        let dir = format!("{name}/");
        let bytes = Archive::of(vec![Raw::dir(&dir), Raw::stored("ok.txt", b"1")]).build();
        refuse(&bytes, "unsafe_path");
    }
}

#[test]
fn names_too_long_or_too_deep_are_refused() {
    refuse(&named("a".repeat(256).as_bytes()), "unsafe_path");
    refuse(&named("a/".repeat(40).as_bytes()), "unsafe_path");
    refuse(
        &named(format!("{}x", "a/".repeat(32)).as_bytes()),
        "unsafe_path",
    );
}

#[test]
fn a_unicode_path_extra_field_cannot_smuggle_a_traversal() {
    refuse(&unicode_path_traversal(), "unsafe_path");
}

// ---- THREATS row 9: symlinks and other non-regular entries ----------------------------------

#[test]
fn symlinks_are_refused() {
    refuse(&symlink_then_file(), "symlink");
    refuse(&chained_symlinks(), "symlink");
    refuse(&dir_named_like_link(), "symlink");
    refuse(&symlink_by_writer(), "symlink");
}

#[test]
fn devices_pipes_and_sockets_are_refused() {
    for mode in [S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK] {
        refuse(&special(mode), "special_file");
    }
    refuse(&file_with_dir_mode(), "special_file");
    // A file name with the MS-DOS directory attribute is as ambiguous.
    let dos_dir = Archive::of(vec![Raw::stored("x", b"").dos_attributes(0x10)]).build();
    refuse(&dos_dir, "special_file");
}

#[test]
fn a_directory_entry_with_data_is_refused() {
    refuse(&dir_with_data(), "directory_with_data");
}

// ---- THREATS row 10: bombs and lying sizes --------------------------------------------------

#[test]
fn overlapping_entries_are_refused() {
    refuse(&overlapping(2), "overlapping_entries");
    refuse(&overlapping(100), "overlapping_entries");
}

#[test]
fn an_entry_inflating_past_its_declared_size_is_cut_off() {
    // Declares 1 KiB, inflates to 256 MiB: refused after reading 1 KiB + 1 byte.
    let bytes = lying_deflate(1024, 256 << 20);
    assert!(bytes.len() < 2 << 20);
    let error = refuse(&bytes, "size_mismatch");
    expect![[r#"entry "app.js" declares 1024 bytes but its data holds more"#]]
        .assert_eq(&error.to_string());
    // Declaring nothing at all does not help.
    refuse(&lying_deflate(0, 1 << 20), "size_mismatch");
}

#[test]
fn an_entry_holding_less_than_it_declares_is_refused() {
    refuse(&deflate_short_of_declared(), "size_mismatch");
    refuse(&stored_sizes_disagree(), "size_mismatch");
}

#[test]
fn a_stored_entry_declaring_less_than_it_holds_is_refused() {
    // The reader would take only the declared bytes; the rest belong to no entry.
    let error = refuse(&stored_declares_less(), "unreferenced_data");
    expect!["5 bytes at offset 40 belong to no entry"].assert_eq(&error.to_string());
}

#[test]
fn zip64_sizes_of_2_pow_63_are_refused_before_reading() {
    let error = refuse(&zip64_huge(), "file_too_large");
    expect![[r#"entry "huge.bin" declares 9223372036854775808 bytes, more than the limit of 67108864 per file"#]]
        .assert_eq(&error.to_string());
    refuse(&zip64_huge_compressed(), "file_too_large");
}

#[test]
fn high_ratio_entries_are_zip_bombs() {
    let limits = Limits {
        max_ratio: 100,
        ..Limits::default()
    };
    let error = refuse_with(&ratio_bomb(4 << 20), &limits, "zip_bomb");
    assert!(error.to_string().contains("zip bomb"), "{error}");
}

#[test]
fn the_default_ratio_catches_a_near_maximal_deflate_bomb() {
    // zlib's best on zeros is about 1030:1; the default limit is 1000:1.
    let zeros = vec![0u8; 8 << 20];
    let compressed = deflate(&zeros);
    let ratio = zeros.len() as u64 / compressed.len() as u64;
    assert!(ratio > 1000, "zlib reached only {ratio}:1");
    let bytes = Archive::of(vec![Raw::deflated_raw(
        "zeros.bin",
        compressed,
        zeros.len() as u64,
        crc32(&zeros),
    )])
    .build();
    refuse(&bytes, "zip_bomb");
}

#[test]
fn files_over_the_size_limits_are_refused() {
    let limits = Limits {
        max_file_bytes: 999,
        ..Limits::default()
    };
    refuse_with(&files_of(1, 1000), &limits, "file_too_large");
    let limits = Limits {
        max_total_bytes: 3999,
        ..Limits::default()
    };
    refuse_with(&files_of(4, 1000), &limits, "total_too_large");
}

// ---- THREATS row 11: counts, duplicates, collisions, encodings ----------------------------

#[test]
fn too_many_entries_are_refused() {
    let limits = Limits {
        max_entries: 50,
        ..Limits::default()
    };
    refuse_with(&many_entries(51), &limits, "too_many_entries");
    // Directory entries count too.
    let mut entries: Vec<Raw> = (0..50).map(|i| Raw::dir(&format!("d{i}/"))).collect();
    entries.push(Raw::stored("index.html", b"hi"));
    refuse_with(&Archive::of(entries).build(), &limits, "too_many_entries");
    // And a central directory hiding headers beyond its count.
    let hidden = Archive {
        end_count: Some(10),
        ..Archive::of(
            (0..60)
                .map(|i| Raw::stored(&format!("f{i}"), b""))
                .collect(),
        )
    }
    .build();
    refuse_with(&hidden, &limits, "too_many_entries");
}

#[test]
fn an_end_record_announcing_too_many_entries_is_refused_before_they_are_read() {
    let limits = Limits {
        max_entries: 50,
        ..Limits::default()
    };
    // The classic end record's count, and the ZIP64 one's, are read from the end of the file.
    let error = refuse_with(&many_entries(51), &limits, "too_many_entries");
    expect![[r#"archive declares 51 entries in its end record, more than the limit of 50; refused before reading them"#]]
        .assert_eq(&error.to_string());
    let billions = Archive {
        zip64_end_count: Some(5_000_000_000),
        ..Archive::of(vec![Raw::stored("index.html", b"hi")])
    };
    let error = refuse_with(&billions.build(), &limits, "too_many_entries");
    assert!(
        error.to_string().contains("declares 5000000000 entries"),
        "{error}"
    );
    // A comment after the end record does not hide it.
    let commented = Archive {
        comment: b"built by CI".to_vec(),
        ..Archive::of(
            (0..51)
                .map(|i| Raw::stored(&format!("f{i}"), b""))
                .collect(),
        )
    };
    let error = refuse_with(&commented.build(), &limits, "too_many_entries");
    assert!(error.to_string().contains("declares 51"), "{error}");
    // A ZIP64 end record within the limit is read by the zip reader as before.
    let honest = Archive {
        zip64_end_count: Some(1),
        ..Archive::of(vec![Raw::stored("index.html", b"hi")])
    };
    Upload::new(&honest.build()).ingest(&limits).unwrap();
}

#[test]
fn duplicate_names_are_refused() {
    let error = refuse(&duplicate_index(), "duplicate_entry");
    expect![[r#"entry "index.html" appears more than once"#]].assert_eq(&error.to_string());
    refuse(&duplicate_dir(), "duplicate_entry");
    refuse(&unicode_path_duplicate(), "inconsistent_archive");
}

#[test]
fn names_that_collide_on_a_device_are_refused() {
    let error = refuse(&colliding("A.js", "a.js"), "path_collision");
    expect![[
        r#"paths "A.js" and "a.js" collide: equal after case folding and Unicode normalisation"#
    ]]
    .assert_eq(&error.to_string());
    refuse(&colliding("\u{e9}.txt", "\u{c9}.txt"), "path_collision");
    refuse(&colliding("a", "a/b"), "path_collision");
    refuse(&colliding("A/b", "a"), "path_collision");
    refuse(&file_and_dir_entry(), "path_collision");
    // NFD is refused on its own, before it can collide with NFC.
    refuse(&colliding("\u{e9}.txt", "e\u{301}.txt"), "unsafe_path");
}

#[test]
fn names_that_are_not_utf8_are_refused() {
    let error = refuse(&cp437_name(), "non_utf8_name");
    expect![[r#"entry 0 has a name that is not valid UTF-8: "caf�.txt""#]]
        .assert_eq(&error.to_string());
    refuse(&invalid_utf8_flagged(), "non_utf8_name");
}

#[test]
fn empty_archives_are_refused() {
    refuse(&empty(), "empty_archive");
    refuse(&only_dirs(), "empty_archive");
}

// ---- THREATS row 12: corrupt archives -------------------------------------------------------

#[test]
fn crc_mismatches_are_fatal() {
    let error = refuse(&crc_mismatch_stored(), "crc_mismatch");
    assert!(error.to_string().contains("CRC-32"), "{error}");
    refuse(&crc_mismatch_deflated(), "crc_mismatch");
}

#[test]
fn data_before_the_archive_is_refused() {
    let error = refuse(&prepended_garbage(b"MZ\x90\x00 a stub"), "prepended_data");
    expect!["11 bytes of other data come before the zip archive"].assert_eq(&error.to_string());
    refuse(&prepended_garbage(&noise(5000, 9)), "prepended_data");
    refuse(&polyglot(), "prepended_data");
}

#[test]
fn data_after_the_archive_is_refused() {
    refuse(&trailing_garbage(), "trailing_data");
}

#[test]
fn inconsistent_structures_are_refused() {
    refuse(&hidden_central_entry(), "inconsistent_archive");
    refuse(&local_name_mismatch(), "inconsistent_archive");
    refuse(&unlisted_local_header(), "unreferenced_data");
}

#[test]
fn encrypted_entries_are_refused() {
    refuse(&encrypted(), "encrypted");
}

#[test]
fn methods_other_than_stored_and_deflated_are_refused() {
    for m in [DEFLATE64, BZIP2, LZMA, 1, 6, 93, 99] {
        refuse(&method(m), "unsupported_method");
    }
}

#[test]
fn what_is_not_a_zip_is_refused() {
    refuse(b"", "not_a_zip");
    refuse(b"PK\x03\x04", "not_a_zip");
    refuse(b"<html>not a zip</html>", "not_a_zip");
    refuse(&noise(100_000, 5), "not_a_zip");
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let whole = normal_build();
    let mut cuts: Vec<usize> = (0..whole.len()).step_by(1024).collect();
    cuts.extend([1, 2, 4, 29, 30, 31, 100]);
    cuts.extend((1..=64).map(|back| whole.len() - back));
    for cut in cuts {
        let upload = Upload::new(&whole[..cut]);
        match upload.ingest(&Limits::default()) {
            Ok(_) => panic!("a zip cut at {cut} of {} was accepted", whole.len()),
            Err(error) => {
                assert!(error.is_refusal(), "cut at {cut}: {error}");
                upload.assert_nothing_left();
            }
        }
    }
}

#[test]
fn flipping_any_byte_never_panics_and_never_leaves_anything() {
    // A deterministic byte-flip pass over a small archive: whatever the flip hits, ingest either
    // accepts (a flip in a timestamp, say) or refuses, and a refusal leaves nothing behind.
    let whole = Archive::of(vec![
        Raw::dir("a/").unix_mode(S_IFDIR | 0o755),
        Raw::stored("a/index.html", b"<p>hello</p>").unix_mode(S_IFREG | 0o644),
        Raw::deflated("a/app.js", &script(20)),
    ])
    .build();
    let mut refused = 0;
    for at in 0..whole.len() {
        for flip in [0x01, 0x80, 0xFF] {
            let mut bytes = whole.clone();
            bytes[at] ^= flip;
            let upload = Upload::new(&bytes);
            match upload.ingest(&Limits::default()) {
                Ok(ingested) => {
                    for file in ingested.files.values() {
                        let staged = fs::read(&file.staged).unwrap();
                        assert_eq!(sha256(&staged), file.sha256);
                    }
                }
                Err(error) => {
                    assert!(error.is_refusal(), "flip {flip:#x} at {at}: {error}");
                    upload.assert_nothing_left();
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > whole.len(), "only {refused} flips were refused");
}

// ---- every refusal, with its message ------------------------------------------------------

#[test]
fn refusal_messages() {
    let limits = Limits {
        max_entries: 5,
        max_file_bytes: 1 << 20,
        max_total_bytes: 2 << 20,
        max_ratio: 100,
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zip-slip", named(b"../dest_evil/x")),
        ("absolute", named(b"/etc/x")),
        ("drive", named(b"C:\\x")),
        ("symlink", symlink_then_file()),
        ("fifo", special(S_IFIFO)),
        ("dir with data", dir_with_data()),
        ("duplicate", duplicate_index()),
        ("case collision", colliding("A.js", "a.js")),
        ("file as dir", colliding("a", "a/b")),
        ("cp437", cp437_name()),
        ("nfd", named("e\u{301}.txt".as_bytes())),
        ("too many", many_entries(6)),
        ("overlap", overlapping(3)),
        ("lying deflate", lying_deflate(100, 1 << 20)),
        ("short deflate", deflate_short_of_declared()),
        ("zip64 2^63", zip64_huge()),
        ("ratio", ratio_bomb(512 << 10)),
        ("total", files_of(3, 1 << 20)),
        ("crc", crc_mismatch_stored()),
        ("encrypted", encrypted()),
        ("bzip2", method(BZIP2)),
        ("prepended", prepended_garbage(b"garbage")),
        ("polyglot", polyglot()),
        ("trailing", trailing_garbage()),
        ("hidden entry", hidden_central_entry()),
        ("local name", local_name_mismatch()),
        ("unlisted", unlisted_local_header()),
        ("upath duplicate", unicode_path_duplicate()),
        ("empty", empty()),
        ("not a zip", b"hello".to_vec()),
    ];
    let mut report = String::new();
    for (case, bytes) in cases {
        let upload = Upload::new(&bytes);
        let error = upload.ingest(&limits).unwrap_err();
        upload.assert_nothing_left();
        report.push_str(&format!("{case}: {}: {error}\n", error.code()));
    }
    expect![[r#"
        zip-slip: unsafe_path: entry "../dest_evil/x" has an unsafe path: invalid path "../dest_evil/x": '..' segment is not allowed
        absolute: unsafe_path: entry "/etc/x" has an unsafe path: invalid path "/etc/x": absolute path (leading '/')
        drive: unsafe_path: entry "C:\\x" has an unsafe path: invalid path "C:\\x": backslash is not allowed
        symlink: symlink: entry "link" is a symbolic link
        fifo: special_file: entry "dev" is not a regular file or directory (unix mode 0o10644)
        dir with data: directory_with_data: directory entry "d/" declares 6 bytes of data
        duplicate: duplicate_entry: entry "index.html" appears more than once
        case collision: path_collision: paths "A.js" and "a.js" collide: equal after case folding and Unicode normalisation
        file as dir: path_collision: paths "a" and "a/b" collide: a file is also needed as a directory
        cp437: non_utf8_name: entry 0 has a name that is not valid UTF-8: "caf�.txt"
        nfd: unsafe_path: entry "e\u{301}.txt" has an unsafe path: invalid path "e\u{301}.txt": not in Unicode normalisation form C
        too many: too_many_entries: archive declares 6 entries in its end record, more than the limit of 5; refused before reading them
        overlap: overlapping_entries: entries overlap in the archive (an overlapping-entry zip bomb)
        lying deflate: size_mismatch: entry "app.js" declares 100 bytes but its data holds more
        short deflate: size_mismatch: entry "app.js" declares 1448 bytes but holds only 448
        zip64 2^63: file_too_large: entry "huge.bin" declares 9223372036854775808 bytes, more than the limit of 1048576 per file
        ratio: zip_bomb: entry "zeros.bin" expands 3336 bytes to 524288 bytes, more than 100:1 (a zip bomb)
        total: total_too_large: entries hold more than 2097152 bytes in all (at least 3145728)
        crc: crc_mismatch: entry "index.html" fails its CRC-32 check (header says 9b18e44f, data has 9b18e44e)
        encrypted: encrypted: entry "secret.txt" is encrypted
        bzip2: unsupported_method: entry "data.bin" uses compression method Bzip2; only stored and deflated are accepted
        prepended: too_many_entries: archive declares 10 entries in its end record, more than the limit of 5; refused before reading them
        polyglot: prepended_data: 39 bytes of other data come before the zip archive
        trailing: trailing_data: 19 bytes of other data come after the end of the zip archive
        hidden entry: inconsistent_archive: inconsistent zip archive: the central directory holds 2 headers but the end record counts 1
        local name: inconsistent_archive: inconsistent zip archive: invalid Zip archive: header inconsistency detected: Local file header filename mismatch (does not match central directory)
        unlisted: unreferenced_data: 43 bytes at offset 42 belong to no entry
        upath duplicate: inconsistent_archive: inconsistent zip archive: two entries share a name once their Unicode Path extra fields are applied
        empty: empty_archive: archive holds no file
        not a zip: not_a_zip: not a readable zip archive: invalid Zip archive: Could not find EOCD
    "#]].assert_eq(&report);
}

// ---- a real web app -------------------------------------------------------------------------

/// The unpacked npm package of swagger-ui-dist, if `scripts/fetch-webapps.sh` has cached it.
fn swagger_ui_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("BALEEN_WEBAPPS_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("baleen/webapps"))
        })?;
    let dir = cache.join("swagger-ui-dist@5.34.0/package");
    dir.is_dir().then_some(dir)
}

#[test]
fn a_real_web_app_zipped_by_info_zip_is_ingested() {
    let Some(dir) = swagger_ui_dir() else {
        eprintln!(
            "skipped: swagger-ui-dist@5.34.0 is not cached (run scripts/fetch-webapps.sh swagger-ui-dist)"
        );
        return;
    };
    let root = TempDir::new();
    let zip = root.0.join("swagger.zip");
    let status = std::process::Command::new("zip")
        .arg("-r")
        .arg("-q")
        .arg(&zip)
        .arg(".")
        .current_dir(&dir)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("zip failed: {status}"),
        Err(e) => {
            eprintln!("skipped: cannot run `zip` ({e}); apt-get install zip");
            return;
        }
    }
    let staging = root.0.join("staging");
    fs::create_dir(&staging).unwrap();
    let ingested = ingest_zip(&zip, &Limits::default(), &staging).unwrap();

    // Every regular file of the package is there with its bytes.
    let mut on_disk = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                on_disk.push(path);
            }
        }
    }
    assert_eq!(ingested.files.len(), on_disk.len());
    for path in on_disk {
        let rel = path.strip_prefix(&dir).unwrap().to_str().unwrap();
        let staged = &ingested.files[&RelPath::parse(rel).unwrap()];
        let bytes = fs::read(&path).unwrap();
        assert_eq!(staged.size, bytes.len() as u64, "{rel}");
        assert_eq!(staged.sha256, sha256(&bytes), "{rel}");
        assert_eq!(fs::read(&staged.staged).unwrap(), bytes, "{rel}");
    }
    assert!(
        ingested
            .files
            .contains_key(&RelPath::parse("index.html").unwrap())
    );
}
