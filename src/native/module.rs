//! The hooks Envoy calls (`envoy_dynamic_module_on_*`), and the hosts the
//! shared code runs on: the configuration's, on Envoy's main thread, and
//! one stream's, on its worker.
//!
//! No panic crosses into Envoy: each hook runs under `catch_unwind`; a
//! request whose handling panicked gets a 500 page and a log line, never
//! the upstream.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::abi::*;
use super::headers::{provider_response, text_pairs};
use super::metrics::{Kind, MetricIds};
use super::ticker::Ticker;
use crate::core::config::{refusal_lines, Config};
use crate::core::flow::headers::{Upstream, SET_COOKIE_CACHE_CONTROL};
use crate::core::flow::{Action, Outcome, Pending, Step};
use crate::core::http::{ProviderCall, ProviderResponse, Request, Response};
use crate::core::pages::{self, Lang};
use crate::core::shared::{MemoryStore, SharedStore};
use crate::host::refresh::Refresher;
use crate::host::request::{self, AuditAt};
use crate::host::worker::Worker;
use crate::host::{Host, Level, USER_AGENT};

/// Delay of the first tick after the configuration, then the period.
const FIRST_TICK: Duration = Duration::from_millis(50);
const TICK: Duration = Duration::from_secs(1);

/// A pointer Envoy gave, kept by a configuration that every thread reads.
#[derive(Clone, Copy)]
struct EnvoyPtr(*mut c_void);
// SAFETY: the configuration's pointer and its scheduler's are only handed
// back to Envoy: the scheduler from any thread (as the ABI allows), the
// configuration from the main thread only (its hooks).
unsafe impl Send for EnvoyPtr {}
unsafe impl Sync for EnvoyPtr {}

/// One configuration of the filter (one `filter_config`), shared by every
/// worker thread.
struct NativeConfig {
    /// Tells this configuration's workers apart from an earlier one's.
    id: u64,
    config: Config,
    /// What the workers share: provider documents, the access document,
    /// refresh slots, leases.
    store: MemoryStore,
    metrics: MetricIds,
    /// Envoy's configuration object: for main-thread calls and metrics.
    envoy: EnvoyPtr,
    scheduler: EnvoyPtr,
    ticker: Mutex<Option<Ticker>>,
}

/// The main thread's worker of a configuration: it fetches; the workers
/// adopt what it shares.
struct Root {
    worker: Worker,
    refresher: Refresher,
}

type Roots = RefCell<Vec<(u64, Root)>>;

thread_local! {
    /// The configurations' roots, on Envoy's main thread (where every
    /// configuration hook runs).
    static ROOTS: Roots = const { RefCell::new(Vec::new()) };
}

static NEXT_CONFIG: AtomicU64 = AtomicU64::new(1);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(u64::MAX / 4, |d| d.as_secs())
}

fn write_log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => LOG_TRACE,
        Level::Debug => LOG_DEBUG,
        Level::Info => LOG_INFO,
        Level::Warn => LOG_WARN,
        Level::Error => LOG_ERROR,
        Level::Critical => LOG_CRITICAL,
    };
    // SAFETY: the message outlives the call, which copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// Sends a call through Envoy: `send` is the ABI function for the
/// configuration or for one stream, bound to its pointer.
fn send_call(
    cluster: &str,
    call: &ProviderCall,
    timeout_ms: u64,
    send: impl FnOnce(*mut u64, ModuleBuffer, *mut ModuleHeader, usize, ModuleBuffer, u64) -> u32,
) -> Result<u64, String> {
    let mut headers = vec![
        ModuleHeader::of(":method", call.method),
        ModuleHeader::of(":path", &call.path),
        ModuleHeader::of("host", &call.authority),
        ModuleHeader::of(":scheme", &call.scheme),
        ModuleHeader::of("user-agent", USER_AGENT),
    ];
    headers.extend(call.headers.iter().map(|(k, v)| ModuleHeader::of(k, v)));
    let body = call.body.as_deref().unwrap_or_default();
    let mut id = 0u64;
    let result = send(
        &mut id,
        ModuleBuffer::of(cluster.as_bytes()),
        headers.as_mut_ptr(),
        headers.len(),
        ModuleBuffer::of(body),
        timeout_ms,
    );
    match result {
        CALLOUT_INIT_SUCCESS => Ok(id),
        1 => Err("the call lacks a required header".into()),
        2 => Err("no such cluster".into()),
        3 => Err("duplicate call id".into()),
        4 => Err("the call could not be created".into()),
        other => Err(format!("refused by Envoy ({other})")),
    }
}

