//! Connection admission and per-connection deadlines: what keeps `/metrics`
//! answering while idle, trickling or hostile clients hold connections.
//!
//! The policy, in the spirit of nginx and Go's `net/http`:
//!
//! - **Per-address cap** ([`Limits::max_connections_per_ip`], default 8),
//!   counted at accept. IPv4 addresses count one by one, IPv6 addresses by
//!   their /64 (one host usually owns a whole /64). When an address is at its
//!   cap, its own oldest *waiting* connection (see below) is closed to make
//!   room; when all of its connections are being served, the new one is
//!   refused. Loopback is not exempt: because the cap evicts the address's
//!   own idle connections first, a Prometheus on the same host still gets
//!   in while a local process holds idle connections, and tests on
//!   127.0.0.1 see the production behaviour.
//! - **Global cap** ([`Limits::max_connections`]): when it is reached, the
//!   oldest waiting connection anywhere is closed to admit the new one.
//!   Refused only when every connection is being served.
//! - A connection is **waiting** from accept until the head of a request is
//!   complete (the TLS handshake included), and again from the moment a
//!   response has been written and flushed until the next request head is
//!   complete (keep-alive). A connection in the middle of a request (handler
//!   running or response being written) is **busy** and never evicted; an
//!   eviction that races with the start of a request becomes a graceful
//!   close after that response.
//! - **Deadlines**, fixed when a phase starts and never extended by
//!   traffic: the first byte within [`Limits::first_byte_timeout`] of
//!   accept (default 2 s); the complete request head, TLS handshake
//!   included, within [`Limits::header_read_timeout`] of accept (default
//!   5 s), so one byte a second buys nothing; on a kept-alive connection,
//!   the next request head within `header_read_timeout` of its first byte
//!   and that first byte within [`Limits::idle_timeout`]; a response within
//!   [`Limits::response_timeout`] of its request head.
//!
//! Memory is bounded: at most `max_connections` admitted connections plus
//! at most `max_connections` evicted ones still closing (an eviction that
//! raced with a request finishes that response); anything beyond is
//! refused at accept.
//!
//! [`Limits::max_connections_per_ip`]: super::Limits::max_connections_per_ip
//! [`Limits::max_connections`]: super::Limits::max_connections
//! [`Limits::first_byte_timeout`]: super::Limits::first_byte_timeout
//! [`Limits::header_read_timeout`]: super::Limits::header_read_timeout
//! [`Limits::idle_timeout`]: super::Limits::idle_timeout
//! [`Limits::response_timeout`]: super::Limits::response_timeout

pub use crate::conn_metrics::{HttpMetrics, LimitReason, Phase};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The unit the per-address cap counts: an IPv4 address, or the /64 of an
/// IPv6 one (IPv4-mapped IPv6 addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => ClientKey::V4(u32::from(a)),
            IpAddr::V6(a) => ClientKey::V6((u128::from(a) >> 64) as u64),
        }
    }
}

struct Entry {
    key: ClientKey,
    /// Position in `waiting` while waiting for a request head.
    waiting: Option<u64>,
    /// Evicted: no longer counted against the caps, closing.
    evicted: bool,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    next_seq: u64,
    entries: HashMap<u64, Entry>,
    /// Waiting connections by the time they started waiting (oldest first).
    waiting: BTreeMap<u64, u64>,
    /// Admitted, not evicted, connections per client.
    per_client: HashMap<ClientKey, Vec<u64>>,
    /// Admitted, not evicted, connections.
    active: usize,
}

impl Inner {
    fn evict(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.evicted {
            return;
        }
        e.evicted = true;
        if let Some(seq) = e.waiting.take() {
            self.waiting.remove(&seq);
        }
        e.evict.notify_one();
        let key = e.key;
        self.unlink(key, id);
    }

    fn unlink(&mut self, key: ClientKey, id: u64) {
        if let Some(v) = self.per_client.get_mut(&key) {
            v.retain(|&x| x != id);
            if v.is_empty() {
                self.per_client.remove(&key);
            }
        }
        self.active = self.active.saturating_sub(1);
    }
}

/// Every connection the server holds: the caps and the eviction order.
pub struct ConnTable {
    max: usize,
    per_client: usize,
    metrics: HttpMetrics,
    inner: Mutex<Inner>,
}

