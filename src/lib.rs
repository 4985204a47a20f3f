//! registry-gateway: a reverse proxy for Docker/OCI registries (registry:2).
//!
//! Modules follow a request through the gateway: [`config`] is read once into
//! runtime tables; [`server`] owns listeners and signals; [`head_checks`]
//! refuses heads no registry request has; [`routing`] picks
//! the route and upstream; [`pool`] chooses the replica of an upstream and
//! keeps its health; [`proxy`] is the Pingora glue whose phases call
//! [`rewrite`] for headers and Location, [`reply`] for the gateway's own
//! error responses, and [`access_log`] at the end.

pub mod access;
pub mod access_log;
pub mod affinity;
pub mod allocator;
pub mod auth;
pub mod body;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod connections;
pub mod explain;
pub mod fetch;
pub mod guard;
pub mod head_checks;
pub mod head_prefetch;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod operation;
pub mod passwd;
pub mod pool;
pub mod proxy;
pub mod query;
pub mod reload;
pub mod reply;
pub mod rewrite;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod signals;
pub mod tls;
pub mod upstream;
pub mod upstream_auth;
pub mod vhost;
