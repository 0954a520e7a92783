//! The admission model of SCIM requests: what a request may hold, and when, before it runs.
//!
//! A client holds nothing shared until it has proved who it is:
//!
//! 1. **Connections.** A connection that has not yet carried an authenticated request counts
//!    against its client address (`--max-unauthenticated-connections-per-address`) and the
//!    server (`--max-unauthenticated-connections`); past either, it is closed at once. A
//!    `--trusted-proxies` peer carries many clients: its connections count in a pool of their
//!    own instead (`--max-unauthenticated-proxy-connections`), so neither side can take the
//!    other's. Its head is bounded in bytes (hyper's buffer) and time
//!    (`--header-read-timeout`).
//! 2. **Authentication, from the headers**, before any body is read or any slot is taken. A
//!    request without a valid credential is answered at once (401, the same for a directory
//!    that exists and one that does not); its failure is charged to token buckets of the
//!    directory named in the path and of the client address ([`FailureLimiter`]; behind a
//!    trusted proxy, the address it forwards, [`crate::proxy`]), and past
//!    them it is answered 429 after a delay. A valid credential is never refused for failures
//!    of others.
//! 3. **Public endpoints** (discovery documents, the OAuth token endpoint) take no slot: they
//!    are answered from memory and do not call the apiserver; the token endpoint reads its small
//!    body under the body deadline.
//! 4. **Bodies** of authorized writes reserve their bytes in a global and a per-directory
//!    budget ([`ByteBudget`]) and are read under the body deadline; past the budget the answer
//!    is 503 with Retry-After (Entra retries).
//! 5. **Slots, in two lanes**: requests the cache answers (lists, filters, searches) and
//!    requests that call the apiserver (writes, reads by id) each wait first in their
//!    directory's queue, then in the lane's server-wide queue ([`Lane`]). A read never waits
//!    for a slot a write holds, and no directory can take every slot of a lane.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;
use crate::proxy::TrustedProxies;

/// How a request is admitted, from its method and operation (`"GET /Users"`, as the
/// middleware classifies paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Discovery and the token endpoint: no credential needed up front, no slot.
    Public,
    /// Answered from the cache: lists, filters and searches.
    CacheRead,
    /// Calls the apiserver: writes, and reads of one resource (read from the store first).
    Apiserver,
}

/// The class of `operation` (`"<METHOD> <endpoint>"`).
pub fn class(method: &Method, operation: &str) -> Class {
    let endpoint = operation.split_once(' ').map_or("", |(_, e)| e);
    match (method, endpoint) {
        (
            &Method::GET,
            "/ServiceProviderConfig"
            | "/ResourceTypes"
            | "/ResourceTypes/{id}"
            | "/Schemas"
            | "/Schemas/{id}",
        ) => Class::Public,
        (_, "/oauth2/token") => Class::Public,
        (&Method::GET, "/Users" | "/Groups") => Class::CacheRead,
        (&Method::POST, "/.search" | "/Users/.search" | "/Groups/.search") => Class::CacheRead,
        _ => Class::Apiserver,
    }
}

/// Each directory's queue in one lane, made on its first request.
pub struct DirectorySlots {
    per_directory: usize,
    queues: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl DirectorySlots {
    /// Queues that let `per_directory` requests of one directory run at once.
    pub fn new(per_directory: usize) -> Self {
        DirectorySlots {
            per_directory: per_directory.max(1),
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// The queue of directory `key` (only directories the server knows get here: requests are
    /// authenticated first, so made-up names cannot grow the map).
    pub fn queue(&self, key: &str) -> Arc<Semaphore> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_directory)))
            .clone()
    }
}

/// One lane of slots: a queue per directory, then the server's.
pub struct Lane {
    server: Arc<Semaphore>,
    directories: DirectorySlots,
}

/// A request's slots in a lane, released when dropped.
pub struct Slots {
    _directory: OwnedSemaphorePermit,
    _server: OwnedSemaphorePermit,
}

impl Lane {
    /// `total` requests at once, `per_directory` of one directory.
    pub fn new(total: usize, per_directory: usize) -> Self {
        Lane {
            server: Arc::new(Semaphore::new(total.max(1))),
            directories: DirectorySlots::new(per_directory),
        }
    }

