//! The C ABI, for hosts that are neither Kotlin nor Swift (a C++ app, a game engine, a test
//! harness), declared in `include/baleen.h`.
//!
//! It follows rustls-ffi: a `baleen_` prefix, opaque structs, a `#[repr(u32)]` result code, a
//! panic boundary on every function, NULL-checked pointers, a `baleen_*_free` for each object
//! handed out, and a per-thread last-error message. Networking uses the built-in fetcher.
//!
//! This is the one module of the crate allowed `unsafe`: dereferencing the pointers a C caller
//! hands over. Every block says why it is sound, given the contract in the header.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use manifests::PackageId;

use super::{ClientConfig, DeviceConditions, UpdateReport};
use crate::error::BaleenError;
use crate::plan::Conditions;
use crate::{Client, Config};

/// What a call did. `BALEEN_OK` is 0; everything else names an error, whose message
/// `baleen_last_error` copies out.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum baleen_result {
    /// Success.
    BALEEN_OK = 0,
    /// A required pointer was NULL.
    BALEEN_NULL_ARGUMENT = 1,
    /// An argument was not valid (not UTF-8, bad JSON, a bad package name…).
    BALEEN_INVALID_ARGUMENT = 2,
    /// The network failed: retry later.
    BALEEN_NETWORK = 3,
    /// Something downloaded failed verification: report it.
    BALEEN_VERIFICATION = 4,
    /// Local storage failed (often a full disk).
    BALEEN_STORAGE = 5,
    /// Anything else: report it.
    BALEEN_OTHER = 6,
    /// The library panicked; the call had no effect that can be relied on.
    BALEEN_PANIC = 7,
    /// Nothing answers (a URL `resolve` does not serve): go to the network.
    BALEEN_NOT_FOUND = 8,
}

use baleen_result::*;

/// An open client. Opaque to C.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct baleen_client {
    inner: Client,
}

/// A file that answers a URL. Opaque to C; read with the `baleen_resolved_*` getters.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct baleen_resolved {
    path: CString,
    mime: CString,
    size: u64,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    static LAST_REPORT: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(message: &str) {
    LAST_ERROR.with(|e| message.clone_into(&mut e.borrow_mut()));
}

fn fail(code: baleen_result, message: &str) -> baleen_result {
    set_error(message);
    code
}

fn from_error(e: BaleenError) -> baleen_result {
    let code = match &e {
        BaleenError::Network { .. } => BALEEN_NETWORK,
        BaleenError::Verification { .. } => BALEEN_VERIFICATION,
        BaleenError::Storage { .. } => BALEEN_STORAGE,
        _ => BALEEN_OTHER,
    };
    fail(code, &e.to_string())
}

/// Frees behind the panic boundary, leaving the last error alone: a host may free what it
/// holds before reading the message of the call that failed.
fn guard_free(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Runs `f` behind the panic boundary: a panic becomes `BALEEN_PANIC`, never an unwind into C.
fn guard(f: impl FnOnce() -> baleen_result) -> baleen_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => {
            if code == BALEEN_OK {
                set_error("");
            }
            code
        }
        Err(_) => fail(BALEEN_PANIC, "panic inside the library"),
    }
}

/// A NUL-terminated UTF-8 string from C.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, baleen_result> {
    if s.is_null() {
        return Err(fail(BALEEN_NULL_ARGUMENT, &format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string valid for the call.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str()
        .map_err(|_| fail(BALEEN_INVALID_ARGUMENT, &format!("{what} is not UTF-8")))
}

/// The client behind a pointer from `baleen_client_new`.
///
/// # Safety
/// `client` is NULL or a pointer `baleen_client_new` returned and that was not freed.
unsafe fn client<'a>(client: *const baleen_client) -> Result<&'a Client, baleen_result> {
    // SAFETY: the caller promises a live pointer from `baleen_client_new`, or NULL.
    match unsafe { client.as_ref() } {
        Some(c) => Ok(&c.inner),
        None => Err(fail(BALEEN_NULL_ARGUMENT, "client is NULL")),
    }
}

/// Bytes from C: `len` bytes at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
/// `ptr` points to `len` readable bytes valid for the call, or is NULL with `len` 0.
unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], baleen_result> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(fail(BALEEN_NULL_ARGUMENT, &format!("{what} is NULL")))
        };
    }
    // SAFETY: not NULL, and the caller promises `len` readable bytes valid for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

