//! ISA-L's gzip inflate (built only where `build.rs` found ISA-L: the
//! `strata_isal` cfg), through the C shim in `isal_shim.c`, which hides
//! `struct inflate_state` behind plain pointers and lengths. The only
//! unsafe code of `image/`: the four shim calls, each on a state this
//! module owns and on slices it passes with their lengths.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io::{self, BufRead, Read};

#[repr(C)]
struct State {
    _opaque: [u8; 0],
}

unsafe extern "C" {
    fn strata_isal_new() -> *mut State;
    fn strata_isal_free(state: *mut State);
    fn strata_isal_reset(state: *mut State);
    fn strata_isal_inflate(
        state: *mut State,
        input: *const u8,
        in_len: usize,
        out: *mut u8,
        out_len: usize,
        consumed: *mut usize,
        produced: *mut usize,
        finished: *mut c_int,
    ) -> c_int;
}

/// `isal_inflate`'s codes for "more input needed" and "output full".
const END_INPUT: c_int = 1;
const OUT_OVERFLOW: c_int = 2;

/// ISA-L's state for one stream; freed with it.
struct Inflater(*mut State);

// SAFETY: the state is plain memory owned by this value alone; ISA-L keeps
// no reference to the thread that made it.
unsafe impl Send for Inflater {}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated by strata_isal_new, freed once, here.
        unsafe { strata_isal_free(self.0) }
    }
}

/// A reader of the decompressed bytes of a gzip stream (every member in
/// turn) read from `input`.
pub struct GzDecoder<R> {
    input: R,
    inflater: Option<Inflater>,
    /// The member being decoded is complete (trailer checked).
    member_done: bool,
    /// The stream is complete: nothing follows the last member.
    done: bool,
}

impl<R: BufRead> GzDecoder<R> {
    pub fn new(input: R) -> GzDecoder<R> {
        GzDecoder {
            input,
            inflater: None,
            member_done: false,
            done: false,
        }
    }

    fn inflater(&mut self) -> io::Result<*mut State> {
        if self.inflater.is_none() {
            // SAFETY: no arguments; a null result is handled below.
            let state = unsafe { strata_isal_new() };
            if state.is_null() {
                return Err(io::Error::other(
                    "gzip: out of memory for the inflate state",
                ));
            }
            self.inflater = Some(Inflater(state));
        }
        Ok(self.inflater.as_ref().map_or(std::ptr::null_mut(), |i| i.0))
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn describe(code: c_int) -> &'static str {
    match code {
        -1 => "invalid deflate block",
        -2 => "invalid deflate symbol",
        -3 => "invalid lookback distance",
        -4 => "invalid gzip header",
        -5 => "unsupported compression method",
        -6 => "CRC-32 or size mismatch in the trailer",
        6 => "a preset dictionary is required",
        _ => "inflate failed",
    }
}

impl<R: BufRead> Read for GzDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            let state = self.inflater()?;
            let input = self.input.fill_buf()?;
            if self.member_done {
                // The end, or another member (which starts with gzip's
                // magic; anything else after a member is an error, as
                // for zlib's and Go's readers).
                if input.is_empty() {
                    self.done = true;
                    return Ok(0);
                }
                if input[0] != 0x1f {
                    return Err(invalid("gzip: trailing bytes after the last member".into()));
                }
                // SAFETY: a state of this decoder's.
                unsafe { strata_isal_reset(state) };
                self.member_done = false;
            }
            if input.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "gzip: the stream ends inside a member",
                ));
            }
            let (mut consumed, mut produced, mut finished) = (0usize, 0usize, 0 as c_int);
            // SAFETY: `input` and `out` are live slices passed with their
            // lengths; the shim writes only the three outputs, and ISA-L
            // keeps no pointer into either slice after returning (the next
            // call passes them again).
            let code = unsafe {
                strata_isal_inflate(
                    state,
                    input.as_ptr(),
                    input.len(),
                    out.as_mut_ptr(),
                    out.len(),
                    &mut consumed,
                    &mut produced,
                    &mut finished,
                )
            };
            self.input.consume(consumed);
            if code != 0 && code != END_INPUT && code != OUT_OVERFLOW {
                return Err(invalid(format!("gzip: {}", describe(code))));
            }
            if finished != 0 {
                self.member_done = true;
            }
            if produced > 0 {
                return Ok(produced);
            }
            if consumed == 0 && finished == 0 {
                return Err(invalid("gzip: inflate made no progress".into()));
            }
        }
    }
}
