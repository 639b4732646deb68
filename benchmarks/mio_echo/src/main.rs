//! Echo floor and load generator for `benchmarks/net.py`.
//!
//! ```text
//! mio_echo server (--tcp HOST:PORT | --unix PATH | --udp HOST:PORT)
//! mio_echo client (--tcp HOST:PORT | --unix PATH | --udp HOST:PORT) [--conns C]
//!                 [--size S] [--warmup SECS] [--duration SECS]
//! ```
//!
//! With `--udp` the server answers each datagram with the same datagram to its
//! sender (`recvfrom` + `sendto`, up to 64 per readable event), and the client
//! uses C UDP sockets, each connected to the server, each with one datagram in
//! flight: it sends a datagram of S bytes carrying its sequence number and
//! waits for the echo, which must match exactly; a datagram lost on the way
//! (the kernel drops rather than blocks) is sent again after 100 ms (counted as
//! `resent`), and a late echo of an earlier one is ignored (`stale`).
//!
//! `server` is the floor the Python loops are compared with: one thread, one
//! mio `Poll` (epoll, edge-triggered), each readable event answered with one
//! `read` into a 256 KiB buffer (asyncio's read size) and one `write` of what
//! was read, queuing only what the kernel would not take.  A short read ends
//! the read loop without the extra `read` that would return `EAGAIN` (the
//! edge fires again when new data arrives; tokio relies on the same), so in
//! steady state it costs one `epoll_wait` per batch of ready sockets plus one
//! `read` and one `write` per message: what a loop in any language has to do.
//! It prints `READY tcp HOST:PORT` or `READY unix PATH` once listening and
//! runs until killed.
//!
//! `client` is the fixed load generator used for every server: C connections,
//! each sending one S-byte message and waiting for all S bytes to come back
//! before sending the next (ping-pong, as uvloop's echo client does), every
//! echoed byte compared with what was sent (each message carries its sequence
//! number, so a stale or reordered echo fails the run).  After `--warmup`
//! seconds it counts the round trips completed during `--duration` seconds and
//! prints one JSON line, including its own CPU time over that window: a
//! `client_cpu` well below 1.0 while the server is at ~1.0 shows the client is
//! not the bottleneck.

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const READ_BUF: usize = 256 * 1024;
const LISTENER: Token = Token(usize::MAX);

enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Udp(SocketAddr),
}

struct Args {
    addr: Addr,
    conns: usize,
    size: usize,
    warmup: f64,
    duration: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: mio_echo server (--tcp HOST:PORT | --unix PATH)\n       \
         mio_echo client (--tcp HOST:PORT | --unix PATH) [--conns C] [--size S] \
         [--warmup SECS] [--duration SECS]"
    );
    std::process::exit(2)
}

fn parse_args(it: impl Iterator<Item = String>) -> Args {
    let mut addr = None;
    let mut a = Args {
        addr: Addr::Unix(PathBuf::new()),
        conns: 10,
        size: 1024,
        warmup: 0.5,
        duration: 2.0,
    };
    let mut it = it.peekable();
    while let Some(flag) = it.next() {
        let val = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--tcp" => addr = Some(Addr::Tcp(val.parse().unwrap_or_else(|_| usage()))),
            "--unix" => addr = Some(Addr::Unix(PathBuf::from(val))),
            "--udp" => addr = Some(Addr::Udp(val.parse().unwrap_or_else(|_| usage()))),
            "--conns" => a.conns = val.parse().unwrap_or_else(|_| usage()),
            "--size" => a.size = val.parse().unwrap_or_else(|_| usage()),
            "--warmup" => a.warmup = val.parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = val.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a.addr = addr.unwrap_or_else(|| usage());
    if a.conns == 0 || a.size == 0 {
        usage()
    }
    a
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct, RUSAGE_SELF is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        r => r,
    }
}

// ---------------------------------------------------------------------------
// server
// ---------------------------------------------------------------------------

trait Listen: Source {
    type S: Read + Write + Source;
    fn accept_one(&self) -> io::Result<Self::S>;
}

impl Listen for TcpListener {
    type S = TcpStream;
    fn accept_one(&self) -> io::Result<TcpStream> {
        let (s, _) = self.accept()?;
        s.set_nodelay(true)?; // asyncio's default
        Ok(s)
    }
}

impl Listen for UnixListener {
    type S = UnixStream;
    fn accept_one(&self) -> io::Result<UnixStream> {
        Ok(self.accept()?.0)
    }
}

struct Conn<S> {
    s: S,
    pending: Vec<u8>,
    off: usize,
}