fn package(name: &str) -> Result<PackageId, baleen_result> {
    PackageId::parse(name).map_err(|e| fail(BALEEN_INVALID_ARGUMENT, &e.to_string()))
}

/// Runs `action` on the client for the package named by `package`.
///
/// # Safety
/// `client` is NULL or a live client; `package` is NULL or a NUL-terminated string.
unsafe fn on_package(
    client: *const baleen_client,
    package: *const c_char,
    action: fn(&Client, &PackageId) -> crate::Result<()>,
) -> baleen_result {
    guard(|| {
        done((|| {
            // SAFETY: per this function's contract.
            let (client, name) = unsafe { (self::client(client)?, text(package, "package")?) };
            action(client, &self::package(name)?).map_err(|e| from_error(e.into()))
        })())
    })
}

fn done(r: Result<(), baleen_result>) -> baleen_result {
    r.err().unwrap_or(BALEEN_OK)
}

/// Opens a client. `config_json` is a JSON object with the fields of `ClientConfig` (see the
/// header). On success `*out` is a client to free with `baleen_client_free`. Blocks (disk).
///
/// # Safety
/// `config_json` is a NUL-terminated string; `out` points to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_new(
    config_json: *const c_char,
    out: *mut *mut baleen_client,
) -> baleen_result {
    guard(|| {
        done((|| {
            if out.is_null() {
                return Err(fail(BALEEN_NULL_ARGUMENT, "out is NULL"));
            }
            // SAFETY: per this function's contract.
            let json = unsafe { text(config_json, "config_json") }?;
            let config: ClientConfig = serde_json::from_str(json)
                .map_err(|e| fail(BALEEN_INVALID_ARGUMENT, &format!("config_json: {e}")))?;
            let config = Config::try_from(config)
                .map_err(|e| fail(BALEEN_INVALID_ARGUMENT, &format!("config_json: {e}")))?;
            let fetcher = super::builtin().map_err(from_error)?;
            let inner = Client::open(config, fetcher).map_err(|e| from_error(e.into()))?;
            let boxed = Box::into_raw(Box::new(baleen_client { inner }));
            // SAFETY: `out` is not NULL and the caller promises it is writable.
            unsafe { *out = boxed };
            Ok(())
        })())
    })
}

/// Frees a client. NULL is ignored.
///
/// # Safety
/// `client` is NULL or a pointer from `baleen_client_new` not yet freed; no other thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_free(client: *mut baleen_client) {
    guard_free(|| {
        if !client.is_null() {
            // SAFETY: the pointer came from `Box::into_raw` in `baleen_client_new` and is freed
            // once, per this function's contract.
            drop(unsafe { Box::from_raw(client) });
        }
    });
}

/// Checks the index and installs what the device's conditions allow now. `conditions_json` is
/// a JSON object with the fields of `DeviceConditions` (see the header), or NULL for unmetered
/// Wi-Fi with power and space. `*installed` and `*waiting` (each may be NULL) receive how many
/// packages were installed and how many wait; `baleen_last_update_report` gives the details.
/// Blocks (network, disk): call from a background thread.
///
/// # Safety
/// `client` is a live client; `conditions_json` is NULL or a NUL-terminated string; `installed`
/// and `waiting` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_update(
    client: *const baleen_client,
    conditions_json: *const c_char,
    installed: *mut usize,
    waiting: *mut usize,
) -> baleen_result {
    guard(|| {
        done((|| {
            // SAFETY: per this function's contract.
            let client = unsafe { self::client(client) }?;
            let conditions = match conditions_json.is_null() {
                true => Conditions::unrestricted(),
                false => {
                    // SAFETY: not NULL, and NUL-terminated per this function's contract.
                    let json = unsafe { text(conditions_json, "conditions_json") }?;
                    let parsed: DeviceConditions = serde_json::from_str(json).map_err(|e| {
                        fail(BALEEN_INVALID_ARGUMENT, &format!("conditions_json: {e}"))
                    })?;
                    parsed.into()
                }
            };
            let outcome = client
                .update(&conditions)
                .map_err(|e| from_error(e.into()))?;
            let report = UpdateReport::from(&outcome);
            let json = serde_json::to_string(&report).unwrap_or_default();
            LAST_REPORT.with(|r| *r.borrow_mut() = json);
            for (out, n) in [
                (installed, report.installed.len()),
                (waiting, report.waiting.len()),
            ] {
                if !out.is_null() {
                    // SAFETY: not NULL, and the caller promises it is writable.
                    unsafe { *out = n };
                }
            }
            Ok(())
        })())
    })
}