    /// Waits for a slot of `directory`, then one of the server's.
    pub async fn acquire(&self, directory: &str) -> Slots {
        let queue = self.directories.queue(directory);
        // The semaphores are never closed.
        let dir = queue.acquire_owned().await.expect("semaphore closed");
        let server = self
            .server
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore closed");
        Slots {
            _directory: dir,
            _server: server,
        }
    }
}

/// Bytes of request bodies buffered at once, globally and per directory, counted in KiB.
pub struct ByteBudget {
    global: Arc<Semaphore>,
    per_directory_kib: usize,
    directories: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Bytes reserved for one body, given back when dropped (after the request has run, so the
/// parsed copy of the body is covered too).
pub struct Reservation {
    _global: OwnedSemaphorePermit,
    _directory: OwnedSemaphorePermit,
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

impl ByteBudget {
    /// At most `global` bytes at once, `per_directory` of one directory.
    pub fn new(global: usize, per_directory: usize) -> Self {
        ByteBudget {
            global: Arc::new(Semaphore::new(kib(global))),
            per_directory_kib: kib(per_directory),
            directories: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves `bytes` for a body of `directory` now, or `None` when either budget is spent
    /// (the request is refused rather than queued: a queue of bodies is memory too).
    pub fn try_reserve(&self, directory: &str, bytes: usize) -> Option<Reservation> {
        let n = u32::try_from(kib(bytes)).ok()?;
        let dir = {
            let mut d = self.directories.lock().unwrap_or_else(|e| e.into_inner());
            d.entry(directory.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_directory_kib)))
                .clone()
        };
        let directory = dir.try_acquire_many_owned(n).ok()?;
        let global = self.global.clone().try_acquire_many_owned(n).ok()?;
        Some(Reservation {
            _global: global,
            _directory: directory,
        })
    }
}

/// Token buckets by key, refilled at one token per `interval` up to `burst`. Buckets that are
/// full again are forgotten, so the map holds only keys with recent failures (at most `cap`).
#[derive(Debug)]
pub struct TokenBuckets {
    burst: f64,
    interval: Duration,
    cap: usize,
    buckets: HashMap<String, (f64, Instant)>,
}

impl TokenBuckets {
    /// Buckets of `burst` tokens; `burst` 0 turns the limit off.
    pub fn new(burst: u32, interval: Duration, cap: usize) -> Self {
        TokenBuckets {
            burst: f64::from(burst),
            interval: interval.max(Duration::from_millis(1)),
            cap: cap.max(1),
            buckets: HashMap::new(),
        }
    }

    fn level(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let refill = now.saturating_duration_since(at).as_secs_f64() / self.interval.as_secs_f64();
        (tokens + refill).min(self.burst)
    }

    /// Takes a token of `key` at `now`; `Err(wait)` when there is none, `wait` being the time
    /// until the next one.
    pub fn take(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.burst <= 0.0 {
            return Ok(());
        }
        let level = match self.buckets.get(key) {
            Some(b) => self.level(*b, now),
            None => {
                if self.buckets.len() >= self.cap {
                    let burst = self.burst;
                    let full: Vec<String> = self
                        .buckets
                        .iter()
                        .filter(|(_, b)| self.level(**b, now) >= burst)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in full {
                        self.buckets.remove(&k);
                    }
                }
                if self.buckets.len() >= self.cap {
                    // Too many keys failing at once: every further failure is throttled
                    // (successes never pass through here).
                    return Err(self.interval);
                }
                self.burst
            }
        };
        if level >= 1.0 {
            self.buckets.insert(key.to_string(), (level - 1.0, now));
            Ok(())
        } else {
            self.buckets.insert(key.to_string(), (level, now));
            Err(self.interval.mul_f64(1.0 - level))
        }
    }
}

/// Which limit a failed authentication ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The client address's.
    Address,
    /// The directory's (named in the path, whether or not it exists).
    Directory,
}

impl Scope {
    /// As a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Address => "address",
            Scope::Directory => "directory",
        }
    }
}

/// Failed authentications, per client address and per directory path.
pub struct FailureLimiter {
    addresses: Mutex<TokenBuckets>,
    directories: Mutex<TokenBuckets>,
}

/// Keys of failing directories or addresses tracked at once.
const TRACKED_KEYS: usize = 10_000;

