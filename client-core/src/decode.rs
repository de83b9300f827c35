//! Decoding pack payloads in pure Rust (`ruzstd`): whole zstd frames, and patches whose reference
//! prefix is the device's old copy of a file (`zstd --patch-from`).
//!
//! ruzstd has no call for a raw-content prefix, but its `Dictionary` has public fields: a
//! dictionary with only content, empty entropy tables and zstd's initial repeat offsets
//! `[1, 4, 8]` is exactly what a prefix is to the decoder. Prefix frames carry no dictionary id,
//! so it is forced after the frame header is read. The server's encoder never emits "repeat
//! previous table" modes at the start of such a frame, so the empty tables are never used.
//!
//! Every output is capped at the size the signed manifest gives, and the frame checksum is
//! verified; the caller checks the sha256 of the result anyway.

use ruzstd::decoding::{BlockDecodingStrategy, Dictionary, FrameDecoder};

/// The largest window a frame may use (the server's limit): 128 MiB.
pub const MAX_WINDOW_LOG: u32 = 27;

/// An id for the forced prefix dictionary (any non-zero value; frames never name it).
const PREFIX_ID: u32 = 0x5ba1_ee11;

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zstd frame: {0}")]
pub struct DecodeError(String);

fn error(what: impl std::fmt::Display) -> DecodeError {
    DecodeError(what.to_string())
}

/// Decodes one whole frame that must yield exactly `size` bytes.
///
/// # Errors
/// Malformed data, a window above 128 MiB, a wrong checksum, trailing bytes, or any other size.
pub fn decode_frame(frame: &[u8], size: u64) -> Result<Vec<u8>, DecodeError> {
    guarded(|| decode(frame, None, size))
}

/// Decodes a patch frame against `base` that must yield exactly `size` bytes.
///
/// # Errors
/// As [`decode_frame`].
pub fn decode_patch(frame: &[u8], base: &[u8], size: u64) -> Result<Vec<u8>, DecodeError> {
    guarded(|| decode(frame, Some(base), size))
}

/// Malformed input must be an error, never a crash of the host app: a panic inside the decoder
/// is caught here and reported as a decode error.
fn guarded(f: impl FnOnce() -> Result<Vec<u8>, DecodeError>) -> Result<Vec<u8>, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(error("decoder panicked on malformed input")))
}

fn decode(frame: &[u8], base: Option<&[u8]>, size: u64) -> Result<Vec<u8>, DecodeError> {
    let limit = usize::try_from(size).map_err(|_| error("size does not fit in memory"))?;
    let mut decoder = FrameDecoder::new();
    decoder.set_max_window_size(1 << MAX_WINDOW_LOG);
    let mut input = frame;
    decoder.init(&mut input).map_err(error)?;
    if let Some(base) = base {
        decoder
            .add_dict(Dictionary {
                id: PREFIX_ID,
                fse: Default::default(),
                huf: Default::default(),
                dict_content: base.to_vec(),
                offset_hist: [1, 4, 8],
            })
            .map_err(error)?;
        decoder.force_dict(PREFIX_ID).map_err(error)?;
    }
    let mut out = Vec::with_capacity(limit);
    loop {
        let finished = decoder
            .decode_blocks(&mut input, BlockDecodingStrategy::UptoBytes(1 << 20))
            .map_err(error)?;
        if let Some(chunk) = decoder.collect() {
            if out.len() + chunk.len() > limit {
                return Err(error(format!("more than the expected {size} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        if finished || decoder.is_finished() {
            break;
        }
    }
    while let Some(chunk) = decoder.collect() {
        if chunk.is_empty() {
            break;
        }
        if out.len() + chunk.len() > limit {
            return Err(error(format!("more than the expected {size} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    if !decoder.is_finished() {
        return Err(error("frame is truncated"));
    }
    if let (Some(stored), Some(computed)) = (
        decoder.get_checksum_from_data(),
        decoder.get_calculated_checksum(),
    ) && stored != computed
    {
        return Err(error("checksum mismatch"));
    }
    if !input.is_empty() {
        return Err(error(format!("{} bytes after the frame", input.len())));
    }
    if out.len() != limit {
        return Err(error(format!("{} bytes, expected {size}", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
