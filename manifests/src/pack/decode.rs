//! Decoding pack payloads in pure Rust with `ruzstd`: whole zstd frames (`data.zst`), and patches
//! whose reference prefix is the device's old copy of a file (`zstd --patch-from`).
//!
//! The server writes both with libzstd (`server/src/pack/delta.rs`): level 19, long-distance
//! matching, a window of base + target rounded up to a power of two within 2^10..=2^27, a content
//! size and a checksum. This module accepts exactly one such frame and refuses everything else with
//! a [`DecodeError`]: a window above [`MAX_WINDOW_LOG`], a frame that names a dictionary, a content
//! size other than the one the signed manifest gives, trailing bytes or a second frame, a wrong
//! checksum, and malformed or truncated data.
//!
//! # Raw-content prefixes
//!
//! ruzstd 0.9 has no call for a raw-content prefix (libzstd's `ZSTD_DCtx_refPrefix`), but to a
//! decoder a prefix is just a dictionary without entropy tables: bytes that sequences may reach
//! back into, plus zstd's initial repeat offsets. ruzstd's [`Dictionary`] has public fields, so
//! [`prefix`] builds one directly instead of parsing a formatted dictionary and swapping its
//! content:
//!
//! - `dict_content` is the base file;
//! - `fse` and `huf` are empty tables, built with `Default::default()` because their types are
//!   public but live in a private module. Empty tables are also where a frame without a dictionary
//!   starts, and libzstd resets its tables for a raw prefix the same way, so a valid frame never
//!   asks for a "repeat the previous table" mode in its first block; a forged one that does gets
//!   ruzstd's "uninitialized table" error (Huffman and FSE alike);
//! - `offset_hist` is `[1, 4, 8]`, zstd's initial repeat offsets (ruzstd's own `decode_dict`
//!   starts from `[2, 4, 8]` and overwrites it from the dictionary bytes; copying that default
//!   would break frames whose first sequences use a repeat offset);
//! - `id` is any value: a prefix frame names no dictionary (one that does is refused), so the
//!   dictionary is applied with `force_dict` after the frame header is read.
//!
//! ruzstd lets a match reach into dictionary content while the output so far is within the
//! window. The server's frames are single-segment (window = content size), so the whole base
//! stays reachable, as it does for libzstd's decoder.
//!
//! The risk is coupling to ruzstd internals that are public but undocumented for this use: if a
//! 0.9.x release makes the fields private or adds one, this stops compiling (no silent change);
//! if it changed how dictionary content is reached, the round-trip tests against libzstd frames
//! (including every file of a real release pair when `BALEEN_WEBAPPS` is set) would fail.
//!
//! # Checksums, sizes and memory
//!
//! The frame checksum (xxhash64, ruzstd's `hash` feature) is verified. The caller still checks the
//! sha256 of every result against the signed manifest, which is what makes the bytes trusted; the
//! checksum only turns a corrupt frame into an early, precise error.
//!
//! A frame whose declared content size is not `size` is refused before any block is decoded. Then
//! decoding goes one block (at most 128 KiB of output) at a time and stops as soon as more than
//! `size` bytes have come out. So the output never holds more than `size` bytes; the decoder's
//! history holds at most the frame's window plus one block on top, and the window is `size` itself
//! for the server's single-segment frames and at most 2^[`MAX_WINDOW_LOG`] for any frame. A patch
//! also keeps one copy of the base inside the decoder while it runs.
//!
//! # Panics
//!
//! None escape. ruzstd 0.9.1 keeps `assert!`s, `panic!`s and slice indexing on its decode path
//! that only its own bookkeeping keeps from firing (`block_decoder.rs`, `sequence_execution.rs`),
//! and a recent release fixed one that a hostile dictionary could reach (upstream #115). A
//! two-minute mutation run over 1.3 million damaged real patches found no panic, but that proves
//! little, so every decode runs inside `catch_unwind` and a panic becomes
//! [`DecodeError::DecoderPanicked`]. That needs `panic = "unwind"`, which every profile here keeps;
//! the default panic hook still prints the message to stderr.

use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ruzstd::decoding::errors::{FrameDecoderError, FrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, Dictionary, FrameDecoder};

