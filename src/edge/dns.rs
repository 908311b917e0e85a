//! Bounded, cached host name resolution for the remote trust requests
//! ([`crate::edge::http::send`]: RFC 7662 introspection in the SIP workers, key
//! set fetches in the refresher).
//!
//! The system resolver (`getaddrinfo`) cannot be given a timeout: during a
//! DNS outage it blocks for the resolver's own timeouts (5 s x attempts x
//! servers). A SIP worker must not wait that long, so a lookup never runs on
//! the caller's thread:
//!
//! - Answers are cached per process, by name: addresses for [`POSITIVE_TTL`],
//!   failures for [`NEGATIVE_TTL`], at most [`MAX_NAMES`] names.
//! - A miss is handed to a **helper thread** of the process (at most
//!   [`MAX_THREADS`], one more started only when none is idle, so that a
//!   name whose lookup hangs does not hold up the others); the first is
//!   started lazily by the first lookup of a name (never by configuration load
//!   or context creation: the proxy forks its workers after loading the
//!   library, and a thread started before the fork would not exist in the
//!   children). The caller waits for the answer at most until its request's
//!   deadline; then it fails with `resolving <host> did not finish within
//!   <n> ms` (the caller fails closed: introspection answers
//!   `introspection_unavailable`, 500) while the lookup goes on, so a later
//!   request finds the answer cached. A name already being looked up is not
//!   queued again: every caller waits for the same lookup.
//! - An expired answer younger than [`MAX_STALE`] is used at once while a
//!   background lookup refreshes it (the caller does not wait for the
//!   refresh: waiting would spend the budget the connection and TLS
//!   handshake need, and the previous addresses are almost always still
//!   right). A failed refresh keeps the previous addresses in use, up to
//!   [`MAX_STALE`] after they were last resolved.
//! - IP literals never get here (nor start anything).
//!
//! Fork safety: the state records the pid of the process that built it. In
//! a process with another pid (a child forked after the parent started the
//! helper thread, which the child does not have) fresh state is built, and
//! the parent's is left alone (never locked, never dropped: its mutex may
//! have been held by another thread at the time of the fork). The helper
//! thread starts with every signal blocked, so the proxy's signal handlers
//! never run on it. Nothing here panics; a poisoned mutex is recovered, and
//! a panicking resolve function becomes a failed lookup.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long resolved addresses are used without asking again.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup is remembered (requests fail at once meanwhile).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long after they were resolved expired addresses are still used while
/// a refresh runs or fails.
pub const MAX_STALE: Duration = Duration::from_secs(600);
/// Most names cached per process.
pub const MAX_NAMES: usize = 256;
/// Most addresses kept per name.
const MAX_ADDRS: usize = 16;
/// Most helper threads per process: names are looked up in parallel, so a
/// name whose lookup hangs (its domain's servers down) does not hold up
/// the others (the fleet store's, another issuer's).
pub const MAX_THREADS: usize = 4;

/// The addresses of a name.
pub type Addrs = Arc<[IpAddr]>;

/// What does the actual lookup: the system resolver, or a test's.
type ResolveFn = dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync;

/// Cache lifetimes and size of a [`Resolver`].
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// [`POSITIVE_TTL`].
    pub ttl: Duration,
    /// [`NEGATIVE_TTL`].
    pub negative_ttl: Duration,
    /// [`MAX_STALE`].
    pub max_stale: Duration,
    /// [`MAX_NAMES`].
    pub max_names: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ttl: POSITIVE_TTL,
            negative_ttl: NEGATIVE_TTL,
            max_stale: MAX_STALE,
            max_names: MAX_NAMES,
        }
    }
}

struct Entry {
    /// The last addresses obtained, and when.
    good: Option<(Addrs, Instant)>,
    /// The last lookup failed: why, and when (cleared by a success).
    failed: Option<(String, Instant)>,
    /// Queued or running on a helper thread.
    pending: bool,
    /// Bumped at every answer (a waiter returns when it changes).
    generation: u64,
}

#[derive(Default)]
struct Table {
    entries: HashMap<Box<str>, Entry>,
    /// Names for the helper threads (each also `pending` in `entries`).
    queue: VecDeque<Box<str>>,
    /// Helper threads started, and how many of them wait for work.
    threads: usize,
    idle: usize,
}

