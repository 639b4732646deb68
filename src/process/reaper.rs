//! The shared reaper: one thread that reaps the children whose loop went away before they
//! exited (see the module comment of [`super`]).
//!
//! It waits with `poll(2)` on their pidfds and on a wake-up socket through which
//! [`hand_off`] passes new children, reaps each child whose pidfd turns readable
//! (`waitpid(pid, WNOHANG)`, whose status nobody is left to read) and closes its pidfd.
//! It is started on the first hand-off and exits once no child is left; a process forked
//! from one with a reaper starts its own (threads do not survive `fork`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};

/// The running reaper: where to put new children and how to wake it.
struct Reaper {
    /// The process that started the thread (a forked child has no such thread).
    owner_pid: libc::pid_t,
    pending: Vec<(libc::pid_t, OwnedFd)>,
    wake: UnixStream,
}

static REAPER: Mutex<Option<Reaper>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Reaper>> {
    // Poisoned only by a panic while held, which only moves values: the state is sound.
    REAPER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes sure child `pid` is reaped and `pidfd` closed, now if it already exited, else by
/// the reaper thread once it does.
pub(super) fn hand_off(pid: libc::pid_t, pidfd: OwnedFd) {
    // Exited already, or reaped elsewhere (ECHILD): nothing to wait for.
    if !matches!(crate::sys::waitpid_nohang(pid), Ok(None)) {
        return;
    }
    let mut guard = lock();
    let me = crate::sys::getpid();
    if let Some(r) = guard.as_mut().filter(|r| r.owner_pid == me) {
        r.pending.push((pid, pidfd));
        // A full socket means a wake-up is pending already.
        let _ = r.wake.write(&[1]);
        return;
    }
    let Ok((read, write)) = UnixStream::pair() else {
        return;
    };
    if read.set_nonblocking(true).is_err() || write.set_nonblocking(true).is_err() {
        return;
    }
    let started = std::thread::Builder::new()
        .name("ferroloop-reaper".into())
        .spawn(move || run(read));
    if started.is_err() {
        // No thread: the child stays a zombie until the process exits, as it would if
        // nobody watched it; the pidfd at least is closed.
        return;
    }
    *guard = Some(Reaper {
        owner_pid: me,
        pending: vec![(pid, pidfd)],
        wake: write,
    });
}

/// The reaper thread.
fn run(mut wake: UnixStream) {
    let mut children: Vec<(libc::pid_t, OwnedFd)> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        {
            let mut guard = lock();
            if let Some(r) = guard.as_mut() {
                children.append(&mut r.pending);
            }
            if children.is_empty() {
                // Nothing left: stop, so that the next hand-off starts a new thread.
                *guard = None;
                return;
            }
        }
        fds.clear();
        fds.push(libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        fds.extend(children.iter().map(|(_, fd)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        if crate::sys::poll(&mut fds, -1).is_err() {
            // EINTR; anything else would repeat forever, so also retry after a pause.
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 64];
            while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
        }
        let ready: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        children.retain(|(pid, _)| {
            let keep = !ready[i] || matches!(crate::sys::waitpid_nohang(*pid), Ok(None));
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// A child handed off while running is reaped once it exits, and no thread is left.
    #[test]
    fn reaps_a_child_handed_off_while_running() {
        let child = Command::new("sleep").arg("0.2").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let pidfd = crate::sys::pidfd_open(pid).unwrap();
        hand_off(pid, pidfd);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Reaped by the reaper: our own waitpid then finds no such child.
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let gone = lock().is_none();
            if gone {
                break;
            }
            assert!(Instant::now() < deadline, "reaper still running");
        }
        let e = crate::sys::waitpid_nohang(pid).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECHILD));
        std::mem::forget(child);
    }
}