/// The largest window a frame may use: 2^27 bytes (128 MiB). The server's encoder clamps its
/// window log to this, so every frame it writes is one a device accepts.
pub const MAX_WINDOW_LOG: u32 = 27;
/// The most bytes one frame may decode to (512 MiB, the server's default cap on a whole
/// release): the solid `data.zst` of a full pack, or one patched blob. The server refuses to
/// encode more into one frame, and a device refuses a larger expected size before decoding.
pub const MAX_CONTENT_BYTES: u64 = 512 << 20;

/// The largest frame a pack may carry for `content_bytes` of content: libzstd's
/// `ZSTD_COMPRESSBOUND`, which no frame of the server's encoder exceeds (it compresses into a
/// buffer of that size). A reader caps each entry of a pack to this before reading it.
pub const fn max_frame_bytes(content_bytes: u64) -> u64 {
    const SMALL: u64 = 128 << 10;
    let margin = if content_bytes < SMALL {
        (SMALL - content_bytes) >> 11
    } else {
        0
    };
    content_bytes
        .saturating_add(content_bytes >> 8)
        .saturating_add(margin)
}

/// The magic number that starts every zstd frame (little-endian 0xFD2FB528).
const FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The id under which the prefix dictionary is registered; frames never name it.
const PREFIX_ID: u32 = 1;

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input does not start with a zstd frame header (a skippable frame counts as none).
    #[error("not a zstd frame")]
    NotZstd,
    /// The frame names a dictionary; Baleen's frames use none, or a raw prefix the caller gives.
    #[error("zstd frame names dictionary {id}; pack frames use none")]
    NamesDictionary {
        /// The dictionary id in the frame header.
        id: u32,
    },
    /// The frame header declares a content size other than the expected one.
    #[error("zstd frame declares {declared_bytes} bytes, expected {expected_bytes}")]
    DeclaredSize {
        /// The content size in the frame header.
        declared_bytes: u64,
        /// The size the caller expects.
        expected_bytes: u64,
    },
    /// The frame needs a larger window than devices provide.
    #[error("zstd frame needs a {window_bytes}-byte window, above the limit of 2^{MAX_WINDOW_LOG}")]
    WindowTooLarge {
        /// The window the frame header asks for.
        window_bytes: u64,
    },
    /// More bytes came out than expected; decoding stopped there.
    #[error("zstd frame decodes to more than the expected {expected_bytes} bytes")]
    TooLong {
        /// The size the caller expects.
        expected_bytes: u64,
    },
    /// Fewer bytes came out than expected.
    #[error("zstd frame decodes to {actual_bytes} bytes, expected {expected_bytes}")]
    TooShort {
        /// What came out.
        actual_bytes: u64,
        /// The size the caller expects.
        expected_bytes: u64,
    },
    /// The input ends inside the frame.
    #[error("zstd frame is truncated")]
    Truncated,
    /// The checksum at the end of the frame does not match the decoded bytes.
    #[error("zstd frame checksum mismatch (frame says {stored:08x}, content has {computed:08x})")]
    ChecksumMismatch {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum of what was decoded.
        computed: u32,
    },
    /// Another frame (or a skippable frame) follows the first one.
    #[error("more than one zstd frame")]
    SecondFrame,
    /// Bytes that are not a frame follow the frame.
    #[error("{count} bytes after the zstd frame")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Anything else ruzstd refuses, with its message.
    #[error("malformed zstd frame: {0}")]
    Malformed(String),
    /// ruzstd panicked on this input; the panic was caught.
    #[error("malformed zstd frame: the decoder panicked")]
    DecoderPanicked,
    /// `size` does not fit in this device's address space.
    #[error("{0} bytes do not fit in memory")]
    SizeUnsupported(u64),
    /// The expected size is above [`MAX_CONTENT_BYTES`].
    #[error(
        "{expected_bytes} bytes expected from one zstd frame, above the limit of {MAX_CONTENT_BYTES}"
    )]
    ContentTooLarge {
        /// The size the caller expects.
        expected_bytes: u64,
    },
}

impl DecodeError {
    /// A stable, snake_case code for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::NotZstd => "not_zstd",
            DecodeError::NamesDictionary { .. } => "zstd_names_dictionary",
            DecodeError::DeclaredSize { .. } => "zstd_declared_size",
            DecodeError::WindowTooLarge { .. } => "zstd_window_too_large",
            DecodeError::TooLong { .. } => "zstd_too_long",
            DecodeError::TooShort { .. } => "zstd_too_short",
            DecodeError::Truncated => "zstd_truncated",
            DecodeError::ChecksumMismatch { .. } => "zstd_checksum_mismatch",
            DecodeError::SecondFrame => "zstd_second_frame",
            DecodeError::TrailingBytes { .. } => "zstd_trailing_bytes",
            DecodeError::Malformed(_) => "zstd_malformed",
            DecodeError::DecoderPanicked => "zstd_decoder_panicked",
            DecodeError::SizeUnsupported(_) => "zstd_size_unsupported",
            DecodeError::ContentTooLarge { .. } => "zstd_content_too_large",
        }
    }
}