struct Inner {
    table: Mutex<Table>,
    /// The helper threads wait on it for work.
    work: Condvar,
    /// Callers wait on it for answers.
    done: Condvar,
    resolve: Box<ResolveFn>,
    settings: Settings,
}

/// A cache of name lookups with its helper threads (the first started by the first
/// lookup that needs it). The process uses one, through [`lookup`].
pub struct Resolver {
    pid: u32,
    inner: Arc<Inner>,
}

static THREADS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// How many helper threads this process has started (tests).
#[doc(hidden)]
pub fn threads_started() -> usize {
    THREADS_STARTED.load(Ordering::Relaxed)
}

fn lock(m: &Mutex<Table>) -> MutexGuard<'_, Table> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Resolver {
    /// A resolver using `resolve` for the lookups. Starts nothing.
    pub fn new(
        resolve: impl Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync + 'static,
        settings: Settings,
    ) -> Resolver {
        Resolver {
            pid: std::process::id(),
            inner: Arc::new(Inner {
                table: Mutex::new(Table::default()),
                work: Condvar::new(),
                done: Condvar::new(),
                resolve: Box::new(resolve),
                settings,
            }),
        }
    }

    /// Has this resolver started a helper thread?
    pub fn thread_started(&self) -> bool {
        lock(&self.inner.table).threads > 0
    }

    /// The addresses of `host`, waiting for a lookup at most until
    /// `deadline`. IP literals are returned as they are.
    pub fn lookup(&self, host: &str, deadline: Instant) -> Result<Addrs, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([ip]));
        }
        let start = Instant::now();
        let key: Box<str> = host.to_ascii_lowercase().into();
        let s = self.inner.settings;
        let mut t = lock(&self.inner.table);
        let now = Instant::now();
        let (seen, stale, queue) = match t.entries.get(&*key) {
            Some(e) => {
                if let Some((a, at)) = &e.good {
                    if now.saturating_duration_since(*at) < s.ttl {
                        return Ok(a.clone());
                    }
                }
                let stale = e
                    .good
                    .as_ref()
                    .filter(|(_, at)| now.saturating_duration_since(*at) < s.max_stale)
                    .map(|(a, _)| a.clone());
                if let Some((why, at)) = &e.failed {
                    if now.saturating_duration_since(*at) < s.negative_ttl {
                        return stale.ok_or_else(|| why.clone());
                    }
                }
                (e.generation, stale, !e.pending)
            }
            None => {
                self.make_room(&mut t, now)?;
                t.entries.insert(
                    key.clone(),
                    Entry {
                        good: None,
                        failed: None,
                        pending: false,
                        generation: 0,
                    },
                );
                (0, None, true)
            }
        };
        if queue {
            if let Err(e) = self.queue(&mut t, &key) {
                return stale.ok_or(e);
            }
        }
        if let Some(a) = stale {
            return Ok(a);
        }
        loop {
            match t.entries.get(&*key) {
                None => {
                    return Err(format!(
                        "resolving {host}: the answer was dropped from the cache"
                    ))
                }
                Some(e) if e.generation != seen => {
                    return match (&e.failed, &e.good) {
                        (None, Some((a, _))) => Ok(a.clone()),
                        (Some((why, _)), _) => Err(why.clone()),
                        (None, None) => Err(format!("cannot resolve {host}")),
                    };
                }
                Some(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                let ms = deadline
                    .saturating_duration_since(start)
                    .as_micros()
                    .div_ceil(1000);
                return Err(format!("resolving {host} did not finish within {ms} ms (the lookup goes on in the background)"));
            }
            t = match self.inner.done.wait_timeout(t, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Room for one more name: drop expired answers, then any answer; names
    /// being looked up stay (a helper thread will store their answer).
    fn make_room(&self, t: &mut Table, now: Instant) -> Result<(), String> {
        let s = self.inner.settings;
        if t.entries.len() < s.max_names {
            return Ok(());
        }
        t.entries.retain(|_, e| {
            e.pending
                || e.good
                    .as_ref()
                    .is_some_and(|(_, at)| now.saturating_duration_since(*at) < s.ttl)
        });
        if t.entries.len() >= s.max_names {
            t.entries.retain(|_, e| e.pending);
        }
        if t.entries.len() >= s.max_names {
            return Err(format!(
                "too many host names being resolved at once (at most {})",
                s.max_names
            ));
        }
        Ok(())
    }

    /// Hand `key` to a helper thread: an idle one, else a new one while
    /// there are fewer than [`MAX_THREADS`] (each queued name not matched by
    /// an idle thread gets one; a woken thread counts as idle until it takes
    /// its name off the queue).
    fn queue(&self, t: &mut Table, key: &str) -> Result<(), String> {
        if let Some(e) = t.entries.get_mut(key) {
            e.pending = true;
        }
        t.queue.push_back(key.into());
        if t.queue.len() > t.idle && t.threads < MAX_THREADS {
            match spawn_helper(self.inner.clone()) {
                Ok(()) => {
                    t.threads += 1;
                    THREADS_STARTED.fetch_add(1, Ordering::Relaxed);
                }
                // The running threads will get to it.
                Err(_) if t.threads > 0 => {}
                Err(e) => {
                    t.queue.pop_back();
                    if let Some(e) = t.entries.get_mut(key) {
                        e.pending = false;
                    }
                    return Err(format!(
                        "resolving {key}: cannot start the resolver thread: {e}"
                    ));
                }
            }
        }
        self.inner.work.notify_one();
        Ok(())
    }
}

/// Start a helper thread with every signal blocked: the new thread
/// inherits the creating thread's mask, so block everything around the
/// spawn and restore the caller's mask right after.
fn spawn_helper(inner: Arc<Inner>) -> io::Result<()> {
    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pthread_sigmask fills it.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigset_t values owned by this frame.
    let blocked = unsafe {
        libc::sigfillset(&mut all) == 0
            && libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) == 0
    };
    if !blocked {
        // Never start a thread that could run the proxy's signal handlers.
        return Err(io::Error::other("cannot block signals"));
    }
    let spawned = std::thread::Builder::new()
        .name("wic-tna-dns".into())
        .spawn(move || helper(&inner));
    // SAFETY: `old` is the mask pthread_sigmask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    spawned.map(|_| ())
}

/// A helper thread: one lookup at a time, forever. With all
/// [`MAX_THREADS`] stuck in the system resolver, further names wait in the
/// queue (their callers give up at their deadlines, as they would anyway).
fn helper(inner: &Inner) {
    loop {
        let key = {
            let mut t = lock(&inner.table);
            loop {
                if let Some(k) = t.queue.pop_front() {
                    break k;
                }
                t.idle += 1;
                t = match inner.work.wait(t) {
                    Ok(g) => g,
                    Err(e) => e.into_inner(),
                };
                t.idle -= 1;
            }
        };
        let answer = match catch_unwind(AssertUnwindSafe(|| (inner.resolve)(&key))) {
            Ok(Ok(mut v)) => {
                let mut seen = Vec::with_capacity(v.len());
                v.retain(|ip| {
                    let new = !seen.contains(ip);
                    seen.push(*ip);
                    new
                });
                v.truncate(MAX_ADDRS);
                if v.is_empty() {
                    Err(format!("cannot resolve {key}: no address"))
                } else {
                    Ok(Addrs::from(v))
                }
            }
            Ok(Err(e)) => Err(format!("cannot resolve {key}: {e}")),
            Err(_) => Err(format!("cannot resolve {key}: the resolver failed")),
        };
        let now = Instant::now();
        let mut t = lock(&inner.table);
        if let Some(e) = t.entries.get_mut(&key) {
            match answer {
                Ok(a) => {
                    e.good = Some((a, now));
                    e.failed = None;
                }
                Err(why) => e.failed = Some((why, now)),
            }
            e.pending = false;
            e.generation = e.generation.wrapping_add(1);
        }
        drop(t);
        inner.done.notify_all();
    }
}

/// The process's resolver: built on first use, and again in a process
/// forked after that (see the module comment). Only the pointer is shared;
/// a resolver is never freed, so a reference to it stays valid.
fn current(slot: &AtomicPtr<Resolver>, make: impl Fn() -> Resolver) -> &'static Resolver {
    let pid = std::process::id();
    loop {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: a non-null pointer in the slot comes from Box::into_raw
        // below and is never freed.
        if let Some(r) = unsafe { p.as_ref() } {
            if r.pid == pid {
                return r;
            }
        }
        // Null, or the parent's (its mutexes may have been locked at the
        // fork): replace it, leaking the parent's rather than dropping it.
        let fresh = Box::into_raw(Box::new(make()));
        match slot.compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just made from a Box, now owned by the slot forever.
            Ok(_) => return unsafe { &*fresh },
            // Another thread installed one first: ours has started nothing.
            // SAFETY: `fresh` came from Box::into_raw and was not shared.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

type Hook = fn(&str) -> Option<io::Result<Vec<IpAddr>>>;
static HOOK: OnceLock<Hook> = OnceLock::new();

/// Tests: answer lookups with `hook` first (`None`: the system resolver),
/// e.g. to simulate a hanging DNS server. Once per process; `false` if a
/// hook was already installed.
#[doc(hidden)]
pub fn set_resolve_hook(hook: Hook) -> bool {
    HOOK.set(hook).is_ok()
}

/// The system resolver (`getaddrinfo`).
fn system_resolve(host: &str) -> io::Result<Vec<IpAddr>> {
    if let Some(hook) = HOOK.get() {
        if let Some(answer) = hook(host) {
            return answer;
        }
    }
    Ok((host, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
}

static GLOBAL: AtomicPtr<Resolver> = AtomicPtr::new(std::ptr::null_mut());

/// The addresses of `host` (a name or an IP literal), from this process's
/// cache or a helper thread, waiting at most until `deadline`.
pub fn lookup(host: &str, deadline: Instant) -> Result<Addrs, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Arc::from([ip]));
    }
    current(&GLOBAL, || {
        Resolver::new(system_resolve, Settings::default())
    })
    .lookup(host, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::thread::sleep;

    const MARGIN: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A resolver whose lookups sleep `delay` and return 192.0.2.7, and
    /// its call count.
    fn slow(delay: Duration, settings: Settings) -> (Resolver, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let r = Resolver::new(
            move |_| {
                c.fetch_add(1, Ordering::SeqCst);
                sleep(delay);
                Ok(vec![ip("192.0.2.7"), ip("192.0.2.7"), ip("2001:db8::7")])
            },
            settings,
        );
        (r, calls)
    }

    #[test]
    fn a_hanging_lookup_fails_within_the_deadline_then_is_answered_from_the_cache() {
        let (r, calls) = slow(ms(700), Settings::default());
        let start = Instant::now();
        let e = r.lookup("AS.example", start + ms(100)).unwrap_err();
        let took = start.elapsed();
        assert!(took >= ms(100) && took < ms(100) + MARGIN, "took {took:?}");
        assert!(
            e.starts_with("resolving AS.example did not finish within 100 ms"),
            "{e}"
        );
        sleep(ms(900)); // the lookup went on in the background
        let start = Instant::now();
        let a = r.lookup("as.example", start + ms(100)).unwrap();
        assert!(start.elapsed() < ms(50), "from the cache");
        assert_eq!(
            &a[..],
            &[ip("192.0.2.7"), ip("2001:db8::7")],
            "deduplicated"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no second lookup");
    }

    #[test]
    fn a_name_being_resolved_is_not_queued_again() {
        let (r, calls) = slow(ms(300), Settings::default());
        let r = Arc::new(r);
        let waiters: Vec<_> = (0..8)
            .map(|i| {
                let r = r.clone();
                std::thread::spawn(move || {
                    // half give up early, half wait long enough
                    let wait = if i % 2 == 0 { ms(30) } else { ms(3000) };
                    r.lookup("as.example", Instant::now() + wait).is_ok()
                })
            })
            .collect();
        let ok: Vec<bool> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(ok, [false, true, false, true, false, true, false, true]);
        assert!(r.lookup("as.example", Instant::now()).is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_are_remembered_briefly() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let settings = Settings {
            negative_ttl: ms(300),
            ..Settings::default()
        };
        let r = Resolver::new(
            move |h| match c.fetch_add(1, Ordering::SeqCst) {
                0 => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{h}: no such name"),
                )),
                1 => Ok(vec![]),
                2 => panic!("resolver bug"),
                _ => Ok(vec![ip("192.0.2.9")]),
            },
            settings,
        );
        let dl = || Instant::now() + ms(2000);
        let e = r.lookup("gone.example", dl()).unwrap_err();
        assert!(
            e.contains("cannot resolve gone.example") && e.contains("no such name"),
            "{e}"
        );
        let start = Instant::now();
        assert_eq!(r.lookup("gone.example", dl()).unwrap_err(), e, "remembered");
        assert!(start.elapsed() < ms(50), "answered at once");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        sleep(ms(350));
        assert!(
            r.lookup("gone.example", dl())
                .unwrap_err()
                .contains("no address"),
            "an empty answer is a failure"
        );
        sleep(ms(350));
        assert!(
            r.lookup("gone.example", dl())
                .unwrap_err()
                .contains("the resolver failed"),
            "a panic is a failure"
        );
        sleep(ms(350));
        assert_eq!(
            &r.lookup("gone.example", dl()).unwrap()[..],
            &[ip("192.0.2.9")]
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn expired_addresses_are_used_while_a_refresh_runs_or_fails_up_to_max_stale() {
        // Lookup 1 answers at once, 2 hangs then answers another address,
        // 3 and later fail.
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let settings = Settings {
            ttl: ms(400),
            negative_ttl: ms(100),
            max_stale: ms(3000),
            ..Settings::default()
        };
        let r = Resolver::new(
            move |_| match c.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(vec![ip("192.0.2.1")]),
                1 => {
                    sleep(ms(500));
                    Ok(vec![ip("192.0.2.2")])
                }
                _ => Err(io::Error::other("SERVFAIL")),
            },
            settings,
        );
        let dl = || Instant::now() + ms(1000);
        assert_eq!(
            &r.lookup("as.example", dl()).unwrap()[..],
            &[ip("192.0.2.1")]
        );
        sleep(ms(450)); // expired
        let start = Instant::now();
        assert_eq!(
            &r.lookup("as.example", dl()).unwrap()[..],
            &[ip("192.0.2.1")],
            "stale"
        );
        assert!(start.elapsed() < ms(50), "no wait for the refresh");
        assert_eq!(
            &r.lookup("as.example", dl()).unwrap()[..],
            &[ip("192.0.2.1")],
            "stale, refresh not queued twice"
        );
        sleep(ms(800)); // the refresh answered about 300 ms ago
        assert_eq!(
            &r.lookup("as.example", dl()).unwrap()[..],
            &[ip("192.0.2.2")],
            "refreshed"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        sleep(ms(450)); // expired again; the refreshes now fail
        let resolved_before = Instant::now() - ms(450);
        while resolved_before.elapsed() < ms(2000) {
            assert_eq!(
                &r.lookup("as.example", dl()).unwrap()[..],
                &[ip("192.0.2.2")],
                "stale while refreshes fail"
            );
            sleep(ms(50));
        }
        assert!(calls.load(Ordering::SeqCst) >= 3);
        sleep(ms(1300)); // beyond max_stale
        let e = r.lookup("as.example", dl()).unwrap_err();
        assert!(e.contains("SERVFAIL"), "{e}");
    }

    #[test]
    fn no_thread_for_ip_literals_nor_before_the_first_name() {
        let (r, calls) = slow(ms(0), Settings::default());
        assert!(!r.thread_started());
        for lit in ["192.0.2.1", "::1", "2001:db8::1"] {
            assert_eq!(&r.lookup(lit, Instant::now()).unwrap()[..], &[ip(lit)]);
        }
        assert!(!r.thread_started(), "IP literals start nothing");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // The process-wide entry point: an IP literal does not even build
        // the state.
        assert_eq!(
            &lookup("127.0.0.1", Instant::now()).unwrap()[..],
            &[ip("127.0.0.1")]
        );
        assert!(r.lookup("as.example", Instant::now() + ms(2000)).is_ok());
        assert!(r.thread_started());
    }

    #[test]
    fn a_hanging_name_does_not_hold_up_another() {
        let r = Resolver::new(
            |h| {
                if h.starts_with("down") {
                    sleep(ms(3000));
                }
                Ok(vec![ip("192.0.2.3")])
            },
            Settings::default(),
        );
        assert!(r.lookup("down.example", Instant::now() + ms(50)).is_err());
        let start = Instant::now();
        assert_eq!(
            &r.lookup("up.example", start + ms(1000)).unwrap()[..],
            &[ip("192.0.2.3")]
        );
        assert!(start.elapsed() < ms(500), "took {:?}", start.elapsed());
        assert_eq!(lock(&r.inner.table).threads, 2);
        // More hanging names: idle threads are taken first, then new ones,
        // never more than MAX_THREADS; the rest wait in the queue.
        for i in 0..3 * MAX_THREADS {
            assert!(r
                .lookup(&format!("down{i}.example"), Instant::now())
                .is_err());
        }
        assert_eq!(lock(&r.inner.table).threads, MAX_THREADS);
    }

    #[test]
    fn bounded_number_of_names() {
        let (r, _) = slow(
            ms(0),
            Settings {
                max_names: 4,
                ..Settings::default()
            },
        );
        for i in 0..20 {
            assert!(r
                .lookup(&format!("h{i}.example"), Instant::now() + ms(2000))
                .is_ok());
            assert!(lock(&r.inner.table).entries.len() <= 4);
        }
    }

    fn blocked(set: &libc::sigset_t, sig: libc::c_int) -> bool {
        // SAFETY: a valid, initialised set.
        unsafe { libc::sigismember(set, sig) == 1 }
    }

    fn mask() -> libc::sigset_t {
        // SAFETY: plain data, filled by pthread_sigmask.
        let mut cur: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new set only reads the mask.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) };
        cur
    }

    #[test]
    fn the_helper_thread_blocks_every_signal_and_the_caller_keeps_its_mask() {
        let before = mask();
        let r = Resolver::new(
            |_| {
                let m = mask();
                let all = [
                    libc::SIGTERM,
                    libc::SIGINT,
                    libc::SIGHUP,
                    libc::SIGCHLD,
                    libc::SIGUSR1,
                    libc::SIGUSR2,
                    libc::SIGALRM,
                    libc::SIGPIPE,
                ];
                if all.iter().all(|&s| blocked(&m, s)) {
                    Ok(vec!["192.0.2.1".parse().unwrap()])
                } else {
                    Err(io::Error::other(
                        "a signal is not blocked on the helper thread",
                    ))
                }
            },
            Settings::default(),
        );
        let res = r.lookup("as.example", Instant::now() + ms(2000));
        assert!(res.is_ok(), "{res:?}");
        let after = mask();
        for s in 1..32 {
            assert_eq!(
                blocked(&before, s),
                blocked(&after, s),
                "signal {s}: the caller's mask is restored"
            );
        }
    }

    #[test]
    fn a_forked_child_builds_its_own_resolver_and_never_touches_the_parents() {
        static SLOT: AtomicPtr<Resolver> = AtomicPtr::new(std::ptr::null_mut());
        let make = || {
            Resolver::new(
                |_| Ok(vec!["192.0.2.1".parse().unwrap()]),
                Settings::default(),
            )
        };
        let parent = current(&SLOT, make);
        assert!(
            std::ptr::eq(parent, current(&SLOT, make)),
            "one per process"
        );
        assert!(parent
            .lookup("as.example", Instant::now() + ms(2000))
            .is_ok());
        assert!(parent.thread_started());
        // Fork while the parent's table is locked (as it may be by another
        // thread at the time of a real fork).
        let guard = lock(&parent.inner.table);
        // SAFETY: the child only runs the code below and leaves by _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = catch_unwind(AssertUnwindSafe(|| {
                let child = current(&SLOT, make);
                !std::ptr::eq(child, parent)
                    && !child.thread_started()
                    && child
                        .lookup("as.example", Instant::now() + ms(2000))
                        .is_ok()
                    && child.thread_started()
            }));
            // SAFETY: leave the child without running anything of the parent's.
            unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
        }
        drop(guard);
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        let start = Instant::now();
        loop {
            // SAFETY: our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if start.elapsed() > ms(10_000) {
                // SAFETY: our own child, hung: end it.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("the child hung (it used the parent's resolver)");
            }
            sleep(ms(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status}"
        );
        assert!(
            std::ptr::eq(parent, current(&SLOT, make)),
            "the parent keeps its own"
        );
    }
}
