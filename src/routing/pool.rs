//! A compiled pool: its backends, its balancer, and the choices made on
//! it for each connection or request (balancing, sticky pins, passive
//! health).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::uri::Authority;

use super::runtime::PoolRuntime;
use super::{BackendRuntime, Runtimes, now_ms};
use crate::balance::{self, Balancer, PickContext, hash_bytes};
use crate::config::{AdminState, Algorithm, CheckKind, HealthSpec};
use crate::state::certificates::{Certificates, StoredCertificate};
use crate::state::{HashKey, StateError, parse_backend_address, parse_hash_key};
use crate::tls::backend::BackendTls;

/// A compiled pool with its balancer.
#[derive(Debug)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Maglev affinity key.
    pub hash_key: Option<HashKey>,
    /// Health-check settings.
    pub health: HealthSpec,
    /// Backends in configuration order; balancer indices point here.
    pub backends: Vec<Backend>,
    /// Live state of the pool (panic mode).
    pub runtime: Arc<PoolRuntime>,
    /// `[pool.tls]`: how its backends are spoken to over TLS.
    pub tls: Option<Arc<BackendTls>>,
    /// The HTTP version spoken to its backends.
    pub protocol: crate::config::PoolProtocol,
    /// `[pool.sticky]`: the cookie that pins clients to backends.
    pub sticky: Option<crate::config::StickySpec>,
    /// Backend indices by sticky id (`[pool.sticky]` only).
    by_sticky_id: HashMap<String, usize>,
    /// The configuration this pool was compiled from.
    pub(super) source: crate::config::PoolSpec,
    /// The client certificate it was compiled with (`[pool.tls]`), as
    /// committed: a replaced one makes the pool compile again.
    pub(super) client_certificate: Option<StoredCertificate>,
    balancer: Box<dyn Balancer>,
}

/// A compiled backend.
#[derive(Debug)]
pub struct Backend {
    /// Where to connect.
    pub address: SocketAddr,
    /// Its id in sticky cookies: the same on every node, and no address
    /// shown to clients.
    pub sticky_id: String,
    /// `address` as an HTTP authority, built once.
    pub authority: Authority,
    /// Relative weight.
    pub weight: u32,
    /// The operator's admin state.
    pub admin_state: AdminState,
    /// When it began to drain (ms since the Unix epoch), if it is
    /// draining.
    pub drain_started_ms: Option<u64>,
    /// Live counters and passive health, shared across tables.
    pub runtime: Arc<BackendRuntime>,
}

/// Now, in ms since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The certificate `pool`'s `[pool.tls]` presents to its backends, if any.
pub(super) fn client_certificate(
    pool: &crate::config::PoolSpec,
    certificates: &Certificates,
) -> Option<StoredCertificate> {
    let name = pool.tls.as_ref()?.client_certificate.as_ref()?;
    certificates.get(name).cloned()
}

