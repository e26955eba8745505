//! SHA-256 of two states over the same message blocks at once.
//!
//! A pull hashes every file's content twice: once as part of the layer's
//! tar stream (the diff_id) and once on its own (the key the store files it
//! under). The bytes are the same and, since a file's content starts at a
//! 512-byte boundary of the tar stream, so are the 64-byte blocks. With
//! the x86 SHA extensions a single SHA-256 is bound by the latency of
//! `sha256rnds2` (each round pair needs the last one's result); two
//! independent states interleaved keep the unit busy while each waits,
//! and the message schedule, the same for both, is computed once. On the
//! machine of BENCHMARKS.md two states cost about the time of one.
//!
//! Without the extensions, each state goes through `sha2`'s compression
//! on its own.

#![allow(unsafe_code)] // the SHA instructions, and blocks viewed as `sha2`'s arrays

use sha2::digest::generic_array::{typenum::U64, GenericArray};

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
pub const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// `data` (a multiple of 64 bytes) as the block slice `sha2` takes.
fn blocks(data: &[u8]) -> &[GenericArray<u8, U64>] {
    debug_assert_eq!(data.len() % 64, 0);
    // SAFETY: GenericArray<u8, U64> is a #[repr(transparent)] [u8; 64]
    // (size 64, alignment 1), and the slice covers exactly data.len() / 64
    // of them inside `data`, borrowed for as long as `data` is.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), data.len() / 64) }
}

/// Runs the compression function of one state over `data`'s blocks.
pub fn compress(state: &mut [u32; 8], data: &[u8]) {
    sha2::compress256(state, blocks(data));
}

/// Runs the compression function of both states over `data`'s blocks, as
/// [`compress`] on each would.
pub fn compress_twin(a: &mut [u32; 8], b: &mut [u32; 8], data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if has_sha_extensions() {
        // SAFETY: the CPU has every feature the function is compiled for.
        unsafe { x86::compress_twin(a, b, data) };
        return;
    }
    compress(a, data);
    compress(b, data);
}