impl NativeConfig {
    /// The host on Envoy's main thread (the configuration's hooks).
    fn main_host(&self) -> NativeHost<'_> {
        NativeHost {
            config: self,
            place: Place::Main(self.envoy.0),
        }
    }

    /// A counter's id; a name without one is a fault of this build's list
    /// (`core::metrics`), said in the log rather than lost silently.
    fn counter(&self, name: &str) -> Option<usize> {
        let id = self.metrics.counter(name);
        if id.is_none() {
            write_log(
                Level::Warn,
                &format!("counter sesame.{name} is not defined: not counted"),
            );
        }
        id
    }

    /// Runs `work` with this configuration's root (main thread).
    fn with_root(&self, work: impl FnOnce(&mut Root, &NativeHost)) {
        ROOTS.with(|roots| {
            let mut roots = roots.borrow_mut();
            if let Some((_, root)) = roots.iter_mut().find(|(id, _)| *id == self.id) {
                work(root, &self.main_host());
            }
        });
    }

    /// The main thread's periodic work.
    fn tick(&self) {
        self.with_root(|root, host| root.refresher.tick(&root.worker, host));
    }

    fn on_background_response(&self, id: u64, response: &ProviderResponse) {
        self.with_root(|root, host| {
            root.refresher.on_response(&root.worker, host, id, response);
        });
    }
}

/// One worker thread's filter for one configuration.
struct WorkerSlot {
    worker: Worker,
    /// The second it last adopted the shared state.
    adopted_at: Cell<u64>,
}

type Workers = RefCell<Vec<(u64, Weak<NativeConfig>, Rc<WorkerSlot>)>>;

thread_local! {
    /// This worker thread's filters, one per configuration in use.
    static WORKERS: Workers = const { RefCell::new(Vec::new()) };
}

/// This thread's worker for `config`, made on its first request (and the
/// workers of configurations gone, dropped then).
fn worker_for(config: &Arc<NativeConfig>) -> Rc<WorkerSlot> {
    WORKERS.with(|workers| {
        let mut workers = workers.borrow_mut();
        if let Some((_, _, slot)) = workers.iter().find(|(id, ..)| *id == config.id) {
            return Rc::clone(slot);
        }
        workers.retain(|(_, alive, _)| alive.strong_count() > 0);
        let slot = Rc::new(WorkerSlot {
            worker: Worker::new(config.config.clone()),
            adopted_at: Cell::new(0),
        });
        workers.push((config.id, Arc::downgrade(config), Rc::clone(&slot)));
        slot
    })
}

/// Where the shared code runs: the configuration's main thread, or one
/// stream's worker. Counters, gauges and calls go through the pointer Envoy
/// gave for that place.
#[derive(Clone, Copy)]
enum Place {
    Main(ConfigEnvoyPtr),
    Stream(FilterEnvoyPtr),
}

/// The native host of the shared code ([`crate::host`]).
struct NativeHost<'a> {
    config: &'a NativeConfig,
    place: Place,
}

impl NativeHost<'_> {
    /// Envoy's answer to a metric call (`metrics_result`).
    fn metric(
        &self,
        id: usize,
        value: u64,
        on_config: unsafe extern "C" fn(
            ConfigEnvoyPtr,
            usize,
            *mut ModuleBuffer,
            usize,
            u64,
        ) -> u32,
        on_stream: unsafe extern "C" fn(
            FilterEnvoyPtr,
            usize,
            *mut ModuleBuffer,
            usize,
            u64,
        ) -> u32,
    ) {
        // SAFETY: the pointer is alive (its hook runs), and no labels.
        unsafe {
            match self.place {
                Place::Main(config) => on_config(config, id, std::ptr::null_mut(), 0, value),
                Place::Stream(stream) => on_stream(stream, id, std::ptr::null_mut(), 0, value),
            };
        }
    }
}