/// An address as the limits count it: IPv4 as is, IPv6 by its /64 (one subscriber's).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl FailureLimiter {
    /// `per_address` and `per_directory` failures in a burst, one more per `interval`.
    pub fn new(per_address: u32, per_directory: u32, interval: Duration) -> Self {
        FailureLimiter {
            addresses: Mutex::new(TokenBuckets::new(per_address, interval, TRACKED_KEYS)),
            directories: Mutex::new(TokenBuckets::new(per_directory, interval, TRACKED_KEYS)),
        }
    }

    /// Charges a failed authentication of `address` on directory path `directory`;
    /// `Err((scope, wait))` when it is past a limit. An address past its own limit does not
    /// drain the directory's, so one client cannot throttle the others' failures alone faster.
    pub fn failed(
        &self,
        directory: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), (Scope, Duration)> {
        if let Some(ip) = address {
            let mut a = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            a.take(&address_key(ip), now)
                .map_err(|w| (Scope::Address, w))?;
        }
        let mut d = self.directories.lock().unwrap_or_else(|e| e.into_inner());
        d.take(directory, now).map_err(|w| (Scope::Directory, w))
    }
}

/// Connections not yet authenticated: per client address and in all for direct clients, in a
/// pool of their own for trusted proxies.
pub struct UnauthenticatedConnections {
    per_address: usize,
    total: usize,
    proxies_total: usize,
    trusted: TrustedProxies,
    counts: Mutex<Counts>,
}

/// Where a connection is counted.
enum Pool {
    /// The trusted proxies' pool.
    Proxies,
    /// The direct clients' pool, under the client's [`address_key`].
    Direct(String),
}

#[derive(Default)]
struct Counts {
    direct: usize,
    proxied: usize,
    per_address: HashMap<String, usize>,
}

/// A connection counted as unauthenticated until [`ConnTicket::authenticated`] or its end.
pub struct ConnTicket {
    owner: Arc<UnauthenticatedConnections>,
    pool: Pool,
    /// The client's address.
    pub ip: IpAddr,
    counted: AtomicBool,
}

impl UnauthenticatedConnections {
    /// At most `per_address` per address and `total` in all (0: no limit).
    pub fn new(per_address: usize, total: usize) -> Arc<Self> {
        Self::with_trusted(per_address, total, 0, TrustedProxies::default())
    }

