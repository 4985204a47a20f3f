//! Settings → [`Snapshot`]: loads the files the configuration names and
//! builds the objects the proxy uses, reporting every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Snapshot, access, mirror};
use crate::access::AccessPolicy;
use crate::auth::{AuthPolicy, AuthScope, Authenticator, HtpasswdFile};
use crate::config::file::{AuthScopeSetting, AuthSetting, RegistrySection, RouteSection};
use crate::config::{ConfigError, ConfigIssue, ListenerSettings, Settings, issue};
use crate::listeners::{Listener, RedirectTable, TlsListener};
use crate::metrics::RegistryMetrics;
use crate::tls::SniResolver;
use crate::tls::certs::ServerCertificate;
use crate::upstream::Upstream;
use crate::vhost::{HostRouter, HostRule, RouteTable, RouteTarget, VirtualRegistry};

pub const DEFAULT_REALM: &str = "Registry";

/// Builds a snapshot (generation 1) or the error listing every problem in
/// `issues` and found while building.
pub(super) fn build(settings: Settings, issues: Vec<ConfigIssue>) -> Result<Snapshot, ConfigError> {
    let mut b = Builder {
        settings: &settings,
        issues,
        upstreams: BTreeMap::new(),
        htpasswd_files: BTreeMap::new(),
        warnings: Vec::new(),
        other_registries: None,
        stores: HashMap::new(),
    };
    let listeners: Vec<Listener> = settings
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| b.listener(i, l))
        .collect();
    let cached = mirror::cached_upstreams(&settings);
    for (name, u) in &settings.file.upstreams {
        // An upstream without URLs was reported by `config`.
        let Some(pool) = settings.pools.get(name).filter(|p| !p.urls.is_empty()) else {
            continue;
        };
        match Upstream::new(name, u, pool, &settings.timeouts, &settings.dir) {
            Ok(mut up) => {
                match mirror::upstream_auth(&settings, name, &cached) {
                    Ok(auth) => up.set_auth(auth),
                    Err(e) => b.issue(format!("upstreams.{name}.credentials"), e),
                }
                b.upstreams.insert(name.clone(), Arc::new(up));
            }
            Err(e) => b.issue(format!("upstreams.{name}.{}", e.key), e.message),
        }
    }
    let gateway_auth = match &settings.file.auth {
        Some(setting) => b.auth_setting("auth", setting),
        None => None,
    };
    // Compiled once, shared (with its rule cache) by every registry it covers.
    let gateway_access = settings.access.as_ref().map(|s| Arc::new(AccessPolicy::new(s)));
    let registries: Vec<_> = (settings.file.registries.iter().enumerate())
        .filter_map(|(i, r)| b.registry(i, r, &gateway_auth, &gateway_access))
        .collect();
    let router = b.host_router();
    let Builder {
        issues,
        upstreams,
        htpasswd_files,
        mut warnings,
        ..
    } = b;
    if !issues.is_empty() {
        let mut issues = issues;
        crate::config::locate(&settings.text, &mut issues);
        return Err(ConfigError::Invalid {
            file: settings.source,
            issues,
        });
    }
    access::warn(&settings, &registries, &mut warnings);
    Ok(Snapshot {
        source: settings.source,
        generation: 1,
        loaded_at: SystemTime::now(),
        redirects: RedirectTable::new(&listeners),
        listeners,
        upstreams: upstreams.into_values().collect(),
        registries,
        timeouts: settings.timeouts,
        limits: settings.limits,
        auth_limits: settings.auth_limits,
        auth: Authenticator::new(settings.auth_limits),
        htpasswd_files: htpasswd_files.into_values().collect(),
        router: router.expect("no issues means the router compiled"),
        warnings,
        server: settings.server,
        metrics: settings.metrics,
        access_log: settings.access_log,
    })
}