impl<S: Read + Write> Conn<S> {
    /// Write `data` now if nothing is queued, queue what the kernel refuses.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if self.off < self.pending.len() {
            self.pending.extend_from_slice(data);
            return Ok(());
        }
        let mut off = 0;
        while off < data.len() {
            match self.s.write(&data[off..]) {
                Ok(k) => off += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.off = 0;
        self.pending.extend_from_slice(&data[off..]);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.off < self.pending.len() {
            match self.s.write(&self.pending[self.off..]) {
                Ok(k) => self.off += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.off = 0;
        Ok(())
    }

    /// Returns Ok(false) when the peer closed.
    fn on_event(&mut self, readable: bool, writable: bool, buf: &mut [u8]) -> io::Result<bool> {
        if writable {
            self.flush()?;
        }
        if readable {
            loop {
                match self.s.read(buf) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        self.send(&buf[..n])?;
                        if n < buf.len() {
                            break; // short read: drained (the next arrival re-arms the edge)
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }
}

fn serve<L: Listen>(mut l: L) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    poll.registry()
        .register(&mut l, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn<L::S>>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        poll_once(&mut poll, &mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match l.accept_one() {
                        Ok(mut s) => {
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry().register(
                                &mut s,
                                Token(idx),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            conns[idx] = Some(Conn {
                                s,
                                pending: Vec::new(),
                                off: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let idx = ev.token().0;
            let keep = match conns.get_mut(idx).and_then(Option::as_mut) {
                Some(c) => c
                    .on_event(
                        ev.is_readable() || ev.is_read_closed(),
                        ev.is_writable(),
                        &mut buf,
                    )
                    .unwrap_or(false),
                None => continue,
            };
            if !keep {
                if let Some(mut c) = conns[idx].take() {
                    let _ = poll.registry().deregister(&mut c.s);
                }
                free.push(idx);
            }
        }
    }
}

fn run_server(addr: Addr) -> io::Result<()> {
    match addr {
        Addr::Tcp(sa) => {
            let l = TcpListener::bind(sa)?;
            println!("READY tcp {}", l.local_addr()?);
            serve(l)
        }
        Addr::Unix(p) => {
            let _ = std::fs::remove_file(&p);
            let l = UnixListener::bind(&p)?;
            println!("READY unix {}", p.display());
            serve(l)
        }
        Addr::Udp(sa) => serve_udp(sa),
    }
}

fn serve_udp(sa: SocketAddr) -> io::Result<()> {
    let mut s = UdpSocket::bind(sa)?;
    println!("READY udp {}", s.local_addr()?);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    poll.registry().register(&mut s, LISTENER, Interest::READABLE)?;
    let mut buf = vec![0u8; READ_BUF];
    loop {
        poll_once(&mut poll, &mut events, None)?;
        // Edge-triggered: read until EAGAIN.
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => match s.send_to(&buf[..n], from) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {} // dropped, as UDP may
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => eprintln!("send_to: {e}"),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => eprintln!("recv_from: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// UDP client
// ---------------------------------------------------------------------------

const UDP_RESEND: Duration = Duration::from_millis(100);

struct UConn {
    s: UdpSocket,
    msg: Vec<u8>,
    seq: u64,
    sent_at: Instant,
}

impl UConn {
    fn send(&mut self) -> io::Result<()> {
        let tag = self.seq.to_le_bytes();
        let k = tag.len().min(self.msg.len());
        self.msg[..k].copy_from_slice(&tag[..k]);
        self.sent_at = Instant::now();
        match self.s.send(&self.msg) {
            Ok(_) => Ok(()),
            // Lost: sent again after UDP_RESEND.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn run_udp_client(sa: SocketAddr, a: &Args) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let local: SocketAddr = if sa.is_ipv6() {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let mut conns = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let s = UdpSocket::bind(local)?;
        s.connect(sa)?;
        let msg = (0..a.size).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect();
        conns.push(UConn {
            s,
            msg,
            seq: 0,
            sent_at: Instant::now(),
        });
    }
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.s, Token(i), Interest::READABLE)?;
        c.send()?;
    }
    let mut buf = vec![0u8; READ_BUF];
    let (mut count, mut resent, mut stale) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let t_warm = start + Duration::from_secs_f64(a.warmup);
    let t_end = t_warm + Duration::from_secs_f64(a.duration);
    let mut window: Option<(Instant, f64, u64)> = None;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= t_warm {
            window = Some((now, cpu_seconds(), count));
        }
        if now >= t_end {
            break;
        }
        let until = if window.is_none() { t_warm } else { t_end };
        poll_once(&mut poll, &mut events, Some((until - now).min(UDP_RESEND)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                match c.s.recv(&mut buf) {
                    Ok(n) => {
                        if buf[..n] == c.msg[..] {
                            count += 1;
                            c.seq += 1;
                            c.send()?;
                        } else if n == c.msg.len() && buf[8.min(n)..n] == c.msg[8.min(n)..] {
                            stale += 1;
                        } else {
                            return Err(io::Error::other("echoed datagram differs from the sent one"));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let now = Instant::now();
        for c in conns.iter_mut() {
            if now.duration_since(c.sent_at) >= UDP_RESEND {
                resent += 1;
                c.send()?;
            }
        }
    }
    let (w0, cpu0, n0) = window.expect("window opened before the end");
    let secs = w0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let msgs = count - n0;
    Ok(format!(
        "{{\"msgs\": {msgs}, \"secs\": {secs:.6}, \"msgs_per_s\": {:.1}, \
         \"mib_per_s\": {:.2}, \"client_cpu\": {:.3}, \"conns\": {}, \"size\": {}, \
         \"resent\": {resent}, \"stale\": {stale}}}",
        msgs as f64 / secs,
        msgs as f64 * a.size as f64 / secs / (1024.0 * 1024.0),
        cpu / secs,
        a.conns,
        a.size
    ))
}

// ---------------------------------------------------------------------------
// client
// ---------------------------------------------------------------------------

struct CConn<S> {
    s: S,
    msg: Vec<u8>,
    sent: usize,
    recvd: usize,
    seq: u64,
}

impl<S: Read + Write> CConn<S> {
    fn new(s: S, size: usize, id: usize) -> Self {
        // A pattern that differs per connection and per position.
        let msg = (0..size).map(|i| (i.wrapping_mul(31) ^ id) as u8).collect();
        CConn {
            s,
            msg,
            sent: 0,
            recvd: 0,
            seq: 0,
        }
    }

    fn write_some(&mut self) -> io::Result<()> {
        while self.sent < self.msg.len() {
            match self.s.write(&self.msg[self.sent..]) {
                Ok(k) => self.sent += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is there; returns the number of completed round trips.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let mut done = 0;
        loop {
            match self.s.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed"));
                }
                Ok(n) => {
                    if self.recvd + n > self.sent {
                        return Err(io::Error::other("server echoed more than was sent"));
                    }
                    if buf[..n] != self.msg[self.recvd..self.recvd + n] {
                        return Err(io::Error::other("echoed bytes differ from the sent ones"));
                    }
                    self.recvd += n;
                    if self.recvd == self.msg.len() {
                        done += 1;
                        self.seq += 1;
                        let tag = self.seq.to_le_bytes();
                        let k = tag.len().min(self.msg.len());
                        self.msg[..k].copy_from_slice(&tag[..k]);
                        self.sent = 0;
                        self.recvd = 0;
                        self.write_some()?;
                    }
                    if n < buf.len() {
                        return Ok(done);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn drive<S: Read + Write + Source>(mut conns: Vec<CConn<S>>, a: &Args) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        c.write_some()?;
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut count: u64 = 0;
    let start = Instant::now();
    let t_warm = start + Duration::from_secs_f64(a.warmup);
    let t_end = t_warm + Duration::from_secs_f64(a.duration);
    let mut window: Option<(Instant, f64, u64)> = None;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= t_warm {
            window = Some((now, cpu_seconds(), count));
        }
        if now >= t_end {
            break;
        }
        let until = if window.is_none() { t_warm } else { t_end };
        poll_once(&mut poll, &mut events, Some(until - now))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                c.write_some()?;
            }
            if ev.is_readable() || ev.is_read_closed() {
                count += c.read_some(&mut buf)?;
            }
        }
    }
    let (w0, cpu0, n0) = window.expect("window opened before the end");
    let secs = w0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let msgs = count - n0;
    Ok(format!(
        "{{\"msgs\": {msgs}, \"secs\": {secs:.6}, \"msgs_per_s\": {:.1}, \
         \"mib_per_s\": {:.2}, \"client_cpu\": {:.3}, \"conns\": {}, \"size\": {}}}",
        msgs as f64 / secs,
        msgs as f64 * a.size as f64 / secs / (1024.0 * 1024.0),
        cpu / secs,
        a.conns,
        a.size
    ))
}

fn run_client(a: &Args) -> io::Result<String> {
    match &a.addr {
        Addr::Udp(sa) => run_udp_client(*sa, a),
        Addr::Tcp(sa) => {
            let mut v = Vec::with_capacity(a.conns);
            for i in 0..a.conns {
                let s = std::net::TcpStream::connect(sa)?;
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                v.push(CConn::new(TcpStream::from_std(s), a.size, i));
            }
            drive(v, a)
        }
        Addr::Unix(p) => {
            let mut v = Vec::with_capacity(a.conns);
            for i in 0..a.conns {
                let s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_nonblocking(true)?;
                v.push(CConn::new(UnixStream::from_std(s), a.size, i));
            }
            drive(v, a)
        }
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_else(|| usage());
    let a = parse_args(argv);
    let res = match cmd.as_str() {
        "server" => run_server(a.addr).map(|_| String::new()),
        "client" => run_client(&a),
        _ => usage(),
    };
    match res {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mio_echo {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
