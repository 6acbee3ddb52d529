//! Which arm of a split (a canary) serves a request. The arm is chosen
//! once per client: a client whose sticky cookie names a backend of one
//! arm's pool stays on that arm; a new client of sticky pools draws at
//! random and is kept there by the cookie its answer sets; without sticky
//! pools, the client's address decides, so a client stays on its arm
//! while the weights stay (and when the canary grows, the clients already
//! on it stay on it).

use std::net::IpAddr;

use http::HeaderMap;

use super::{headers, sticky};
use crate::routing::{RoutingTable, Split, StickyKeys};

/// The pool of `split` that serves a request with `headers` from `client`.
pub fn choose(
    split: &Split,
    table: &RoutingTable,
    request: &HeaderMap,
    keys: &StickyKeys,
    client: IpAddr,
) -> usize {
    let mut sticky_pools = false;
    for index in split.pools() {
        let pool = table.pool(index);
        let Some(spec) = &pool.sticky else {
            continue;
        };
        sticky_pools = true;
        let kept = headers::cookie(request, &spec.cookie)
            .and_then(|value| sticky::backend_id(spec, &pool.name, keys, value))
            .is_some_and(|id| pool.has_sticky_id(id));
        if kept {
            return index;
        }
    }
    let draw = if sticky_pools {
        fastrand::u32(..)
    } else {
        client_draw(client)
    };
    split.choose(draw)
}

/// A client's fixed place in `0..u32::MAX`, from its address: the same
/// on every node (the seed is fixed), so a failover keeps it.
fn client_draw(client: IpAddr) -> u32 {
    use std::hash::BuildHasher;
    let hash = foldhash::fast::FixedState::with_seed(0x5eed_5911_7a11_0c4e).hash_one(client);
    (hash >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_addresses_spread_evenly() {
        let mut below = 0;
        for i in 0..4_000u32 {
            let ip = IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8]);
            below += usize::from(client_draw(ip) < u32::MAX / 10);
        }
        assert!((300..=500).contains(&below), "{below} of 4000 under 10 %");
    }
}