impl Host for NativeHost<'_> {
    fn log(&self, level: Level, message: &str) {
        write_log(level, message);
    }

    fn now(&self) -> u64 {
        unix_now()
    }

    fn store(&self) -> &dyn SharedStore {
        &self.config.store
    }

    fn count(&self, name: &str, _frequent: bool) {
        if let Some(id) = self.config.counter(name) {
            self.metric(
                id,
                1,
                envoy_dynamic_module_callback_http_filter_config_increment_counter,
                envoy_dynamic_module_callback_http_filter_increment_counter,
            );
        }
    }

    fn set_gauge(&self, name: &str, value: u64) {
        if let Some(id) = self.config.metrics.gauge(name) {
            self.metric(
                id,
                value,
                envoy_dynamic_module_callback_http_filter_config_set_gauge,
                envoy_dynamic_module_callback_http_filter_set_gauge,
            );
        }
    }

    fn dispatch(&self, cluster: &str, call: &ProviderCall, timeout_ms: u64) -> Result<u64, String> {
        send_call(cluster, call, timeout_ms, |id, c, h, n, b, t| {
            // SAFETY: the pointer is alive (its hook runs); every buffer
            // outlives the call, which copies them.
            unsafe {
                match self.place {
                    Place::Main(config) => {
                        envoy_dynamic_module_callback_http_filter_config_http_callout(
                            config, id, c, h, n, b, t,
                        )
                    }
                    Place::Stream(stream) => {
                        envoy_dynamic_module_callback_http_filter_http_callout(
                            stream, id, c, h, n, b, t,
                        )
                    }
                }
            }
        })
    }
}

/// One request.
struct Stream {
    /// Alive as long as the stream: Envoy keeps the configuration while
    /// any of its streams lives.
    config: *const NativeConfig,
    slot: Rc<WorkerSlot>,
    /// The call this request waits for.
    pending: Option<(u64, Box<Pending>)>,
    /// `Set-Cookie` values to add to the upstream's answer.
    set_cookies: Vec<String>,
    audit_at: Option<AuditAt>,
    /// Waiting for the provider (the body and trailers wait too).
    waiting: bool,
    /// Time spent in Sésame's hooks for this request, those already
    /// returned, and when the hook running now began; and the part of it
    /// spent in Envoy's function that sends a call to the provider (a
    /// sign-in's are logged).
    busy: Duration,
    entered: Option<Instant>,
    calling: Duration,
}

impl Stream {
    /// The configuration, for as long as the stream lives.
    fn config<'a>(&self) -> &'a NativeConfig {
        // SAFETY: see `config`; a stream's hooks never outlive it.
        unsafe { &*self.config }
    }

    fn host<'a>(&self, envoy: FilterEnvoyPtr) -> NativeHost<'a> {
        NativeHost {
            config: self.config(),
            place: Place::Stream(envoy),
        }
    }

    /// Runs one hook's work, timed.
    fn timed<T>(&mut self, work: impl FnOnce(&mut Self) -> T) -> T {
        let entered = Instant::now();
        self.entered = Some(entered);
        let result = work(self);
        self.busy += entered.elapsed();
        self.entered = None;
        result
    }

    fn on_request_headers(&mut self, envoy: FilterEnvoyPtr) -> u32 {
        let now = unix_now();
        let host = self.host(envoy);
        let slot = Rc::clone(&self.slot);
        let worker = &slot.worker;
        if slot.adopted_at.replace(now) != now {
            worker.adopt_providers(&host);
            worker.adopt_access(&host);
        }
        // SAFETY: Envoy fills `size` headers, valid until this hook returns
        // or a header is changed (both after the last use below).
        let raw = unsafe {
            let size = envoy_dynamic_module_callback_http_get_headers_size(envoy, REQUEST_HEADER);
            let mut raw = Vec::with_capacity(size);
            if size > 0
                && envoy_dynamic_module_callback_http_get_headers(
                    envoy,
                    REQUEST_HEADER,
                    raw.as_mut_ptr(),
                )
            {
                raw.set_len(size);
            }
            raw
        };
        let pairs = text_pairs(raw.iter().map(|h: &EnvoyHeader| {
            // SAFETY: as above.
            unsafe {
                (
                    bytes(h.key_ptr, h.key_length),
                    bytes(h.value_ptr, h.value_length),
                )
            }
        }));
        let request = Request::from_headers(
            pairs
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
                .collect(),
        );
        let decision = request::decide(worker, &host, &request, &now);
        drop(request);
        drop(pairs);
        for name in &decision.removals {
            remove_header(envoy, REQUEST_HEADER, name);
        }
        self.audit_at = decision.audit_at;
        self.perform(envoy, decision.step)
    }

