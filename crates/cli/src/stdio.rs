//! Printing that survives a closed pipe.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`shipit deploy --dry-run |
//! head -3`): Rust ignores SIGPIPE, so the write fails with EPIPE and the macro panics (exit
//! 101). `main.rs` shadows `println!`, `print!` and `eprintln!` with macros that call these
//! functions instead: a stream that failed once is marked closed and everything after it is
//! dropped quietly, while the command goes on — a deploy is never cut short because nobody reads
//! its output — and ends with its own exit code.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` (and a newline when `newline`) to stdout, unless stdout has failed before.
pub fn out(args: Arguments<'_>, newline: bool) {
    write_to(&mut std::io::stdout().lock(), &STDOUT_CLOSED, args, newline);
}

/// The same on stderr.
pub fn err(args: Arguments<'_>, newline: bool) {
    write_to(&mut std::io::stderr().lock(), &STDERR_CLOSED, args, newline);
}

fn write_to(w: &mut dyn Write, closed: &AtomicBool, args: Arguments<'_>, newline: bool) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let written = w.write_fmt(args).and_then(|()| if newline { w.write_all(b"\n") } else { Ok(()) });
    if written.and_then(|()| w.flush()).is_err() {
        // EPIPE, or any other failure to write: nothing after it could be read either.
        closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone.
    struct Gone(usize);

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.0 += 1;
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_closes_the_stream_quietly() {
        let closed = AtomicBool::new(false);
        let mut w = Gone(0);
        write_to(&mut w, &closed, format_args!("first"), true);
        assert!(closed.load(Ordering::Relaxed));
        write_to(&mut w, &closed, format_args!("second"), true);
        assert_eq!(w.0, 1, "nothing is written after the failure");
    }

    #[test]
    fn lines_reach_a_working_stream() {
        let closed = AtomicBool::new(false);
        let mut buf = Vec::new();
        write_to(&mut buf, &closed, format_args!("a {}", 1), true);
        write_to(&mut buf, &closed, format_args!("b"), false);
        assert_eq!(buf, b"a 1\nb");
        assert!(!closed.load(Ordering::Relaxed));
    }
}
