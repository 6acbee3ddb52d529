//! Which arm of a split (a canary) serves a request. The arm is chosen
//! once per client: a client whose sticky cookie names a backend of one
//! arm's pool stays on that arm; a new client of sticky pools draws at
//! random and is kept there by the cookie its answer sets; without sticky
//! pools, the client's address decides, so a client stays on its arm
//! while the weights stay (and when the canary grows, the clients already
//! on it stay on it).

use std::net::IpAddr;

use super::sticky;
use crate::routing::{HeaderView, RoutingTable, Split, StickyKeys};

/// The pool of `split` that serves a request with `headers` from `client`.
pub fn choose(
    split: &Split,
    table: &RoutingTable,
    request: HeaderView<'_>,
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
        let kept = request
            .cookie(&spec.cookie)
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

/// A client's fixed place in `0..u32::MAX`, from its address (an IPv4
/// client on an IPv6 socket as its IPv4 address): FNV-1a, as Maglev's
/// keys, then mixed (murmur3's finalizer) so neighbouring addresses
/// spread; the same on every node, version and platform, so a failover
/// keeps it.
fn client_draw(client: IpAddr) -> u32 {
    let hash = match crate::routing::canonical(client) {
        IpAddr::V4(ip) => crate::balance::hash_bytes(&ip.octets()),
        IpAddr::V6(ip) => crate::balance::hash_bytes(&ip.octets()),
    };
    let mut mixed = hash ^ (hash >> 33);
    mixed = mixed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    mixed ^= mixed >> 33;
    mixed = mixed.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    mixed ^= mixed >> 33;
    (mixed >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_draws_the_same_however_it_came() {
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(client_draw(v4), client_draw(mapped));
        // Fixed across versions: a change here moves clients between arms.
        assert_eq!(client_draw(v4), 2_250_998_167);
    }

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