    /// Carries out a step; what to tell Envoy now.
    fn perform(&mut self, envoy: FilterEnvoyPtr, step: Step) -> u32 {
        let host = self.host(envoy);
        let slot = Rc::clone(&self.slot);
        let worker = &slot.worker;
        request::account(worker, &host, &step.outcome, self.audit_at.as_ref());
        if let (Outcome::LoginSucceeded { .. }, Some(entered)) = (&step.outcome, self.entered) {
            // Sésame's own time in a sign-in's callback, the provider's
            // answers not included, and apart from it Envoy's in sending
            // the calls (`make bench` reads both).
            let hooks = self.busy + entered.elapsed();
            write_log(
                Level::Debug,
                &format!(
                    "sign-in: {} µs in Sésame, {} µs in Envoy sending its calls",
                    hooks.saturating_sub(self.calling).as_micros(),
                    self.calling.as_micros()
                ),
            );
        }
        match step.action {
            Action::Continue => CONTINUE,
            Action::ContinueWith(upstream) => {
                change_request_headers(envoy, &upstream);
                CONTINUE
            }
            Action::ContinueWithCookies(upstream, set_cookies) => {
                change_request_headers(envoy, &upstream);
                self.set_cookies = set_cookies;
                CONTINUE
            }
            Action::Respond(response) => {
                respond(envoy, &response);
                STOP_ITERATION
            }
            Action::Call(call, pending) => {
                let config = &worker.filter.config;
                let cluster = &worker.filter.provider(pending.provider()).idp_cluster;
                let sending = Instant::now();
                let sent = host.dispatch(cluster, &call, config.provider_timeout_ms);
                self.calling += sending.elapsed();
                match sent {
                    Ok(id) => {
                        self.pending = Some((id, pending));
                        self.waiting = true;
                        STOP_ITERATION
                    }
                    Err(why) => {
                        let step = request::call_not_sent(worker, &host, *pending, cluster, &why);
                        self.perform(envoy, step)
                    }
                }
            }
        }
    }

    fn on_call_done(&mut self, envoy: FilterEnvoyPtr, id: u64, response: &ProviderResponse) {
        let Some((expected, pending)) = self.pending.take() else {
            return;
        };
        if expected != id {
            // Not the call this request waits for: keep waiting for ours.
            self.pending = Some((expected, pending));
            return;
        }
        let step = {
            let host = self.host(envoy);
            request::on_provider_response(&self.slot.worker, &host, *pending, response)
        };
        self.waiting = false;
        if self.perform(envoy, step) == CONTINUE {
            // SAFETY: the stream is alive (its hook runs).
            unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(envoy) }
        }
    }

    fn on_response_headers(&mut self, envoy: FilterEnvoyPtr) {
        if self.set_cookies.is_empty() {
            return;
        }
        // A refreshed session's cookie rides on the upstream's answer: no
        // shared cache in front may keep that answer for others.
        set_header(
            envoy,
            RESPONSE_HEADER,
            "cache-control",
            SET_COOKIE_CACHE_CONTROL,
        );
        for cookie in self.set_cookies.drain(..) {
            add_header(envoy, RESPONSE_HEADER, "set-cookie", &cookie);
        }
    }
}

/// # Safety
/// `ptr` points to `len` bytes (or `len` is 0), valid for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, len)
    }
}

fn set_header(envoy: FilterEnvoyPtr, kind: u32, name: &str, value: &str) {
    // SAFETY: the stream is alive; the buffers outlive the call.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            envoy,
            kind,
            ModuleBuffer::of(name.as_bytes()),
            ModuleBuffer::of(value.as_bytes()),
        );
    }
}

fn add_header(envoy: FilterEnvoyPtr, kind: u32, name: &str, value: &str) {
    // SAFETY: as for `set_header`.
    unsafe {
        envoy_dynamic_module_callback_http_add_header(
            envoy,
            kind,
            ModuleBuffer::of(name.as_bytes()),
            ModuleBuffer::of(value.as_bytes()),
        );
    }
}

/// Removes every value of a header (a set with no value).
fn remove_header(envoy: FilterEnvoyPtr, kind: u32, name: &str) {
    // SAFETY: as for `set_header`.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            envoy,
            kind,
            ModuleBuffer::of(name.as_bytes()),
            ModuleBuffer::NONE,
        );
    }
}