/// Copies the JSON report of this thread's last successful `baleen_client_update` (an object with
/// `installed` and `waiting` lists) into `buf` as a NUL-terminated string, truncated to `len`
/// bytes; returns the length of the whole report, without the NUL.
///
/// # Safety
/// `buf` is NULL (then only the length is returned) or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_last_update_report(buf: *mut c_char, len: usize) -> usize {
    // SAFETY: per this function's contract.
    LAST_REPORT.with(|r| unsafe { copy_out(&r.borrow(), buf, len) })
}

/// Call once per app launch: a release still pending after `max_pending_launches` launches is
/// rolled back as failed; `*rolled_back` (if not NULL) receives how many. Blocks (disk).
///
/// # Safety
/// `client` is a live client; `rolled_back` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_on_launch(
    client: *const baleen_client,
    rolled_back: *mut usize,
) -> baleen_result {
    // SAFETY: per this function's contract.
    unsafe { counting(client, rolled_back, |c| Ok(c.on_launch()?.len())) }
}

/// Sends queued reports and open counters to the server; `*sent` (if not NULL) receives how
/// many events went. On failure they stay queued. Blocks (network).
///
/// # Safety
/// `client` is a live client; `sent` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_flush_events(
    client: *const baleen_client,
    sent: *mut usize,
) -> baleen_result {
    // SAFETY: per this function's contract.
    unsafe { counting(client, sent, Client::flush_events) }
}

/// Runs `action`, storing the count it returns in `*out` when `out` is not NULL.
///
/// # Safety
/// `client` is NULL or a live client; `out` is NULL or writable.
unsafe fn counting(
    client: *const baleen_client,
    out: *mut usize,
    action: fn(&Client) -> crate::Result<usize>,
) -> baleen_result {
    guard(|| {
        done((|| {
            // SAFETY: per this function's contract.
            let client = unsafe { self::client(client) }?;
            let n = action(client).map_err(|e| from_error(e.into()))?;
            if !out.is_null() {
                // SAFETY: not NULL, and the caller promises it is writable.
                unsafe { *out = n };
            }
            Ok(())
        })())
    })
}

/// Finds the file answering `url`. On success `*out` is a result to free with
/// `baleen_resolved_free`; a URL the offline packages do not serve gives `BALEEN_NOT_FOUND`
/// (go to the network). Never blocks on an install.
///
/// # Safety
/// `client` is a live client; `url` a NUL-terminated string; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_resolve(
    client: *const baleen_client,
    url: *const c_char,
    out: *mut *mut baleen_resolved,
) -> baleen_result {
    guard(|| {
        done((|| {
            // SAFETY: per this function's contract.
            let client = unsafe { self::client(client) }?;
            // SAFETY: per this function's contract.
            let url = unsafe { text(url, "url") }?;
            if out.is_null() {
                return Err(fail(BALEEN_NULL_ARGUMENT, "out is NULL"));
            }
            let hit = client
                .resolve(url)
                .ok_or_else(|| fail(BALEEN_NOT_FOUND, "no offline file answers this URL"))?;
            let c = |s: String| {
                CString::new(s).map_err(|_| fail(BALEEN_OTHER, "a NUL byte in a resolved value"))
            };
            let resolved = baleen_resolved {
                path: c(hit.path.to_string_lossy().into_owned())?,
                mime: c(hit.mime)?,
                size: hit.size,
            };
            // SAFETY: not NULL, and the caller promises it is writable.
            unsafe { *out = Box::into_raw(Box::new(resolved)) };
            Ok(())
        })())
    })
}

/// The path of the resolved file, valid until `baleen_resolved_free`; NULL for NULL.
///
/// # Safety
/// `resolved` is NULL or a live result of `baleen_client_resolve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_resolved_path(resolved: *const baleen_resolved) -> *const c_char {
    // SAFETY: per this function's contract.
    unsafe { resolved.as_ref() }.map_or(std::ptr::null(), |r| r.path.as_ptr())
}

