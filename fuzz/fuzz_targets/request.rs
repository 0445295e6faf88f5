//! Whole requests through the filter's entry point, `Filter::on_request`, with
//! a fixed configuration and a ready provider: the callback's query and
//! cookies above all, and every other endpoint and path. When the filter calls
//! the provider (the token endpoint), the input's body part is its answer. See
//! `sesame_fuzz::parse_request` for the input's text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame::core::flow::Action;
use sesame::core::http::ProviderResponse;
use sesame::core::shared::MemoryStore;
use sesame_fuzz::{
    check_fixed_step, check_step, filter, parse_request, provider, CountingEntropy, NOW,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (owned, body) = parse_request(&text);
    let req = owned.as_request();
    let filter = &filter();
    let mut provider = provider();
    let mut entropy = CountingEntropy(0);
    let step = filter.on_request(&req, std::slice::from_ref(&provider), NOW, &mut entropy);
    check_step(filter, &req, &step);
    check_fixed_step(text.as_bytes(), &step);
    if let (Action::Call(_, pending), Some(body)) = (step.action, body) {
        let answer = ProviderResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        };
        let next = filter.on_provider_response(
            *pending,
            &answer,
            std::slice::from_mut(&mut provider),
            NOW,
            &mut entropy,
            &MemoryStore::default(),
        );
        check_step(filter, &req, &next);
        check_fixed_step(text.as_bytes(), &next);
    }
});
