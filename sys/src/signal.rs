//! Termination signals (SIGTERM, SIGINT) as a descriptor that becomes
//! readable when one comes, for servers that stop gracefully, and waiting
//! until one of several descriptors is readable.

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// SIGTERM and SIGINT, caught: each writes a byte to a pipe whose read end
/// this holds. The process no longer ends on them; its owner decides.
pub struct Termination {
    read: OwnedFd,
}

impl Termination {
    /// Catches SIGTERM and SIGINT from now on, for the whole process.
    /// Catching again replaces the earlier catch (whose descriptor then
    /// never becomes readable again).
    pub fn catch() -> io::Result<Termination> {
        use rustix::pipe::PipeFlags;
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        crate::sys::report_termination(write)?;
        Ok(Termination { read })
    }

    /// How many signals came since the last call, without waiting.
    pub fn take(&self) -> usize {
        let mut buf = [0u8; 64];
        let mut n = 0;
        loop {
            match rustix::io::read(&self.read, &mut buf) {
                Ok(0) => return n,
                Ok(got) => n += got,
                Err(Errno::INTR) => continue,
                Err(_) => return n,
            }
        }
    }
}

impl AsFd for Termination {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and the threads it
/// starts afterwards: a caught signal is then handled by a thread that
/// waits for it, and never makes another thread's read or write fail with
/// EINTR (a socket with a timeout is not restarted after a handler).
pub fn block_termination_in_this_thread() -> io::Result<()> {
    crate::sys::block_termination()
}

/// Waits until one of `fds` is readable (or at its end, or in error), or
/// `timeout` passed; says which are. An interrupted wait says none is.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    let ts = timeout.map(|t| rustix::event::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: t.subsec_nanos().into(),
    });
    match rustix::event::poll(&mut polled, ts.as_ref()) {
        Ok(_) => {}
        Err(Errno::INTR) => return Ok(vec![false; fds.len()]),
        Err(e) => return Err(e.into()),
    }
    let ready = PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
    Ok(polled.iter().map(|p| p.revents().intersects(ready)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_termination_signal_becomes_a_readable_descriptor() {
        let t = Termination::catch().unwrap();
        assert_eq!(t.take(), 0);
        assert_eq!(wait_readable(&[t.as_fd()], Some(Duration::from_millis(10))).unwrap(), [false]);
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM).unwrap();
        assert_eq!(wait_readable(&[t.as_fd()], Some(Duration::from_secs(10))).unwrap(), [true]);
        assert_eq!(t.take(), 1, "the process is still here, and saw one signal");
        assert_eq!(t.take(), 0);
    }
}