#[cfg(target_arch = "x86_64")]
fn has_sha_extensions() -> bool {
    std::is_x86_feature_detected!("sha")
        && std::is_x86_feature_detected!("sse4.1")
        && std::is_x86_feature_detected!("ssse3")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The round constants of SHA-256 (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a_2f98,
        0x7137_4491,
        0xb5c0_fbcf,
        0xe9b5_dba5,
        0x3956_c25b,
        0x59f1_11f1,
        0x923f_82a4,
        0xab1c_5ed5,
        0xd807_aa98,
        0x1283_5b01,
        0x2431_85be,
        0x550c_7dc3,
        0x72be_5d74,
        0x80de_b1fe,
        0x9bdc_06a7,
        0xc19b_f174,
        0xe49b_69c1,
        0xefbe_4786,
        0x0fc1_9dc6,
        0x240c_a1cc,
        0x2de9_2c6f,
        0x4a74_84aa,
        0x5cb0_a9dc,
        0x76f9_88da,
        0x983e_5152,
        0xa831_c66d,
        0xb003_27c8,
        0xbf59_7fc7,
        0xc6e0_0bf3,
        0xd5a7_9147,
        0x06ca_6351,
        0x1429_2967,
        0x27b7_0a85,
        0x2e1b_2138,
        0x4d2c_6dfc,
        0x5338_0d13,
        0x650a_7354,
        0x766a_0abb,
        0x81c2_c92e,
        0x9272_2c85,
        0xa2bf_e8a1,
        0xa81a_664b,
        0xc24b_8b70,
        0xc76c_51a3,
        0xd192_e819,
        0xd699_0624,
        0xf40e_3585,
        0x106a_a070,
        0x19a4_c116,
        0x1e37_6c08,
        0x2748_774c,
        0x34b0_bcb5,
        0x391c_0cb3,
        0x4ed8_aa4a,
        0x5b9c_ca4f,
        0x682e_6ff3,
        0x748f_82ee,
        0x78a5_636f,
        0x84c8_7814,
        0x8cc7_0208,
        0x90be_fffa,
        0xa450_6ceb,
        0xbef9_a3f7,
        0xc671_78f2,
    ];

    /// A state as the SHA instructions hold it: (A, B, E, F) and (C, D, G, H).
    #[derive(Clone, Copy)]
    struct Lanes {
        abef: __m128i,
        cdgh: __m128i,
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load(state: &[u32; 8]) -> Lanes {
        // SAFETY: both loads read 16 bytes inside `state` (unaligned loads).
        let (dcba, hgfe) = unsafe {
            (
                _mm_loadu_si128(state.as_ptr().cast()),
                _mm_loadu_si128(state.as_ptr().add(4).cast()),
            )
        };
        // Lane 0 is the lowest: dcba holds A in lane 0 and D in lane 3.
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        Lanes {
            abef: _mm_alignr_epi8(cdab, efgh, 8),
            cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
        }
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store(lanes: Lanes, state: &mut [u32; 8]) {
        let feba = _mm_shuffle_epi32(lanes.abef, 0x1B);
        let dchg = _mm_shuffle_epi32(lanes.cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgfe = _mm_alignr_epi8(dchg, feba, 8);
        // SAFETY: both stores write 16 bytes inside `state`.
        unsafe {
            _mm_storeu_si128(state.as_mut_ptr().cast(), dcba);
            _mm_storeu_si128(state.as_mut_ptr().add(4).cast(), hgfe);
        }
    }

    /// Four rounds of both states with the same scheduled words plus
    /// constants (`wk`).
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn rounds4(a: &mut Lanes, b: &mut Lanes, wk: __m128i) {
        let high = _mm_shuffle_epi32(wk, 0x0E);
        a.cdgh = _mm_sha256rnds2_epu32(a.cdgh, a.abef, wk);
        b.cdgh = _mm_sha256rnds2_epu32(b.cdgh, b.abef, wk);
        a.abef = _mm_sha256rnds2_epu32(a.abef, a.cdgh, high);
        b.abef = _mm_sha256rnds2_epu32(b.abef, b.cdgh, high);
    }

    /// The next four message words from the last sixteen.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
        let partial = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        _mm_sha256msg2_epu32(partial, w3)
    }

    /// [`super::compress_twin`] with the SHA extensions.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) fn compress_twin(a: &mut [u32; 8], b: &mut [u32; 8], data: &[u8]) {
        // Each 32-bit word of the message is big-endian.
        let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let mut la = load(a);
        let mut lb = load(b);
        for block in data.chunks_exact(64) {
            let (sa, sb) = (la, lb);
            // SAFETY: each load reads 16 bytes inside the 64-byte block.
            let word = |i: usize| unsafe {
                _mm_shuffle_epi8(_mm_loadu_si128(block.as_ptr().add(16 * i).cast()), swap)
            };
            // The four message words of this group and the next three.
            let (mut w0, mut w1, mut w2, mut w3) = (word(0), word(1), word(2), word(3));
            for group in 0..16 {
                // SAFETY: reads K[4 * group..4 * group + 4], inside K.
                let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * group).cast()) };
                rounds4(&mut la, &mut lb, _mm_add_epi32(w0, k));
                let next = if group < 12 {
                    schedule(w0, w1, w2, w3)
                } else {
                    w0
                };
                (w0, w1, w2, w3) = (w1, w2, w3, next);
            }
            la.abef = _mm_add_epi32(la.abef, sa.abef);
            la.cdgh = _mm_add_epi32(la.cdgh, sa.cdgh);
            lb.abef = _mm_add_epi32(lb.abef, sb.abef);
            lb.cdgh = _mm_add_epi32(lb.cdgh, sb.cdgh);
        }
        store(la, a);
        store(lb, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::tests::bytes;

    #[test]
    fn twin_matches_two_single_compressions() {
        for blocks in [1usize, 2, 3, 17, 1000] {
            let data = bytes(64 * blocks, blocks as u64);
            let mut a = INITIAL;
            let mut b = INITIAL;
            // Different starting states: the twin must keep them apart.
            compress(&mut b, &bytes(64, 99));
            let (mut want_a, mut want_b) = (a, b);
            compress(&mut want_a, &data);
            compress(&mut want_b, &data);
            compress_twin(&mut a, &mut b, &data);
            assert_eq!(a, want_a, "{blocks} blocks, first state");
            assert_eq!(b, want_b, "{blocks} blocks, second state");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_sha_extension_path_is_the_one_tested_where_the_cpu_has_it() {
        if !has_sha_extensions() {
            eprintln!("this CPU has no SHA extensions: only the fallback is tested");
            return;
        }
        let data = bytes(64 * 33, 7);
        let (mut a, mut b) = (INITIAL, INITIAL);
        compress(&mut b, &bytes(64, 3));
        let (mut want_a, mut want_b) = (a, b);
        compress(&mut want_a, &data);
        compress(&mut want_b, &data);
        // SAFETY: the CPU has the extensions (checked above).
        unsafe { x86::compress_twin(&mut a, &mut b, &data) };
        assert_eq!((a, b), (want_a, want_b));
    }
}