/// Removes the client's copies of identity headers, then adds Sésame's.
fn change_request_headers(envoy: FilterEnvoyPtr, upstream: &Upstream) {
    for name in &upstream.remove {
        remove_header(envoy, REQUEST_HEADER, name);
    }
    if let Some(cookie) = &upstream.cookie {
        // An empty value removes the header.
        set_header(envoy, REQUEST_HEADER, "cookie", cookie);
    }
    for (name, value) in upstream.add.iter() {
        if value.is_empty() {
            // Envoy adds no empty value: the client's copy is gone, which
            // reads the same upstream.
            continue;
        }
        add_header(envoy, REQUEST_HEADER, name, value);
    }
}

fn respond(envoy: FilterEnvoyPtr, response: &Response) {
    let mut headers: Vec<ModuleHeader> = response
        .headers
        .iter()
        .map(|(k, v)| ModuleHeader::of(k, v))
        .collect();
    // SAFETY: the stream is alive; every buffer outlives the call.
    unsafe {
        envoy_dynamic_module_callback_http_send_response(
            envoy,
            u32::from(response.status),
            headers.as_mut_ptr(),
            headers.len(),
            ModuleBuffer::of(&response.body),
            ModuleBuffer::of(b"sesame"),
        );
    }
}

/// Runs a hook's body; a panic is logged, and `fallback` is the hook's
/// answer then.
fn guard<T>(what: &str, fallback: impl FnOnce() -> T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            write_log(
                Level::Error,
                &format!("internal error in Sésame ({what}): refused"),
            );
            fallback()
        }
    }
}

/// What a request gets when Sésame failed inside: a 500 page, never the
/// upstream.
fn internal_error(envoy: FilterEnvoyPtr) -> u32 {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut response = pages::page(500, Lang::Fr, &pages::INTERNAL_ERROR, None, None);
        pages::fill_help(&mut response, None);
        respond(envoy, &response);
    }));
    STOP_ITERATION
}

// ---------------------------------------------------------------------------
// Hooks

/// # Safety
/// Called by Envoy once, when it loads the module.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr()
}

/// # Safety
/// Called by Envoy on its main thread with its configuration object and
/// the filter's name and configuration bytes, valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard("configuration", std::ptr::null, || {
        let bytes = bytes(config.ptr, config.length);
        let config = match Config::parse(bytes) {
            Ok(config) => config,
            Err(errors) => {
                for line in refusal_lines(&errors) {
                    write_log(Level::Critical, &line);
                }
                return std::ptr::null();
            }
        };
        let (metrics, refused) = MetricIds::define(&config, |kind, name| {
            let mut id = 0usize;
            let name = ModuleBuffer::of(name.as_bytes());
            let result = match kind {
                Kind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter(
                    envoy,
                    name,
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                ),
                Kind::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge(
                    envoy,
                    name,
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                ),
            };
            (result == METRICS_SUCCESS).then_some(id)
        });
        if !refused.is_empty() {
            write_log(
                Level::Warn,
                &format!("Envoy refused these metrics: {}", refused.join(", ")),
            );
        }
        let scheduler = envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy);
        let native = Arc::new(NativeConfig {
            id: NEXT_CONFIG.fetch_add(1, Ordering::Relaxed),
            config,
            store: MemoryStore::default(),
            metrics,
            envoy: EnvoyPtr(envoy),
            scheduler: EnvoyPtr(scheduler),
            ticker: Mutex::new(None),
        });
        let root = Root {
            worker: Worker::new(native.config.clone()),
            refresher: Refresher::default(),
        };
        Refresher::announce(&root.worker, &native.main_host());
        ROOTS.with(|roots| roots.borrow_mut().push((native.id, root)));
        let ticks = EnvoyPtr(scheduler);
        let ticker = Ticker::start(FIRST_TICK, TICK, move || {
            let ticks = ticks;
            // SAFETY: the ticker stops (joined) before the scheduler goes.
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(ticks.0, 1) }
        });
        match ticker {
            Ok(ticker) => {
                *native.ticker.lock().unwrap_or_else(PoisonError::into_inner) = Some(ticker)
            }
            Err(e) => {
                write_log(
                    Level::Critical,
                    &format!(
                        "cannot start the thread of periodic work: {e}; the filter will not start"
                    ),
                );
                envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler);
                return std::ptr::null();
            }
        }
        Box::into_raw(Box::new(native)) as *const c_void
    })
}