/// An admitted connection; dropping it releases its place.
pub struct Admitted {
    /// The connection's shared state (for [`GuardedIo`] and the service).
    pub conn: Arc<ConnState>,
    /// Set when an older connection was evicted to make room.
    pub evicted: Option<LimitReason>,
}

impl ConnTable {
    /// A table for at most `max` connections, `per_client` per client
    /// address (both at least 1).
    pub fn new(max: usize, per_client: usize, metrics: HttpMetrics) -> Arc<Self> {
        Arc::new(ConnTable {
            max: max.max(1),
            per_client: per_client.max(1),
            metrics,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent counts (every
        // update is a few field writes); keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `ip`, evicting a waiting one if a cap is
    /// reached; `Err` if it must be refused. Counts the outcome.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
        limits: &super::Limits,
    ) -> Result<Admitted, LimitReason> {
        let key = ClientKey::from(ip);
        let mut g = self.lock();
        // Hard bound: admitted plus evicted-but-still-closing.
        if g.entries.len() >= 2 * self.max {
            drop(g);
            self.refused(LimitReason::Global);
            return Err(LimitReason::Global);
        }
        let mut evicted = None;
        let mine = g.per_client.get(&key).map_or(0, Vec::len);
        if mine >= self.per_client {
            // This client's own oldest waiting connection.
            let victim = g.per_client.get(&key).and_then(|ids| {
                ids.iter()
                    .filter_map(|id| g.entries.get(id).and_then(|e| e.waiting.map(|s| (s, *id))))
                    .min()
                    .map(|(_, id)| id)
            });
            match victim {
                Some(id) => {
                    g.evict(id);
                    evicted = Some(LimitReason::PerIp);
                }
                None => {
                    drop(g);
                    self.refused(LimitReason::PerIp);
                    return Err(LimitReason::PerIp);
                }
            }
        }
        if g.active >= self.max {
            match g.waiting.first_key_value().map(|(_, &id)| id) {
                Some(id) => {
                    g.evict(id);
                    evicted = Some(LimitReason::Global);
                }
                None => {
                    drop(g);
                    self.refused(LimitReason::Global);
                    return Err(LimitReason::Global);
                }
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        let seq = g.next_seq;
        g.next_seq += 1;
        let evict = Arc::new(Notify::new());
        g.entries.insert(
            id,
            Entry {
                key,
                waiting: Some(seq),
                evicted: false,
                evict: evict.clone(),
            },
        );
        g.waiting.insert(seq, id);
        g.per_client.entry(key).or_default().push(id);
        g.active += 1;
        let open = g.entries.len();
        drop(g);
        self.metrics.accepted.inc();
        self.metrics.open.set(open as i64);
        if let Some(r) = evicted {
            self.metrics.evicted.with_label_values(&[r.label()]).inc();
        }
        Ok(Admitted {
            conn: Arc::new(ConnState {
                id,
                table: self.clone(),
                evict,
                changed: Notify::new(),
                limits: Deadlines::from(limits),
                st: Mutex::new(Timing {
                    accepted: now,
                    requests: 0,
                    busy: false,
                    response_done: false,
                    phase_start: now,
                    first_byte_at: None,
                    read_while_busy: false,
                }),
            }),
            evicted,
        })
    }

    fn refused(&self, r: LimitReason) {
        self.metrics.rejected.with_label_values(&[r.label()]).inc();
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(e) = g.entries.get_mut(&id) else {
            return;
        };
        if e.evicted {
            return;
        }
        match (waiting, e.waiting) {
            (true, None) => {
                let seq = g.next_seq;
                g.next_seq += 1;
                e.waiting = Some(seq);
                g.waiting.insert(seq, id);
            }
            (false, Some(seq)) => {
                e.waiting = None;
                g.waiting.remove(&seq);
            }
            _ => {}
        }
    }

    fn remove(&self, id: u64) {
        let mut g = self.lock();
        let Some(e) = g.entries.remove(&id) else {
            return;
        };
        if let Some(seq) = e.waiting {
            g.waiting.remove(&seq);
        }
        if !e.evicted {
            g.unlink(e.key, id);
        }
        let open = g.entries.len();
        drop(g);
        self.metrics.open.set(open as i64);
    }

    /// Connections held now (admitted plus evicted ones still closing).
    pub fn open(&self) -> usize {
        self.lock().entries.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Deadlines {
    first_byte: Duration,
    header: Duration,
    idle: Duration,
    response: Duration,
}

impl From<&super::Limits> for Deadlines {
    fn from(l: &super::Limits) -> Self {
        Deadlines {
            first_byte: l.first_byte_timeout,
            header: l.header_read_timeout,
            idle: l.idle_timeout,
            response: l.response_timeout,
        }
    }
}

#[derive(Debug)]
struct Timing {
    accepted: Instant,
    /// Requests whose head was complete.
    requests: u64,
    /// A request is being handled or its response written.
    busy: bool,
    /// The response body has been handed to hyper; busy ends at the next
    /// completed flush.
    response_done: bool,
    /// When the current phase (busy, or waiting for the next head) began.
    phase_start: Instant,
    /// First byte of the request head being waited for.
    first_byte_at: Option<Instant>,
    read_while_busy: bool,
}

/// One connection's state, shared by its task, its I/O wrapper and the
/// request handler.
pub struct ConnState {
    id: u64,
    table: Arc<ConnTable>,
    evict: Arc<Notify>,
    changed: Notify,
    limits: Deadlines,
    st: Mutex<Timing>,
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

impl ConnState {
    fn lock(&self) -> MutexGuard<'_, Timing> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when this connection has been chosen for eviction.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Resolves when the connection went back to waiting (deadlines moved).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Busy (a request in progress), never to be cut by eviction.
    pub fn busy(&self) -> bool {
        self.lock().busy
    }

    /// When the connection was accepted.
    pub fn accepted_at(&self) -> Instant {
        self.lock().accepted
    }

    /// The next deadline and what it guards, from the current state.
    pub fn deadline(&self) -> (Instant, Phase) {
        let t = self.lock();
        let d = &self.limits;
        if t.busy {
            return (t.phase_start + d.response, Phase::Response);
        }
        match (t.requests, t.first_byte_at) {
            (0, None) if d.first_byte < d.header => (t.accepted + d.first_byte, Phase::FirstByte),
            (0, _) => (t.accepted + d.header, Phase::RequestHead),
            (_, None) => (t.phase_start + d.idle, Phase::Idle),
            (_, Some(first)) => (first + d.header, Phase::RequestHead),
        }
    }

    /// A request head is complete and its handler starts.
    pub fn request_started(&self) {
        {
            let mut t = self.lock();
            t.busy = true;
            t.requests += 1;
            t.response_done = false;
            t.read_while_busy = false;
            t.phase_start = Instant::now();
            t.first_byte_at = None;
        }
        self.table.set_waiting(self.id, false);
    }

    fn response_handed_over(&self) {
        self.lock().response_done = true;
    }

    fn on_read(&self) {
        let mut t = self.lock();
        if t.busy {
            t.read_while_busy = true;
        } else if t.first_byte_at.is_none() {
            t.first_byte_at = Some(Instant::now());
            drop(t);
            // The deadline moved (on a kept-alive connection, from the idle
            // timeout to the head deadline).
            self.changed.notify_one();
        }
    }

    fn on_flushed(&self) {
        {
            let mut t = self.lock();
            if !(t.busy && t.response_done) {
                return;
            }
            let now = Instant::now();
            t.busy = false;
            t.response_done = false;
            t.phase_start = now;
            // Bytes that came in during the response may be the start of
            // the next request: its head deadline runs from now.
            t.first_byte_at = t.read_while_busy.then_some(now);
            t.read_while_busy = false;
        }
        self.table.set_waiting(self.id, true);
        self.changed.notify_one();
    }
}

/// The connection's TCP stream, reporting reads and completed flushes to
/// its [`ConnState`].
pub struct GuardedIo {
    inner: TcpStream,
    conn: Arc<ConnState>,
}

impl GuardedIo {
    /// Wrap `inner`.
    pub fn new(inner: TcpStream, conn: Arc<ConnState>) -> Self {
        GuardedIo { inner, conn }
    }

    /// Peek at incoming bytes without consuming them (counts as a read).
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.peek(buf).await?;
        if n > 0 {
            self.conn.on_read();
        }
        Ok(n)
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        r
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        // hyper (and rustls above us) flush the inner stream only once
        // everything buffered has been written to it.
        if matches!(r, Poll::Ready(Ok(()))) {
            self.conn.on_flushed();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that tells the connection when hyper has taken all of
/// it (busy then ends at the next completed flush).
pub struct TrackedBody {
    inner: http_body_util::Full<Bytes>,
    conn: Arc<ConnState>,
}

impl TrackedBody {
    /// Wrap `inner` for `conn`.
    pub fn new(inner: http_body_util::Full<Bytes>, conn: Arc<ConnState>) -> Self {
        TrackedBody { inner, conn }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.conn.response_handed_over();
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limits() -> super::super::Limits {
        super::super::Limits::default()
    }

    fn table(max: usize, per: usize) -> Arc<ConnTable> {
        ConnTable::new(max, per, HttpMetrics::new().expect("metrics"))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn client_keys() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(ClientKey::from(mapped), ClientKey::from(ip(1)));
        assert_eq!(
            ClientKey::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ClientKey::V6(0)
        );
    }

    #[test]
    fn global_cap_evicts_oldest_waiting_and_never_busy() {
        let t = table(3, 8);
        let now = Instant::now();
        let l = limits();
        let a = t.admit(ip(1), now, &l).expect("a");
        let b = t.admit(ip(2), now, &l).expect("b");
        let c = t.admit(ip(3), now, &l).expect("c");
        a.conn.request_started();
        // a is busy: b is the oldest waiting one.
        let d = t.admit(ip(4), now, &l).expect("d");
        assert_eq!(d.evicted, Some(LimitReason::Global));
        assert_eq!(t.open(), 4, "b still closing");
        drop(b);
        assert_eq!(t.open(), 3);
        c.conn.request_started();
        d.conn.request_started();
        // All busy: refused.
        assert_eq!(t.admit(ip(5), now, &l).err(), Some(LimitReason::Global));
        // a's response is flushed: waiting again, evictable.
        a.conn.response_handed_over();
        a.conn.on_flushed();
        assert_eq!(
            t.admit(ip(5), now, &l).expect("e").evicted,
            Some(LimitReason::Global)
        );
        drop((a, c, d));
    }

    #[test]
    fn per_client_cap_evicts_own_waiting_first() {
        let t = table(100, 2);
        let now = Instant::now();
        let l = limits();
        let other = t.admit(ip(9), now, &l).expect("other");
        let a = t.admit(ip(1), now, &l).expect("a");
        let b = t.admit(ip(1), now, &l).expect("b");
        let c = t.admit(ip(1), now, &l).expect("c");
        assert_eq!(c.evicted, Some(LimitReason::PerIp));
        b.conn.request_started();
        c.conn.request_started();
        assert_eq!(t.admit(ip(1), now, &l).err(), Some(LimitReason::PerIp));
        // The other client is untouched.
        assert!(!other.conn.busy());
        assert!(t.admit(ip(9), now, &l).expect("other 2").evicted.is_none());
        drop((a, b, c, other));
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn hard_bound_counts_closing_connections() {
        let t = table(1, 1);
        let now = Instant::now();
        let l = limits();
        // Each new one evicts the previous, which never closes.
        let held = vec![
            t.admit(ip(1), now, &l).expect("first"),
            t.admit(ip(2), now, &l).expect("second"),
        ];
        assert_eq!(t.admit(ip(3), now, &l).err(), Some(LimitReason::Global));
        drop(held);
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn deadlines_are_fixed_from_accept() {
        let t = table(4, 4);
        let now = Instant::now();
        let l = limits();
        let a = t.admit(ip(1), now, &l).expect("a");
        assert_eq!(
            a.conn.deadline(),
            (now + l.first_byte_timeout, Phase::FirstByte)
        );
        a.conn.on_read();
        assert_eq!(
            a.conn.deadline(),
            (now + l.header_read_timeout, Phase::RequestHead)
        );
        // More bytes do not move it.
        a.conn.on_read();
        assert_eq!(a.conn.deadline().0, now + l.header_read_timeout);
        a.conn.request_started();
        assert_eq!(a.conn.deadline().1, Phase::Response);
        a.conn.on_flushed();
        assert_eq!(a.conn.deadline().1, Phase::Response, "body not handed over");
        a.conn.response_handed_over();
        a.conn.on_flushed();
        assert_eq!(a.conn.deadline().1, Phase::Idle);
    }
}
