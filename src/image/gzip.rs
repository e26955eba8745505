//! Gzip decoding of layers: ISA-L's inflate where the build found it
//! (`isal.rs`), flate2's zlib-rs otherwise. In a pull here ISA-L's
//! inflate thread needs about 12% less CPU than zlib-rs's; a single gzip
//! stream's inflate is the one step of a pull that cannot be split across
//! cores (BENCHMARKS.md, "Direct writes and ISA-L").
//!
//! Both read concatenated members as one stream, check each member's
//! CRC-32 and size, and fail on a truncated stream or on bytes after the
//! last member that are not another member.

use std::io::{BufRead, Read};

/// The decoder of a gzip stream read from `input`.
pub fn decoder<'a, R: BufRead + 'a>(input: R) -> Box<dyn Read + 'a> {
    #[cfg(strata_isal)]
    {
        Box::new(super::isal::GzDecoder::new(input))
    }
    #[cfg(not(strata_isal))]
    {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    }
}

/// Which inflater this build uses: `isa-l` or `zlib-rs`.
pub fn inflater() -> &'static str {
    if cfg!(strata_isal) {
        "isa-l"
    } else {
        "zlib-rs"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i / 7) as u8).wrapping_mul(seed) ^ (i % 13) as u8)
            .collect()
    }

    /// Decodes `stream` with every inflater this build has (the results
    /// must agree), in reads of `read_size`.
    fn decode_all(stream: &[u8], read_size: usize) -> std::io::Result<Vec<u8>> {
        let zlib = read_all(
            Box::new(flate2::bufread::MultiGzDecoder::new(
                std::io::BufReader::with_capacity(1000, stream),
            )),
            read_size,
        );
        let ours = read_all(
            decoder(std::io::BufReader::with_capacity(1000, stream)),
            read_size,
        );
        match (&zlib, &ours) {
            (Ok(a), Ok(b)) => assert!(a == b, "the inflaters disagree"),
            (Err(_), Err(_)) => {}
            _ => panic!("one inflater failed, the other did not: {zlib:?} / {ours:?}"),
        }
        ours
    }

    fn read_all(mut decoder: Box<dyn Read + '_>, read_size: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// CI installs ISA-L (tools/install-deps.sh): a build there without
    /// it would pull at zlib-rs's speed unnoticed.
    #[test]
    fn ci_builds_inflate_with_isal() {
        if std::env::var("CI").as_deref() == Ok("true") {
            assert_eq!(inflater(), "isa-l", "libisal-dev missing at build time");
        }
    }

    #[test]
    fn one_member_decodes_in_reads_of_any_size() {
        let data = sample(3 << 20, 31);
        let stream = gzip(&data);
        for read_size in [1, 4095, 1 << 16, 5 << 20] {
            assert!(
                decode_all(&stream, read_size).unwrap() == data,
                "{read_size}"
            );
        }
        assert!(decode_all(&gzip(b""), 100).unwrap().is_empty());
    }

    #[test]
    fn members_are_read_as_one_stream() {
        let (a, b) = (sample(100_000, 3), sample(70_001, 5));
        let mut stream = gzip(&a);
        stream.extend(gzip(&b));
        stream.extend(gzip(b""));
        let mut both = a.clone();
        both.extend(&b);
        assert!(decode_all(&stream, 1 << 16).unwrap() == both);
    }

    /// A member with a file name and a comment in its header (as `gzip
    /// FILE` writes) decodes like any other.
    #[test]
    fn header_fields_are_skipped() {
        let data = sample(50_000, 7);
        let mut encoder = flate2::GzBuilder::new()
            .filename("layer.tar")
            .comment("a comment")
            .extra(vec![1, 2, 3, 4])
            .write(Vec::new(), flate2::Compression::default());
        encoder.write_all(&data).unwrap();
        let stream = encoder.finish().unwrap();
        assert!(decode_all(&stream, 8192).unwrap() == data);
    }

    #[test]
    fn damage_is_an_error_never_wrong_data() {
        let data = sample(200_000, 11);
        let stream = gzip(&data);
        // Truncated, anywhere.
        for cut in [5, 20, stream.len() / 2, stream.len() - 4, stream.len() - 1] {
            assert!(decode_all(&stream[..cut], 4096).is_err(), "cut at {cut}");
        }
        // A wrong CRC-32, then a wrong size, in the trailer.
        for at in [stream.len() - 8, stream.len() - 1] {
            let mut bad = stream.clone();
            bad[at] ^= 1;
            assert!(decode_all(&bad, 4096).is_err(), "trailer byte {at}");
        }
        // Bytes after the last member that are no member.
        let mut trailing = stream.clone();
        trailing.extend(b"not gzip");
        assert!(decode_all(&trailing, 4096).is_err());
        // Not gzip at all.
        assert!(decode_all(b"plain text, long enough to be read", 4096).is_err());
    }
}