    /// As [`Self::new`] for direct clients; connections from `trusted` proxies count only in a
    /// pool of `proxies_total` (0: no limit). A proxy's connections carry many clients'
    /// requests, so a per-address share of them would let one client behind it (sending bad
    /// requests, which keep its upstream connections unauthenticated) get every other client's
    /// connections refused at the proxy's address; the proxy bounds its clients' connections
    /// itself. Their own pool bounds the server's memory and file descriptors, and keeps the
    /// two sides apart: direct clients from many addresses cannot fill the pool Entra's
    /// requests arrive through, and clients behind the proxy cannot fill the direct one. Once
    /// a connection carries an authenticated request (the proxy reuses its upstream
    /// connections for everyone's) it stops counting.
    pub fn with_trusted(
        per_address: usize,
        total: usize,
        proxies_total: usize,
        trusted: TrustedProxies,
    ) -> Arc<Self> {
        Arc::new(UnauthenticatedConnections {
            per_address,
            total,
            proxies_total,
            trusted,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Counts a new connection from `ip`, or `None` when a limit is reached (the caller closes
    /// it).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnTicket> {
        let pool = if self.trusted.contains(ip) {
            Pool::Proxies
        } else {
            Pool::Direct(address_key(ip))
        };
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match &pool {
            Pool::Proxies => {
                if self.proxies_total > 0 && c.proxied >= self.proxies_total {
                    return None;
                }
                c.proxied += 1;
            }
            Pool::Direct(key) => {
                let mine = c.per_address.get(key).copied().unwrap_or(0);
                if (self.per_address > 0 && mine >= self.per_address)
                    || (self.total > 0 && c.direct >= self.total)
                {
                    return None;
                }
                c.direct += 1;
                c.per_address.insert(key.clone(), mine + 1);
            }
        }
        Some(ConnTicket {
            owner: self.clone(),
            pool,
            ip,
            counted: AtomicBool::new(true),
        })
    }

    fn release(&self, pool: &Pool) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match pool {
            Pool::Proxies => c.proxied = c.proxied.saturating_sub(1),
            Pool::Direct(key) => {
                c.direct = c.direct.saturating_sub(1);
                if let Some(n) = c.per_address.get_mut(key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        c.per_address.remove(key);
                    }
                }
            }
        }
    }

    /// Unauthenticated connections from `ip` now.
    #[cfg(test)]
    pub fn count(&self, ip: IpAddr) -> usize {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.per_address.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl ConnTicket {
    /// The connection carried an authenticated request: it no longer counts.
    pub fn authenticated(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            self.owner.release(&self.pool);
        }
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        self.authenticated();
    }
}

/// Everything a request is admitted through, made from the settings.
pub struct Admission {
    /// Requests the cache answers.
    pub reads: Lane,
    /// Requests that call the apiserver.
    pub writes: Lane,
    /// Buffered bodies.
    pub bodies: ByteBudget,
    /// Failed authentications.
    pub failures: FailureLimiter,
    /// Unauthenticated connections (used by the connection loop).
    pub connections: Arc<UnauthenticatedConnections>,
    /// Proxies whose `X-Forwarded-For` names the client of the failure limits.
    pub proxies: TrustedProxies,
}

impl Admission {
    /// The model `settings` configure.
    pub fn new(s: &Settings) -> Self {
        let proxies = TrustedProxies::new(&s.trusted_proxies);
        Admission {
            reads: Lane::new(s.max_concurrent_reads, s.max_concurrent_reads_per_directory),
            writes: Lane::new(
                s.max_concurrent_requests,
                s.max_concurrent_requests_per_directory,
            ),
            bodies: ByteBudget::new(
                s.max_buffered_body_bytes,
                s.max_buffered_body_bytes_per_directory,
            ),
            failures: FailureLimiter::new(
                s.auth_failure_burst_per_address,
                s.auth_failure_burst_per_directory,
                s.auth_failure_refill_interval,
            ),
            connections: UnauthenticatedConnections::with_trusted(
                s.max_unauthenticated_connections_per_address,
                s.max_unauthenticated_connections,
                s.max_unauthenticated_proxy_connections,
                proxies.clone(),
            ),
            proxies,
        }
    }

    /// The lane of `class` (public requests take none).
    pub fn lane(&self, class: Class) -> Option<&Lane> {
        match class {
            Class::Public => None,
            Class::CacheRead => Some(&self.reads),
            Class::Apiserver => Some(&self.writes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_fall_into_their_lanes() {
        let c = |m: Method, op: &str| class(&m, op);
        assert_eq!(c(Method::GET, "GET /Users"), Class::CacheRead);
        assert_eq!(c(Method::POST, "POST /Users/.search"), Class::CacheRead);
        assert_eq!(c(Method::GET, "GET /Users/{id}"), Class::Apiserver);
        assert_eq!(c(Method::POST, "POST /Users"), Class::Apiserver);
        assert_eq!(c(Method::PATCH, "PATCH /Groups/{id}"), Class::Apiserver);
        assert_eq!(c(Method::POST, "POST /oauth2/token"), Class::Public);
        assert_eq!(c(Method::GET, "GET /Schemas/{id}"), Class::Public);
        assert_eq!(c(Method::POST, "POST /Schemas"), Class::Apiserver);
        assert_eq!(c(Method::GET, "GET /other"), Class::Apiserver);
    }

    #[test]
    fn a_full_directory_queue_leaves_the_others_free() {
        let slots = DirectorySlots::new(2);
        let a = slots.queue("ns/a");
        let _held: Vec<_> = (0..2)
            .map(|_| a.clone().try_acquire_owned().unwrap())
            .collect();
        assert!(slots.queue("ns/a").try_acquire_owned().is_err());
        assert!(slots.queue("ns/b").try_acquire_owned().is_ok());
    }

    #[tokio::test]
    async fn reads_do_not_wait_for_slots_writes_hold() {
        let s = <Settings as clap::Parser>::try_parse_from([
            "kube-scim-server",
            "--max-concurrent-requests=2",
            "--max-concurrent-requests-per-directory=2",
        ])
        .unwrap();
        let a = Admission::new(&s);
        let _w1 = a.writes.acquire("ns/a").await;
        let _w2 = a.writes.acquire("ns/b").await;
        let read = tokio::time::timeout(Duration::from_millis(100), a.reads.acquire("ns/a"));
        assert!(read.await.is_ok(), "a read waited for the writes' slots");
        let write = tokio::time::timeout(Duration::from_millis(50), a.writes.acquire("ns/c"));
        assert!(write.await.is_err());
    }

    #[test]
    fn body_bytes_are_bounded_per_directory_and_in_all() {
        let b = ByteBudget::new(3 * 1024 * 1024, 2 * 1024 * 1024);
        let a1 = b.try_reserve("ns/a", 1024 * 1024).unwrap();
        let _a2 = b.try_reserve("ns/a", 1024 * 1024).unwrap();
        assert!(b.try_reserve("ns/a", 1).is_none(), "past the directory's");
        let _b1 = b.try_reserve("ns/b", 1024 * 1024).unwrap();
        assert!(b.try_reserve("ns/b", 1).is_none(), "past the server's");
        drop(a1);
        assert!(b.try_reserve("ns/b", 1024 * 1024).is_some(), "given back");
    }

    #[test]
    fn buckets_refill_and_forget_full_keys() {
        let t0 = Instant::now();
        let mut b = TokenBuckets::new(2, Duration::from_secs(1), 2);
        assert!(b.take("x", t0).is_ok());
        assert!(b.take("x", t0).is_ok());
        let wait = b.take("x", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        let later = t0 + Duration::from_millis(1500);
        assert!(b.take("x", later).is_ok());
        assert!(b.take("y", later).is_ok());
        assert!(b.take("y", later).is_ok());
        // The map is full (x, y) and neither is full again: a third key is throttled...
        assert!(b.take("z", t0 + Duration::from_millis(1600)).is_err());
        // ...until one has refilled and is forgotten.
        assert!(b.take("z", t0 + Duration::from_secs(10)).is_ok());
        let mut off = TokenBuckets::new(0, Duration::from_secs(1), 1);
        assert!((0..100).all(|_| off.take("x", t0).is_ok()));
    }

    #[test]
    fn an_address_past_its_limit_leaves_the_directory_alone() {
        let l = FailureLimiter::new(2, 3, Duration::from_secs(60));
        let now = Instant::now();
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(l.failed("ns/a", Some(attacker), now).is_ok());
        assert!(l.failed("ns/a", Some(attacker), now).is_ok());
        for _ in 0..10 {
            assert_eq!(
                l.failed("ns/a", Some(attacker), now).unwrap_err().0,
                Scope::Address
            );
        }
        assert!(l.failed("ns/a", Some(other), now).is_ok());
        assert_eq!(
            l.failed("ns/a", Some(other), now).unwrap_err().0,
            Scope::Directory
        );
        let third: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(l.failed("ns/b", Some(third), now).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let v4: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(v4), "192.0.2.1");
    }

    #[test]
    fn unauthenticated_connections_are_capped_until_they_authenticate() {
        let c = UnauthenticatedConnections::new(2, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t1 = c.admit(ip).unwrap();
        let t2 = c.admit(ip).unwrap();
        assert!(c.admit(ip).is_none(), "per address");
        let o1 = c.admit(other).unwrap();
        assert!(c.admit("192.0.2.3".parse().unwrap()).is_none(), "in all");
        t1.authenticated();
        t1.authenticated();
        assert_eq!(c.count(ip), 1);
        let _t3 = c.admit(ip).unwrap();
        drop(t1);
        drop(t2);
        drop(o1);
        assert_eq!(c.count(ip), 1);
    }

    #[test]
    fn trusted_proxies_have_a_pool_of_their_own() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".parse().unwrap()]);
        let c = UnauthenticatedConnections::with_trusted(2, 3, 4, proxies);
        let proxy: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let other_proxy: IpAddr = "10.9.9.9".parse().unwrap();
        // Past the per-address cap of 2, up to the proxies' pool of 4, which both proxies share.
        let held: Vec<_> = (0..3).map(|_| c.admit(proxy).expect("proxy")).collect();
        let _fourth = c.admit(other_proxy).expect("proxies share one pool");
        assert!(c.admit(proxy).is_none(), "the proxies' pool is bounded");
        // A full proxy pool leaves the direct clients theirs.
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let _a1 = c.admit(a).expect("direct, with the proxies' pool full");
        let _a2 = c.admit(a).unwrap();
        assert!(c.admit(a).is_none(), "an untrusted address keeps its cap");
        let _b1 = c.admit(b).unwrap();
        assert!(c.admit(b).is_none(), "direct clients' total");
        // A full direct pool leaves the proxies theirs.
        drop(held);
        assert!(
            c.admit(proxy).is_some(),
            "a proxy connection, with the direct pool full"
        );
    }
}