/// Decodes one whole zstd frame that must yield exactly `size` bytes.
///
/// # Errors
/// Any [`DecodeError`]; decoding stops as soon as more than `size` bytes would come out.
pub fn decode_frame(frame: &[u8], size: u64) -> Result<Vec<u8>, DecodeError> {
    guarded(|| decode(frame, None, size))
}

/// Decodes one whole zstd frame that declares its content size, of at most `max_bytes`: a
/// compressed HTTP body (`Content-Encoding: zstd`), whose size no signed document gives.
///
/// # Errors
/// [`DecodeError::DeclaredSize`] for a frame that declares no size (`expected_bytes` is then
/// `max_bytes`) or one above `max_bytes`, refused before any block is decoded (a decompression
/// bomb); otherwise as [`decode_frame`].
pub fn decode_bounded(frame: &[u8], max_bytes: u64) -> Result<Vec<u8>, DecodeError> {
    match header(frame)?.content_size {
        Some(size) if size <= max_bytes => decode_frame(frame, size),
        declared => Err(DecodeError::DeclaredSize {
            declared_bytes: declared.unwrap_or(u64::MAX),
            expected_bytes: max_bytes,
        }),
    }
}

/// Decodes a patch frame against `base`, its raw-content reference prefix
/// (`zstd --patch-from`), that must yield exactly `size` bytes.
///
/// # Errors
/// As [`decode_frame`]. A wrong base is not detected as such: it shows as a checksum mismatch,
/// malformed data, or (for the caller) a sha256 mismatch.
pub fn decode_patch(frame: &[u8], base: &[u8], size: u64) -> Result<Vec<u8>, DecodeError> {
    guarded(|| decode(frame, Some(base), size))
}

/// Runs a decode, turning a panic inside ruzstd into an error (see the module docs).
fn guarded(f: impl FnOnce() -> Result<Vec<u8>, DecodeError>) -> Result<Vec<u8>, DecodeError> {
    // AssertUnwindSafe: nothing `f` touches outlives it; a half-built decoder is dropped.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(DecodeError::DecoderPanicked))
}

/// The parts of a frame header this module checks before ruzstd decodes anything.
#[derive(Debug)]
struct Header {
    dictionary_id: Option<u32>,
    content_size: Option<u64>,
    window_bytes: u64,
}

