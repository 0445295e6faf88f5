//! Envoy's counters and gauges for the native build. Envoy lets a dynamic
//! module define its metrics only while it takes a configuration, so every
//! name Sésame can count is defined then ([`crate::core::metrics`]), with
//! the same names as the wasm build's: `sesame.<name>`, under the module's
//! `metrics_namespace` (`wasmcustom` in the examples, where the wasm build's
//! counters live).

use std::collections::HashMap;

use crate::core::config::Config;
use crate::core::metrics::{COUNTERS, GAUGES};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Envoy's id of each metric this configuration defined, by Sésame's name.
#[derive(Debug, Default)]
pub struct MetricIds {
    counters: HashMap<String, usize>,
    gauges: HashMap<String, usize>,
}

/// Gauges of the wasm build that the native build has no use for: no VM.
const WASM_ONLY: &[&str] = &["vm_memory_bytes"];

impl MetricIds {
    /// Defines every metric of `config` with `define(kind, full name)`,
    /// Envoy's id or `None`; the names it refused come back too.
    pub fn define(
        config: &Config,
        mut define: impl FnMut(Kind, &str) -> Option<usize>,
    ) -> (MetricIds, Vec<String>) {
        let mut ids = MetricIds::default();
        let mut refused = Vec::new();
        let mut gauges: Vec<String> = GAUGES
            .iter()
            .filter(|g| !WASM_ONLY.contains(g))
            .map(|g| g.to_string())
            .collect();
        if config.providers.len() > 1 {
            gauges.extend(
                config
                    .providers
                    .iter()
                    .map(|p| format!("provider_ready.{}", p.id)),
            );
        }
        let wanted = COUNTERS
            .iter()
            .map(|c| (Kind::Counter, c.to_string()))
            .chain(gauges.into_iter().map(|g| (Kind::Gauge, g)));
        for (kind, name) in wanted {
            match define(kind, &format!("sesame.{name}")) {
                Some(id) => {
                    let table = match kind {
                        Kind::Counter => &mut ids.counters,
                        Kind::Gauge => &mut ids.gauges,
                    };
                    table.insert(name, id);
                }
                None => refused.push(name),
            }
        }
        (ids, refused)
    }

    pub fn counter(&self, name: &str) -> Option<usize> {
        self.counters.get(name).copied()
    }

    pub fn gauge(&self, name: &str) -> Option<usize> {
        self.gauges.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::config::tests::config_with;
    use serde_json::json;

    fn provider(id: &str) -> serde_json::Value {
        json!({"id": id, "issuer": format!("https://{id}.example"), "idp_cluster": id,
               "client_id": "c", "client_secret": "s",
               "redirect_uri": format!("http://127.0.0.1:10000/oauth2/callback/{id}")})
    }

    #[test]
    fn every_counter_and_gauge_is_defined_under_sesame() {
        let one = config_with(json!({}));
        let mut names = Vec::new();
        let (ids, refused) = MetricIds::define(&one, |kind, name| {
            names.push((kind, name.to_string()));
            Some(names.len())
        });
        assert!(refused.is_empty());
        assert!(names.iter().all(|(_, n)| n.starts_with("sesame.")));
        assert!(ids.counter("login_success").is_some());
        assert!(ids.counter("login_failure.state_mismatch").is_some());
        assert!(ids.gauge("provider_ready").is_some());
        assert_eq!(ids.gauge("vm_memory_bytes"), None, "no VM natively");
        assert_eq!(
            ids.counter("provider_ready"),
            None,
            "a gauge, not a counter"
        );
        assert_eq!(names.len(), COUNTERS.len() + GAUGES.len() - WASM_ONLY.len());
    }

    #[test]
    fn several_providers_have_a_gauge_each_and_refusals_are_reported() {
        let mut v = crate::core::config::tests::minimal();
        for key in [
            "issuer",
            "idp_cluster",
            "client_id",
            "client_secret",
            "redirect_uri",
        ] {
            v.as_object_mut().unwrap().remove(key);
        }
        v["providers"] = json!([provider("a"), provider("b")]);
        let two = Config::parse(v.to_string().as_bytes()).expect("two providers");
        let (ids, refused) =
            MetricIds::define(&two, |_, name| (name != "sesame.sign_out").then_some(1));
        assert!(ids.gauge("provider_ready.a").is_some());
        assert!(ids.gauge("provider_ready.b").is_some());
        assert_eq!(refused, vec!["sign_out".to_string()]);
        assert_eq!(ids.counter("sign_out"), None);
    }
}
