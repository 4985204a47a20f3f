//! Reloads of `gateway.yaml` and which configuration is in force.

use std::sync::LazyLock;
use std::time::SystemTime;

use pingora_prometheus::prometheus::{IntCounterVec, IntGauge, Opts};

struct ConfigFamilies {
    reloads: IntCounterVec,
    generation: IntGauge,
    loaded: IntGauge,
}

static CONFIG: LazyLock<ConfigFamilies> = LazyLock::new(|| {
    let reloads = IntCounterVec::new(
        Opts::new(
            "registry_gateway_config_reloads_total",
            "Reloads of gateway.yaml by result: success (swapped in) or failure (the old configuration keeps serving).",
        ),
        &["result"],
    )
    .expect("valid metric definition");
    let generation = IntGauge::new(
        "registry_gateway_config_generation",
        "Generation of the configuration in force: 1 at start, +1 per applied reload.",
    )
    .expect("valid metric definition");
    let loaded = IntGauge::new(
        "registry_gateway_config_loaded_timestamp_seconds",
        "When the configuration in force was loaded (Unix time).",
    )
    .expect("valid metric definition");
    super::register(reloads.clone());
    super::register(generation.clone());
    super::register(loaded.clone());
    for result in ["success", "failure"] {
        reloads.with_label_values(&[result]);
    }
    ConfigFamilies {
        reloads,
        generation,
        loaded,
    }
});

pub fn config_reload(ok: bool) {
    CONFIG
        .reloads
        .with_label_values(&[if ok { "success" } else { "failure" }])
        .inc();
}

pub fn config_loaded(generation: u64, at: SystemTime) {
    CONFIG.generation.set(generation as i64);
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CONFIG.loaded.set(secs as i64);
}
