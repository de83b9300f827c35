#![allow(clippy::unwrap_used)]

use std::ffi::CString;
use std::ptr;

use super::*;

fn last_error() -> String {
    // SAFETY: NULL asks only the length; then a buffer of that length plus the NUL.
    let len = unsafe { baleen_last_error(ptr::null_mut(), 0) };
    let mut buf = vec![0u8; len + 1];
    // SAFETY: `buf` has `len + 1` writable bytes.
    let full = unsafe { baleen_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(full, len);
    buf.truncate(len);
    String::from_utf8(buf).unwrap()
}

#[test]
fn the_header_declares_exactly_the_exported_functions() {
    let header = include_str!("../../../include/baleen.h");
    let source = include_str!("../c.rs");
    let exported: Vec<&str> = source
        .split("pub unsafe extern \"C\" fn ")
        .skip(1)
        .map(|rest| rest.split('(').next().unwrap())
        .collect();
    assert_eq!(exported.len(), 17, "{exported:?}");
    // Every `baleen_name(` outside comments is a declaration.
    let declared: Vec<&str> = header
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('*') && !l.starts_with("/*"))
        .flat_map(|l| l.match_indices("baleen_").map(move |(i, _)| &l[i..]))
        .filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            rest[end..].starts_with('(').then(|| &rest[..end])
        })
        .collect();
    assert_eq!(declared, exported, "baleen.h and c.rs differ");
    for (code, value) in [
        ("BALEEN_OK = 0", BALEEN_OK),
        ("BALEEN_NULL_ARGUMENT = 1", BALEEN_NULL_ARGUMENT),
        ("BALEEN_INVALID_ARGUMENT = 2", BALEEN_INVALID_ARGUMENT),
        ("BALEEN_NETWORK = 3", BALEEN_NETWORK),
        ("BALEEN_VERIFICATION = 4", BALEEN_VERIFICATION),
        ("BALEEN_STORAGE = 5", BALEEN_STORAGE),
        ("BALEEN_OTHER = 6", BALEEN_OTHER),
        ("BALEEN_PANIC = 7", BALEEN_PANIC),
        ("BALEEN_NOT_FOUND = 8", BALEEN_NOT_FOUND),
    ] {
        assert!(header.contains(code), "{code}");
        let n: u32 = code.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value as u32, n);
    }
}

#[test]
fn null_and_bad_arguments_are_refused_with_a_message() {
    let mut client = ptr::null_mut();
    // SAFETY: NULL is what is being tested; `client` is writable.
    let code = unsafe { baleen_client_new(ptr::null(), &raw mut client) };
    assert_eq!(code, BALEEN_NULL_ARGUMENT);
    assert_eq!(last_error(), "config_json is NULL");
    assert!(client.is_null());

    let json = CString::new(r#"{"dir": "/nowhere"}"#).unwrap();
    // SAFETY: a valid string and a writable pointer.
    let code = unsafe { baleen_client_new(json.as_ptr(), &raw mut client) };
    assert_eq!(code, BALEEN_INVALID_ARGUMENT);
    assert!(last_error().contains("missing field"), "{}", last_error());

    let url = CString::new("https://m.example.com/").unwrap();
    let mut out = ptr::null_mut();
    // SAFETY: a NULL client is what is being tested.
    let code = unsafe { baleen_client_resolve(ptr::null(), url.as_ptr(), &raw mut out) };
    assert_eq!(code, BALEEN_NULL_ARGUMENT);
    assert_eq!(last_error(), "client is NULL");

    // SAFETY: NULL objects are ignored by the free functions and the getters.
    unsafe {
        baleen_client_free(ptr::null_mut());
        baleen_resolved_free(ptr::null_mut());
        assert!(baleen_resolved_path(ptr::null()).is_null());
        assert_eq!(baleen_resolved_size(ptr::null()), 0);
    }

    // A message longer than the buffer is cut and NUL-terminated.
    let mut small = [1 as c_char; 5];
    // SAFETY: `small` has 5 writable bytes.
    let full = unsafe { baleen_last_error(small.as_mut_ptr(), small.len()) };
    assert_eq!(full, "client is NULL".len());
    assert_eq!(small[4], 0);
}

#[test]
fn a_panic_stops_at_the_boundary() {
    let code = guard(|| panic!("boom"));
    assert_eq!(code, BALEEN_PANIC);
    assert_eq!(last_error(), "panic inside the library");
}