/// The `Content-Type` of the resolved file, valid until `baleen_resolved_free`; NULL for NULL.
///
/// # Safety
/// `resolved` is NULL or a live result of `baleen_client_resolve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_resolved_mime(resolved: *const baleen_resolved) -> *const c_char {
    // SAFETY: per this function's contract.
    unsafe { resolved.as_ref() }.map_or(std::ptr::null(), |r| r.mime.as_ptr())
}

/// The size in bytes of the resolved file; 0 for NULL.
///
/// # Safety
/// `resolved` is NULL or a live result of `baleen_client_resolve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_resolved_size(resolved: *const baleen_resolved) -> u64 {
    // SAFETY: per this function's contract.
    unsafe { resolved.as_ref() }.map_or(0, |r| r.size)
}

/// Frees a resolve result. NULL is ignored.
///
/// # Safety
/// `resolved` is NULL or a result of `baleen_client_resolve` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_resolved_free(resolved: *mut baleen_resolved) {
    guard_free(|| {
        if !resolved.is_null() {
            // SAFETY: from `Box::into_raw` in `baleen_client_resolve`, freed once per contract.
            drop(unsafe { Box::from_raw(resolved) });
        }
    });
}

/// The page of `package` works: its new release is no longer pending. Blocks (disk).
///
/// # Safety
/// `client` is a live client; `package` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_mark_ready(
    client: *const baleen_client,
    package: *const c_char,
) -> baleen_result {
    // SAFETY: per this function's contract.
    unsafe { on_package(client, package, Client::mark_ready) }
}

/// The page of `package` failed: roll back to the previous release. Blocks (disk).
///
/// # Safety
/// `client` is a live client; `package` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_report_failure(
    client: *const baleen_client,
    package: *const c_char,
) -> baleen_result {
    // SAFETY: per this function's contract.
    unsafe { on_package(client, package, Client::report_failure) }
}

/// Goes back to the previous release of `package` on the host's request. Blocks (disk).
///
/// # Safety
/// `client` is a live client; `package` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_rollback(
    client: *const baleen_client,
    package: *const c_char,
) -> baleen_result {
    // SAFETY: per this function's contract.
    unsafe { on_package(client, package, Client::rollback) }
}

/// Installs a release shipped inside the app: its signed manifest and its full pack, both
/// verified. Blocks (disk).
///
/// # Safety
/// `client` is a live client; each buffer is `len` readable bytes (or NULL with `len` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_seed(
    client: *const baleen_client,
    manifest: *const u8,
    manifest_len: usize,
    full_pack: *const u8,
    full_pack_len: usize,
) -> baleen_result {
    guard(|| {
        done((|| {
            // SAFETY: per this function's contract.
            let (client, manifest, pack) = unsafe {
                (
                    self::client(client)?,
                    bytes(manifest, manifest_len, "manifest")?,
                    bytes(full_pack, full_pack_len, "full_pack")?,
                )
            };
            client
                .seed(manifest, pack)
                .map(|_| ())
                .map_err(|e| from_error(e.into()))
        })())
    })
}

/// Counts a page open for the open-rate figures. Never blocks on IO.
///
/// # Safety
/// `client` is a live client; `url` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_client_report_open(
    client: *const baleen_client,
    url: *const c_char,
    ms_to_first_paint: u64,
) -> baleen_result {
    guard(|| {
        done((|| {
            // SAFETY: per this function's contract.
            let (client, url) = unsafe { (self::client(client)?, text(url, "url")?) };
            client.report_open(url, ms_to_first_paint);
            Ok(())
        })())
    })
}

/// Copies the message of this thread's last error (empty after a success), NUL-terminated and
/// cut to fit, into `buf` of `len` bytes; returns the message's full length without the NUL.
///
/// # Safety
/// `buf` is NULL (to ask the length) or `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn baleen_last_error(buf: *mut c_char, len: usize) -> usize {
    // SAFETY: per this function's contract.
    LAST_ERROR.with(|e| unsafe { copy_out(&e.borrow(), buf, len) })
}

/// Copies `text` into `buf` as a NUL-terminated string truncated to `len` bytes; returns the
/// length of `text`.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
unsafe fn copy_out(text: &str, buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = text.len().min(len - 1);
        // SAFETY: `buf` has `len` writable bytes and `n + 1 <= len`; the source is the text's
        // own bytes, which do not overlap a caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buf, n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests;