/// A backend's id in sticky cookies: 16 hex digits of a SHA-256 of its
/// pool and address.
fn sticky_id(pool: &str, address: SocketAddr) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("raftlb sticky {pool} {address}").as_bytes(),
    );
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Pool {
    /// The backend a sticky cookie names, if it is still one to send the
    /// client to: active or draining (a draining backend keeps the
    /// clients it has), and usable by this node's view.
    pub fn pinned(&self, id: &[u8]) -> Option<usize> {
        let index = *self.by_sticky_id.get(std::str::from_utf8(id).ok()?)?;
        let backend = &self.backends[index];
        let now = now_ms();
        let kept = match backend.admin_state {
            AdminState::Active => true,
            AdminState::Disabled => false,
            // Until the drain's deadline: from when the drain was
            // committed, by this node's wall clock.
            AdminState::Draining => {
                let deadline = self
                    .sticky
                    .as_ref()
                    .map_or(0, |s| s.drain_timeout_s.saturating_mul(1000));
                backend
                    .drain_started_ms
                    .is_none_or(|since| unix_ms().saturating_sub(since) < deadline)
            }
        };
        (kept && backend.runtime.is_usable(now)).then_some(index)
    }

    /// Whether a sticky cookie's id names one of its backends, whatever
    /// that backend's state (a split keeps such a client on this pool).
    pub fn has_sticky_id(&self, id: &[u8]) -> bool {
        std::str::from_utf8(id).is_ok_and(|id| self.by_sticky_id.contains_key(id))
    }

    /// Builds a pool and its balancer from its configuration.
    pub(super) fn compile(
        pool: &crate::config::PoolSpec,
        runtimes: &Runtimes,
        state: &crate::state::ClusterState,
        client_certificate: Option<StoredCertificate>,
    ) -> Result<Pool, StateError> {
        let certificates = &state.certificates;
        let tls = match &pool.tls {
            None => None,
            Some(tls) => {
                let h2 = pool.protocol == crate::config::PoolProtocol::H2;
                Some(Arc::new(
                    BackendTls::compile(tls, certificates, h2).map_err(|why| {
                        StateError::invalid(format!("pool[{}].tls", pool.name), "", why)
                    })?,
                ))
            }
        };
        let mut backends = Vec::with_capacity(pool.backends.len());
        for backend in &pool.backends {
            let field = format!("pool[{}].backend[{}].address", pool.name, backend.address);
            let address = parse_backend_address(&field, &backend.address)?;
            let authority = Authority::try_from(address.to_string())
                .map_err(|_| StateError::invalid(field, &backend.address, "not an authority"))?;
            let runtime = runtimes.backend(&pool.name, address);
            backends.push(Backend {
                drain_started_ms: state.drain_started_ms(&pool.name, &backend.address),
                address,
                sticky_id: sticky_id(&pool.name, address),
                authority,
                weight: backend.weight,
                admin_state: backend.admin_state,
                runtime,
            });
        }
        let names: Vec<String> = pool.backends.iter().map(|b| b.address.clone()).collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let hash_key = match &pool.hash_key {
            Some(key) => Some(parse_hash_key(
                &format!("pool[{}].hash_key", pool.name),
                key,
            )?),
            None => None,
        };
        if pool.health.check == CheckKind::None {
            for backend in &backends {
                backend.runtime.mark_unchecked();
            }
        }
        let by_sticky_id = if pool.sticky.is_some() {
            backends
                .iter()
                .enumerate()
                .map(|(i, b)| (b.sticky_id.clone(), i))
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Pool {
            name: pool.name.clone(),
            algorithm: pool.algorithm,
            hash_key,
            health: pool.health.clone(),
            runtime: runtimes.pool(&pool.name),
            balancer: balance::build(pool.algorithm, &names, &weights),
            backends,
            tls,
            protocol: pool.protocol,
            sticky: pool.sticky.clone(),
            by_sticky_id,
            source: pool.clone(),
            client_certificate,
        })
    }

    /// Chooses a backend for a new connection or request, skipping those in
    /// `tried`. Only active backends are chosen, and of those the ones this
    /// node sees up and not ejected; a backend in slow start is taken with
    /// the share its ramp allows. If no backend is usable, the pool fails
    /// open across every active one (panic mode) rather than answering 503
    /// to everyone.
    pub fn pick(&self, key: Option<&[u8]>, client: IpAddr, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let key = match key {
            Some(bytes) => hash_bytes(bytes),
            None => match client {
                IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            },
        };
        let slow_start = self.health.slow_start_ms;
        let outstanding = |i: usize| self.backends[i].runtime.active.get().max(0) as u64;
        let eligible =
            |i: usize| self.backends[i].admin_state == AdminState::Active && !tried.contains(&i);
        let usable = |i: usize| {
            let runtime = &self.backends[i].runtime;
            eligible(i)
                && runtime.is_usable(now)
                && (slow_start == 0 || {
                    let share = runtime.slow_start_factor(now, slow_start);
                    share >= 1.0 || fastrand::f64() < share
                })
        };
        let ctx = PickContext {
            available: &usable,
            outstanding: &outstanding,
            key,
        };
        if let Some(index) = self.balancer.pick(&ctx) {
            self.runtime.set_panic(false);
            return Some(index);
        }
        // Slow start may have turned every usable backend down this time.
        let up = |i: usize| eligible(i) && self.backends[i].runtime.is_usable(now);
        let ctx = PickContext {
            available: &up,
            outstanding: &outstanding,
            key,
        };
        if let Some(index) = self.balancer.pick(&ctx) {
            return Some(index);
        }
        let ctx = PickContext {
            available: &eligible,
            outstanding: &outstanding,
            key,
        };
        let index = self.balancer.pick(&ctx)?;
        self.runtime.set_panic(true);
        Some(index)
    }

    /// Records a failed connect (`refused`: ejects at once) or a failed
    /// exchange, ejecting the backend from this node's traffic unless that
    /// would take out more than `max_ejected_percent` of the pool.
    pub fn record_failure(&self, index: usize, reason: &str) {
        let runtime = &self.backends[index].runtime;
        runtime.record_failure();
        self.eject(index, reason);
    }

    /// Records an answer; enough 5xx in a row eject the backend.
    pub fn record_answer(&self, index: usize, status: u16) {
        let runtime = &self.backends[index].runtime;
        if runtime.record_answer(status, self.health.eject_5xx_after) {
            self.eject(
                index,
                &format!("{} answers of 5xx in a row", self.health.eject_5xx_after),
            );
        }
    }

    fn eject(&self, index: usize, reason: &str) {
        let now = now_ms();
        let runtime = &self.backends[index].runtime;
        if runtime.is_ejected(now) {
            return;
        }
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.runtime.is_ejected(now))
            .count();
        let allowed = self.backends.len() * self.health.max_ejected_percent as usize / 100;
        if ejected + 1 > allowed {
            tracing::debug!(pool = %self.name, backend = %runtime.address, ejected, allowed, "ejection cap reached");
            return;
        }
        runtime.eject(reason);
    }
}