/// # Safety
/// `config` is what `config_new` returned; no stream of it is left.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard(
        "configuration's end",
        || (),
        || {
            let native = Box::from_raw(config as *mut Arc<NativeConfig>);
            let ticker = native
                .ticker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            drop(ticker); // Stopped and joined: no commit after this.
            envoy_dynamic_module_callback_http_filter_config_scheduler_delete(native.scheduler.0);
            ROOTS.with(|roots| roots.borrow_mut().retain(|(id, _)| *id != native.id));
        },
    )
}

/// # Safety
/// Main thread; `config` is what `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: ConfigEnvoyPtr,
    config: *const c_void,
    _event: u64,
) {
    guard(
        "periodic work",
        || (),
        || {
            let native = &*(config as *const Arc<NativeConfig>);
            native.tick();
        },
    )
}

/// # Safety
/// Main thread; the headers and chunks are valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: ConfigEnvoyPtr,
    config: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    guard(
        "provider's answer",
        || (),
        || {
            let native = &*(config as *const Arc<NativeConfig>);
            let response = callout_response(result, headers, headers_size, chunks, chunks_size);
            native.on_background_response(callout_id, &response);
        },
    )
}

/// # Safety
/// The call's answer as Envoy hands it over, valid during the call.
unsafe fn callout_response(
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) -> ProviderResponse {
    let headers: &[EnvoyHeader] = if headers.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(headers, headers_size)
    };
    let chunks: &[EnvoyBuffer] = if chunks.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(chunks, chunks_size)
    };
    provider_response(
        result == CALLOUT_SUCCESS,
        headers.iter().map(|h| {
            (
                bytes(h.key_ptr, h.key_length),
                bytes(h.value_ptr, h.value_length),
            )
        }),
        chunks.iter().map(|c| bytes(c.ptr, c.length)),
    )
}

/// # Safety
/// A worker thread; `config` is what `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: FilterEnvoyPtr,
) -> *const c_void {
    guard("new request", std::ptr::null, || {
        let native = &*(config as *const Arc<NativeConfig>);
        let stream = Stream {
            config: Arc::as_ptr(native),
            slot: worker_for(native),
            pending: None,
            set_cookies: Vec::new(),
            audit_at: None,
            waiting: false,
            busy: Duration::ZERO,
            entered: None,
            calling: Duration::ZERO,
        };
        Box::into_raw(Box::new(stream)) as *const c_void
    })
}

/// # Safety
/// `stream` is what `filter_new` returned, on its worker thread.
unsafe fn stream<'a>(stream: *const c_void) -> &'a mut Stream {
    &mut *(stream as *mut Stream)
}

/// # Safety
/// Envoy's stream and ours, on its worker thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    guard(
        "request",
        || internal_error(envoy),
        || stream(module).timed(|s| s.on_request_headers(envoy)),
    )
}

/// While the request waits for the provider, its body waits too.
///
/// # Safety
/// As for the headers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let hold = |waiting: bool| {
        if waiting {
            STOP_ITERATION_AND_BUFFER
        } else {
            CONTINUE
        }
    };
    guard(
        "request body",
        || STOP_ITERATION_AND_BUFFER,
        || hold(stream(module).waiting),
    )
}

/// # Safety
/// As for the headers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    module: *const c_void,
) -> u32 {
    guard(
        "request trailers",
        || STOP_ITERATION,
        || {
            if stream(module).waiting {
                STOP_ITERATION
            } else {
                CONTINUE
            }
        },
    )
}

/// # Safety
/// As for the headers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    guard(
        "response",
        || CONTINUE,
        || {
            stream(module).on_response_headers(envoy);
            CONTINUE
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
) {
}

/// # Safety
/// `module` is what `filter_new` returned; Envoy is done with the stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    guard(
        "request's end",
        || (),
        || {
            drop(Box::from_raw(module as *mut Stream));
        },
    )
}

/// # Safety
/// On the stream's worker; the headers and chunks are valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: FilterEnvoyPtr,
    module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    guard(
        "provider's answer",
        || {
            internal_error(envoy);
        },
        || {
            stream(module).timed(|s| {
                let response = callout_response(result, headers, headers_size, chunks, chunks_size);
                s.on_call_done(envoy, callout_id, &response);
            });
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _module: *const c_void,
) {
}
