//! Access-rule denials and stripped cross-repository mounts, per virtual
//! registry. No user or repository labels: both are unbounded.

use std::sync::{LazyLock, OnceLock};

use pingora_prometheus::prometheus::{IntCounter, IntCounterVec, Opts};

use super::{RegistryMetrics, register};
use crate::access::Action;

struct Families {
    denied: IntCounterVec,
    mounts_stripped: IntCounterVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let denied = IntCounterVec::new(
        Opts::new(
            "registry_gateway_access_denied_total",
            "Requests refused by access rules (answered 401 to clients without credentials, 403 to users), \
             by virtual registry and action: pull, push, delete, other.",
        ),
        &["registry", "action"],
    )
    .expect("valid metric definition");
    let mounts_stripped = IntCounterVec::new(
        Opts::new(
            "registry_gateway_access_mounts_stripped_total",
            "Cross-repository mounts turned into plain uploads because the user may not pull the source repository.",
        ),
        &["registry"],
    )
    .expect("valid metric definition");
    register(denied.clone());
    register(mounts_stripped.clone());
    Families {
        denied,
        mounts_stripped,
    }
});

pub(super) fn init() {
    LazyLock::force(&FAMILIES);
}

const ACTIONS: [&str; 4] = ["pull", "push", "delete", "other"];

/// Handles of one registry label, resolved on first use.
#[derive(Default)]
pub struct AccessCounters {
    denied: [OnceLock<IntCounter>; 4],
    mounts_stripped: OnceLock<IntCounter>,
}

impl RegistryMetrics {
    /// `None`: an `other` (or `/v1`) request.
    pub fn access_denied(&self, action: Option<Action>) {
        let i = action.map_or(3, Action::index);
        self.access.denied[i]
            .get_or_init(|| FAMILIES.denied.with_label_values(&[self.label(), ACTIONS[i]]))
            .inc();
    }

    pub fn mount_stripped(&self) {
        self.access
            .mounts_stripped
            .get_or_init(|| FAMILIES.mounts_stripped.with_label_values(&[self.label()]))
            .inc();
    }
}
