//! Session cookies from the request: the `Cookie` header values (one per line)
//! are parsed and the sealed, possibly chunked session is opened. Tampered,
//! truncated, foreign or garbage input is "no session"; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame::core::flow::state::{LoginState, LogoutState};
use sesame::core::session::cookies;
use sesame::core::session::Purpose;
use sesame_fuzz::{filter, CountingEntropy, NOW};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let filter = &filter();
    let present = cookies::parse(text.split('\n'));
    let jar = filter.session_cookie();
    if let Some(session) = jar.read(&present, NOW) {
        // Only a session sealed with our key opens; it must be one we would
        // write again, and still valid.
        assert!(session.expires_at > NOW);
        let attrs = filter.cookie_attrs("/");
        let set = jar.write(&session, NOW, &attrs, &[], &mut CountingEntropy(0));
        let resent: Vec<(String, String)> = set
            .iter()
            .filter_map(|c| c.split(';').next()?.split_once('='))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let resent: Vec<(&str, &str)> = resent
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(jar.read(&resent, NOW).as_ref(), Some(&session));
    }
    // The other sealed cookies: each value as a sign-in or sign-out state.
    for (name, value) in &present {
        let _: Option<LoginState> = filter.sealer.open(Purpose::Login, name, value);
        let _: Option<LogoutState> = filter.sealer.open(Purpose::Logout, name, value);
    }
});