struct Builder<'a> {
    settings: &'a Settings,
    issues: Vec<ConfigIssue>,
    upstreams: BTreeMap<String, Arc<Upstream>>,
    /// One table per file, however many blocks name it.
    htpasswd_files: BTreeMap<PathBuf, Arc<HtpasswdFile>>,
    warnings: Vec<String>,
    /// Shared by the registries past `max_registry_labels`.
    other_registries: Option<Arc<RegistryMetrics>>,
    /// Cache stores by directory.
    stores: HashMap<PathBuf, Arc<crate::cache::Store>>,
}

impl Builder<'_> {
    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(issue(key, message));
    }

    fn listener(&mut self, i: usize, l: &ListenerSettings) -> Listener {
        let tls = l.tls.as_ref().and_then(|t| {
            // Each pair checked on its own first, so the error names its key.
            let mut ok = !t.certificates.is_empty();
            for (j, spec) in t.certificates.iter().enumerate() {
                if let Err(e) = ServerCertificate::load(&spec.cert, &spec.key) {
                    self.issue(format!("listeners[{i}].tls.certificates[{j}]"), e.to_string());
                    ok = false;
                }
            }
            if !ok {
                return None;
            }
            match SniResolver::load(t.certificates.clone()) {
                Ok(r) => Some(TlsListener {
                    certificates: Arc::new(r),
                    http2: t.http2,
                    reject_misdirected: t.reject_misdirected,
                }),
                Err(e) => {
                    self.issue(format!("listeners[{i}].tls"), e.to_string());
                    None
                }
            }
        });
        Listener {
            name: l.name.clone(),
            address: l.address,
            tls,
            redirect_to_https: l.redirect_to_https,
        }
    }

    /// Metric handles of the `i`th registry: its own label, or `other` past the limit.
    fn registry_metrics(&mut self, i: usize, name: &str) -> Arc<RegistryMetrics> {
        if i < self.settings.max_registry_labels {
            return RegistryMetrics::new(name);
        }
        self.other_registries
            .get_or_insert_with(|| RegistryMetrics::new(crate::metrics::OTHER_REGISTRIES))
            .clone()
    }

    fn upstream(&mut self, key: String, name: &str) -> Option<Arc<Upstream>> {
        let found = self.upstreams.get(name).cloned();
        if found.is_none() && self.settings.file.upstreams.contains_key(name) {
            return None; // defined but broken: reported under `upstreams`
        }
        if found.is_none() {
            let known: Vec<&str> = self.settings.file.upstreams.keys().map(String::as_str).collect();
            let message = format!("unknown upstream `{name}` (defined upstreams: {})", known.join(", "));
            self.issue(key, message);
        }
        found
    }

    /// `None` for `auth: off` or a block that failed to load.
    fn auth_setting(&mut self, key: &str, setting: &AuthSetting) -> Option<Arc<AuthPolicy>> {
        let AuthSetting::On(section) = setting else {
            return None;
        };
        let path = self.settings.path(&section.htpasswd);
        let users = match self.htpasswd_files.get(&path) {
            Some(f) => f.clone(),
            None => match HtpasswdFile::load(&path) {
                Ok(f) => {
                    let f = Arc::new(f);
                    self.htpasswd_files.insert(path.clone(), f.clone());
                    f
                }
                Err(e) => {
                    self.issue(
                        format!("{key}.htpasswd"),
                        format!("cannot read htpasswd file `{}`: {}", path.display(), e.source),
                    );
                    return None;
                }
            },
        };
        let table_id = self.htpasswd_files.keys().position(|p| *p == path).unwrap_or(0) as u64;
        let scope = match section.scope {
            AuthScopeSetting::All => AuthScope::All,
            AuthScopeSetting::Writes => AuthScope::Writes,
        };
        let realm = section.realm.as_deref().unwrap_or(DEFAULT_REALM);
        Some(Arc::new(AuthPolicy::new(realm, scope, users, table_id)))
    }

    /// The auth of a level below `inherited`: absent inherits, `off` clears.
    fn auth_override(
        &mut self,
        key: &str,
        setting: &Option<AuthSetting>,
        inherited: &Option<Arc<AuthPolicy>>,
    ) -> Option<Arc<AuthPolicy>> {
        match setting {
            None => inherited.clone(),
            Some(s) => self.auth_setting(key, s),
        }
    }

    fn registry(
        &mut self,
        i: usize,
        r: &RegistrySection,
        gateway_auth: &Option<Arc<AuthPolicy>>,
        gateway_access: &Option<Arc<AccessPolicy>>,
    ) -> Option<Arc<VirtualRegistry>> {
        let key = format!("registries[{i}]");
        let main = self.upstream(format!("{key}.upstream"), &r.upstream);
        let auth = self.auth_override(&format!("{key}.auth"), &r.auth, gateway_auth);
        let v2 = self.route(&key, "v2", &r.routes.v2, &main, &auth);
        // Ping paths stay open unless a route block asks for auth (nginx recipe).
        let ping = self.route(&key, "ping", &r.routes.ping, &main, &None);
        let v1 = match &r.routes.v1 {
            Some(section) if section.upstream.is_some() => self.route(&key, "v1", &r.routes.v1, &None, &auth),
            Some(_) => {
                self.issue(
                    format!("{key}.routes.v1.upstream"),
                    "required: legacy paths need their own upstream",
                );
                None
            }
            None => None,
        };
        let routes = RouteTable {
            v2: v2?,
            ping: ping?,
            v1,
        };
        let mirror = match mirror::mirror(
            &self.settings.mirrors[i],
            &r.name,
            &r.upstream,
            &self.upstreams,
            &mut self.stores,
        ) {
            Ok(m) => m.map(Arc::new),
            Err((k, message)) => {
                self.issue(format!("{key}.{k}"), message);
                None
            }
        };
        let mut upload_upstreams: Vec<Arc<Upstream>> = Vec::new();
        let ns_upstreams = mirror.iter().flat_map(|m| m.ns.values());
        for u in std::iter::once(&routes.v2.upstream).chain(ns_upstreams) {
            if !upload_upstreams.iter().any(|x| x.pool.key() == u.pool.key()) {
                upload_upstreams.push(u.clone());
            }
        }
        Some(Arc::new(VirtualRegistry {
            upload_upstreams,
            pins: Default::default(),
            name: r.name.clone(),
            is_default: r.default,
            routes,
            metrics: self.registry_metrics(i, &r.name),
            access: access::for_registry(&self.settings.registry_access[i], gateway_access),
            mirror,
        }))
    }

    fn route(
        &mut self,
        key: &str,
        which: &str,
        section: &Option<RouteSection>,
        default_upstream: &Option<Arc<Upstream>>,
        inherited_auth: &Option<Arc<AuthPolicy>>,
    ) -> Option<RouteTarget> {
        let Some(section) = section else {
            return Some(RouteTarget {
                upstream: default_upstream.clone()?,
                auth: inherited_auth.clone(),
            });
        };
        let upstream = match &section.upstream {
            Some(name) => self.upstream(format!("{key}.routes.{which}.upstream"), name),
            None => default_upstream.clone(),
        };
        let auth = self.auth_override(&format!("{key}.routes.{which}.auth"), &section.auth, inherited_auth);
        Some(RouteTarget {
            upstream: upstream?,
            auth,
        })
    }

    fn host_router(&mut self) -> Option<HostRouter> {
        let registries = &self.settings.file.registries;
        let rules = registries
            .iter()
            .map(|r| HostRule {
                hosts: r.hosts.clone(),
                host_regex: r.host_regex.clone(),
                ports: r.ports.clone(),
                default: r.default,
            })
            .collect();
        let router = match HostRouter::new(rules) {
            Ok(router) => router,
            Err((i, e)) => {
                self.issue(format!("registries[{i}].host_regex"), e.to_string());
                return None;
            }
        };
        for (shadowed, by) in router.shadowed() {
            self.warnings.push(format!(
                "registries[{shadowed}] (`{}`) is never chosen: registries[{by}] (`{}`) comes first and matches all its hosts",
                registries[shadowed].name, registries[by].name
            ));
        }
        Some(router)
    }
}
