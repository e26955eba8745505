//! The standard streams as Docker's client treats them: a write to a
//! closed pipe (`strata images | head -1`) ends the process quietly, by
//! SIGPIPE, as it ends a Go program writing to its stdout or stderr; and
//! messages on stderr never echo a huge name whole.

use std::io::{self, Write};

use crate::container::sys::die_of_sigpipe;

/// Writes to stdout (see the `outln!` and `out!` macros). A closed pipe
/// ends the process; other errors are dropped, as Docker's client drops
/// them.
pub fn write_stdout(args: std::fmt::Arguments) {
    let result = io::stdout().lock().write_fmt(args);
    end_if_broken_pipe(result);
}

/// Writes a message to stderr (the `errln!` and `errout!` macros),
/// likewise, with overlong names cut (see [`cut_long_words`]).
pub fn write_stderr(args: std::fmt::Arguments) {
    let text = cut_long_words(&args.to_string());
    let result = io::stderr().lock().write_all(text.as_bytes());
    end_if_broken_pipe(result);
}

/// Ends the process if `result` failed on a closed pipe.
pub fn end_if_broken_pipe<T>(result: io::Result<T>) {
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::BrokenPipe {
            die_of_sigpipe();
        }
    }
}

/// Ends the process if `e` was caused by writing to a closed pipe and
/// stdout or stderr is one: the library reports such a write as an
/// error, the command ends as Docker's client would have.
pub fn end_if_output_closed(e: &anyhow::Error) {
    let broken_pipe = e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe && (is_closed_pipe(io::stdout()) || is_closed_pipe(io::stderr())) {
        die_of_sigpipe();
    }
}

/// Whether the reading end of the pipe (or socket) behind `fd` is gone.
fn is_closed_pipe(fd: impl std::os::fd::AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// The longest word an error line shows whole; longer ones (a path of a
/// megabyte from a hostile layer or config) keep their start and end.
const LONGEST_WORD: usize = 240;

/// Cuts every overlong run of non-blank characters in `line` to its first
/// and last characters, saying how long it was.
pub fn cut_long_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len().min(4096));
    let mut rest = line;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        out.push_str(&cut_word(word));
        let blank_end = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..blank_end]);
        rest = &tail[blank_end..];
    }
    out
}

fn cut_word(word: &str) -> std::borrow::Cow<'_, str> {
    let count = word.chars().count();
    if count <= LONGEST_WORD {
        return word.into();
    }
    let head: String = word.chars().take(LONGEST_WORD - 40).collect();
    let tail: String = word.chars().skip(count - 20).collect();
    format!("{head}…{tail} ({} bytes)", word.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_are_cut() {
        let long = "a".repeat(1_000_000);
        let line = cut_long_words(&format!("Error: invalid path \"{long}\": too long"));
        assert!(line.len() < 400, "{}", line.len());
        assert!(line.starts_with("Error: invalid path \"aaa"));
        assert!(line.ends_with("aa\": (1000003 bytes) too long"), "{line}");
        let short = "short words  stay\tas they are";
        assert_eq!(cut_long_words(short), short);
    }
}
