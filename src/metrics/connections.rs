//! Client connection counts: open, refused over `server.max_connections`,
//! and closed because a request head did not arrive in time.

use std::sync::LazyLock;

use pingora_prometheus::prometheus::{IntCounter, IntGauge};

use super::register;

struct Connections {
    open: IntGauge,
    refused: IntCounter,
    header_timeouts: IntCounter,
}

static CONNECTIONS: LazyLock<Connections> = LazyLock::new(|| {
    let open = IntGauge::new(
        "registry_gateway_client_connections",
        "Client connections open now (HTTP/1 and HTTP/2, all listeners).",
    )
    .expect("valid metric definition");
    let refused = IntCounter::new(
        "registry_gateway_client_connections_refused_total",
        "Client connections answered 503 and closed because server.max_connections were open.",
    )
    .expect("valid metric definition");
    let header_timeouts = IntCounter::new(
        "registry_gateway_client_header_timeouts_total",
        "Client connections closed because a request head was not complete within timeouts.client_header.",
    )
    .expect("valid metric definition");
    register(open.clone());
    register(refused.clone());
    register(header_timeouts.clone());
    Connections {
        open,
        refused,
        header_timeouts,
    }
});

pub fn connection_opened() {
    CONNECTIONS.open.inc();
}

pub fn connection_closed() {
    CONNECTIONS.open.dec();
}

pub fn connection_refused() {
    CONNECTIONS.refused.inc();
}

pub fn client_header_timeout() {
    CONNECTIONS.header_timeouts.inc();
}

/// Registers the families so that they show (at zero) before first use.
pub fn init() {
    LazyLock::force(&CONNECTIONS);
}
