//! `[bgp]` in `node.toml`: how a node announces the VIP through its local
//! BIRD when `[vip] mode = "bgp"` (every eligible node at once, ECMP).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[bgp]`: the node's BGP session, as its BIRD runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// This node's AS number.
    pub local_as: u32,
    /// The router's address.
    pub peer: IpAddr,
    /// The router's AS number.
    pub peer_as: u32,
    /// BFD on the session (100 ms × 3), so a machine that dies is noticed
    /// by the router in 300 ms rather than at the BGP hold time.
    #[serde(default)]
    pub bfd: bool,
    /// BIRD's router id (default: `serve_ip`, when it is IPv4).
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    /// The interface this process creates and owns, where the announced
    /// address lives; it is gone with the process.
    #[serde(default = "default_device")]
    pub device: String,
    /// BIRD's control socket, read for the session's state.
    #[serde(default = "default_bird_socket")]
    pub bird_socket: PathBuf,
    /// After withdrawing (SIGTERM, `ctl node drain`), how long the node
    /// still takes new connections while the router moves the flows, before
    /// it drains.
    #[serde(default = "default_withdraw_wait_ms")]
    pub withdraw_wait_ms: u64,
}

fn default_device() -> String {
    "rlb-vip".into()
}

fn default_bird_socket() -> PathBuf {
    PathBuf::from("/run/bird/bird.ctl")
}

fn default_withdraw_wait_ms() -> u64 {
    1_000
}

impl BgpConfig {
    /// Checks the section for `vip`; `serve_ip` gives the default router
    /// id.
    pub fn check(&self, serve_ip: IpAddr, vip: Option<IpAddr>) -> Result<(), String> {
        if let Some(vip) = vip
            && vip.is_ipv4() != self.peer.is_ipv4()
        {
            return Err(format!(
                "bgp.peer: {} and the VIP {vip} are not of one IP version (the session carries the VIP's family)",
                self.peer
            ));
        }
        if self.local_as == 0 || self.peer_as == 0 {
            return Err("bgp.local_as, bgp.peer_as: AS numbers start at 1".into());
        }
        if self.device.is_empty()
            || self.device.len() > 15
            || !self
                .device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "bgp.device: {:?} is not an interface name (1 to 15 letters, digits, - or _)",
                self.device
            ));
        }
        if self.router_id.is_none() && !matches!(serve_ip, IpAddr::V4(ip) if !ip.is_unspecified()) {
            return Err(
                "bgp.router_id: required when serve_ip is not an IPv4 address (BIRD needs one)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The router id BIRD runs with.
    pub fn router_id(&self, serve_ip: IpAddr) -> Ipv4Addr {
        match (self.router_id, serve_ip) {
            (Some(id), _) => id,
            (None, IpAddr::V4(ip)) => ip,
            (None, IpAddr::V6(_)) => Ipv4Addr::UNSPECIFIED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bgp(peer: &str) -> BgpConfig {
        toml::from_str(&format!(
            "local_as = 65001\npeer = \"{peer}\"\npeer_as = 65000\n"
        ))
        .expect("bgp")
    }

    #[test]
    fn the_section_is_checked_field_by_field() {
        let serve: IpAddr = "10.0.0.11".parse().expect("ip");
        let vip4: IpAddr = "10.0.9.9".parse().expect("ip");
        let vip6: IpAddr = "fd00::9".parse().expect("ip");
        assert!(bgp("10.0.0.1").check(serve, Some(vip4)).is_ok());
        let mixed = bgp("10.0.0.1").check(serve, Some(vip6)).expect_err("mixed");
        assert!(mixed.starts_with("bgp.peer:"), "{mixed}");
        let mut long = bgp("10.0.0.1");
        long.device = "a-name-longer-than-15".into();
        assert!(
            long.check(serve, Some(vip4))
                .expect_err("long")
                .starts_with("bgp.device:")
        );
        let no_id = bgp("fd00::1").check("::".parse().expect("ip"), Some(vip6));
        assert!(no_id.expect_err("no id").starts_with("bgp.router_id:"));
    }
}