/// Reads the frame header (zstd_compression_format.md, "Frame_Header"). ruzstd parses it again;
/// it does not expose whether a content size or dictionary id is present, nor the window.
fn header(frame: &[u8]) -> Result<Header, DecodeError> {
    if frame.get(..4) != Some(&FRAME_MAGIC[..]) {
        return Err(DecodeError::NotZstd);
    }
    let mut rest = frame.get(4..).unwrap_or_default();
    let mut take = |n: usize| -> Result<u64, DecodeError> {
        let bytes = rest.get(..n).ok_or(DecodeError::Truncated)?;
        rest = rest.get(n..).unwrap_or_default();
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    let descriptor = take(1)?;
    let single_segment = descriptor & 0x20 != 0;
    let window_descriptor = if single_segment { None } else { Some(take(1)?) };
    let dictionary_id = match descriptor & 0x03 {
        0 => 0,
        1 => take(1)?,
        2 => take(2)?,
        _ => take(4)?,
    };
    let content_size = match (descriptor >> 6, single_segment) {
        (0, false) => None,
        (0, true) => Some(take(1)?),
        (1, _) => Some(take(2)? + 256),
        (2, _) => Some(take(4)?),
        _ => Some(take(8)?),
    };
    let window_bytes = match window_descriptor {
        // A single-segment frame's window is its content, which is then always present.
        None => content_size.unwrap_or_default(),
        Some(byte) => {
            let log = 10 + (byte >> 3);
            let base = 1u64 << log;
            base + (base / 8) * (byte & 0x07)
        }
    };
    Ok(Header {
        // At most four bytes were read, so the id fits in a u32.
        dictionary_id: (dictionary_id != 0).then_some(dictionary_id as u32),
        content_size,
        window_bytes,
    })
}

/// The dictionary that makes `content` the frame's raw-content prefix (see the module docs).
fn prefix(content: Vec<u8>) -> Dictionary {
    Dictionary {
        id: PREFIX_ID,
        fse: Default::default(),
        huf: Default::default(),
        dict_content: content,
        offset_hist: [1, 4, 8],
    }
}

fn decode(frame: &[u8], base: Option<&[u8]>, size: u64) -> Result<Vec<u8>, DecodeError> {
    if size > MAX_CONTENT_BYTES {
        return Err(DecodeError::ContentTooLarge {
            expected_bytes: size,
        });
    }
    let limit = usize::try_from(size).map_err(|_| DecodeError::SizeUnsupported(size))?;
    let header = header(frame)?;
    if let Some(id) = header.dictionary_id {
        return Err(DecodeError::NamesDictionary { id });
    }
    if let Some(declared) = header.content_size
        && declared != size
    {
        return Err(DecodeError::DeclaredSize {
            declared_bytes: declared,
            expected_bytes: size,
        });
    }
    if header.window_bytes > 1 << MAX_WINDOW_LOG {
        return Err(DecodeError::WindowTooLarge {
            window_bytes: header.window_bytes,
        });
    }

    let mut decoder = FrameDecoder::new();
    decoder.set_max_window_size(1 << MAX_WINDOW_LOG);
    let mut input = frame;
    decoder.init(&mut input).map_err(ruzstd_error)?;
    if let Some(base) = base {
        decoder
            .add_dict(prefix(base.to_vec()))
            .map_err(ruzstd_error)?;
        // `force_dict` copies the content into the decoder's state; replacing the registered
        // dictionary with an empty one frees the first copy.
        decoder.force_dict(PREFIX_ID).map_err(ruzstd_error)?;
        decoder.add_dict(prefix(Vec::new())).map_err(ruzstd_error)?;
    }

    let mut out = Vec::with_capacity(limit);
    loop {
        decoder
            .decode_blocks(&mut input, BlockDecodingStrategy::UptoBlocks(1))
            .map_err(ruzstd_error)?;
        let finished = decoder.is_finished();
        let pending = decoder.can_collect() as u64;
        // Until the frame ends the decoder holds back one window of output, so once anything can
        // be collected, a window's worth more than that has come out.
        let held_back = if finished || pending == 0 {
            0
        } else {
            header.window_bytes
        };
        if out.len() as u64 + held_back + pending > size {
            return Err(DecodeError::TooLong {
                expected_bytes: size,
            });
        }
        if pending > 0 {
            decoder
                .collect_to_writer(&mut out)
                .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        }
        if finished {
            break;
        }
    }

    if let (Some(stored), Some(computed)) = (
        decoder.get_checksum_from_data(),
        decoder.get_calculated_checksum(),
    ) && stored != computed
    {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    if !input.is_empty() {
        return Err(trailing(input));
    }
    if out.len() != limit {
        return Err(DecodeError::TooShort {
            actual_bytes: out.len() as u64,
            expected_bytes: size,
        });
    }
    Ok(out)
}

/// What the bytes after a frame are: another frame, a skippable frame, or junk.
fn trailing(rest: &[u8]) -> DecodeError {
    match rest.get(..4) {
        Some(magic) if magic == FRAME_MAGIC => DecodeError::SecondFrame,
        // Skippable frames: magic 0x184D2A50..=0x184D2A5F.
        Some(&[low, 0x2a, 0x4d, 0x18]) if low & 0xf0 == 0x50 => DecodeError::SecondFrame,
        _ => DecodeError::TrailingBytes { count: rest.len() },
    }
}

fn ruzstd_error(error: FrameDecoderError) -> DecodeError {
    match error {
        FrameDecoderError::WindowSizeTooBig { requested, .. }
        | FrameDecoderError::FrameHeaderError(FrameHeaderError::WindowTooBig { got: requested }) => {
            DecodeError::WindowTooLarge {
                window_bytes: requested,
            }
        }
        other => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&other);
            while let Some(error) = source {
                if let Some(io) = error.downcast_ref::<std::io::Error>()
                    && io.kind() == ErrorKind::UnexpectedEof
                {
                    return DecodeError::Truncated;
                }
                source = error.source();
            }
            DecodeError::Malformed(other.to_string())
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
