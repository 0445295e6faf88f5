//! The native baseline of `make bench`: an Envoy 1.40 dynamic module (ABI
//! v0.2.0) whose HTTP filter only continues: what any dynamic-module filter
//! costs Envoy (setup 2n). Given a configuration, on each request it makes
//! the calls into Envoy that Sésame makes for a request with a session and
//! nothing else (setup 2hn): read every request header (one call for the
//! count, one for the headers), remove `cookie`, and add each header of the
//! configuration, one line `name: value` each.
//!
//! Declared here by hand, as Sésame's `src/native/abi.rs` does; no
//! dependency.

use std::ffi::{c_char, c_void};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const u8,
    length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        kind: u32,
        out: *mut Header,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
}

fn buffer(bytes: &[u8]) -> Buffer {
    Buffer {
        ptr: bytes.as_ptr(),
        length: bytes.len(),
    }
}

/// The headers to add on each request; none: a pure no-op.
struct Config {
    add: Vec<(String, String)>,
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    c"v0.2.0".as_ptr()
}

/// # Safety
/// Envoy's configuration bytes, valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _envoy: *mut c_void,
    _name: Buffer,
    config: Buffer,
) -> *const c_void {
    let text = if config.ptr.is_null() {
        ""
    } else {
        std::str::from_utf8(std::slice::from_raw_parts(config.ptr, config.length)).unwrap_or("")
    };
    let add = text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Box::into_raw(Box::new(Config { add })) as *const c_void
}

/// # Safety
/// What `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    drop(Box::from_raw(config as *mut Config));
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: *mut c_void,
) -> *const c_void {
    config
}

/// # Safety
/// Envoy's stream; `module` is the configuration (`filter_new`).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let config = &*(module as *const Config);
    if config.add.is_empty() {
        return 0;
    }
    let size = envoy_dynamic_module_callback_http_get_headers_size(envoy, 0);
    let mut headers: Vec<Header> = Vec::with_capacity(size);
    if envoy_dynamic_module_callback_http_get_headers(envoy, 0, headers.as_mut_ptr()) {
        headers.set_len(size);
    }
    std::hint::black_box(&headers);
    envoy_dynamic_module_callback_http_set_header(envoy, 0, buffer(b"cookie"), buffer(b""));
    for (k, v) in &config.add {
        envoy_dynamic_module_callback_http_add_header(envoy, 0, buffer(k.as_bytes()), buffer(v.as_bytes()));
    }
    0
}

macro_rules! continue_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $value:expr;)*) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name($($arg: $ty),*) -> $ret {
                $(let _ = $arg;)*
                $value
            }
        )*
    };
}

continue_hooks! {
    envoy_dynamic_module_on_http_filter_request_body(e: *mut c_void, m: *const c_void, s: bool) -> u32 = 0;
    envoy_dynamic_module_on_http_filter_request_trailers(e: *mut c_void, m: *const c_void) -> u32 = 0;
    envoy_dynamic_module_on_http_filter_response_headers(e: *mut c_void, m: *const c_void, s: bool) -> u32 = 0;
    envoy_dynamic_module_on_http_filter_response_body(e: *mut c_void, m: *const c_void, s: bool) -> u32 = 0;
    envoy_dynamic_module_on_http_filter_response_trailers(e: *mut c_void, m: *const c_void) -> u32 = 0;
    envoy_dynamic_module_on_http_filter_stream_complete(e: *mut c_void, m: *const c_void) -> () = ();
    envoy_dynamic_module_on_http_filter_destroy(m: *const c_void) -> () = ();
    envoy_dynamic_module_on_http_filter_http_callout_done(e: *mut c_void, m: *const c_void, id: u64, r: u32, h: *const Header, n: usize, b: *const Buffer, c: usize) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_headers(e: *mut c_void, m: *const c_void, id: u64, h: *const Header, n: usize, s: bool) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_data(e: *mut c_void, m: *const c_void, id: u64, d: *const Buffer, n: usize, s: bool) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_trailers(e: *mut c_void, m: *const c_void, id: u64, h: *const Header, n: usize) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_complete(e: *mut c_void, m: *const c_void, id: u64) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_reset(e: *mut c_void, m: *const c_void, id: u64, r: u32) -> () = ();
    envoy_dynamic_module_on_http_filter_scheduled(e: *mut c_void, m: *const c_void, id: u64) -> () = ();
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(e: *mut c_void, m: *const c_void) -> () = ();
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(e: *mut c_void, m: *const c_void) -> () = ();
}
