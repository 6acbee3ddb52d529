//! BIRD's side of `[vip] mode = "bgp"`: the configuration `raftlb
//! bird-config` prints for a node, and the session's state read through
//! `birdc` for `/status`.
//!
//! The node's BIRD learns the VIP from the interface raftlb owns (its
//! `direct` protocol, that interface only) and exports it to the router;
//! it imports nothing. With the address gone (withdrawn, expired, or the
//! process dead with its interface), BIRD withdraws the route at once.

use std::fmt::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::BgpConfig;

/// BIRD's word for an established BGP session.
pub const ESTABLISHED: &str = "Established";

/// The BGP protocol's name in the generated configuration.
pub const SESSION: &str = "raftlb_uplink";

/// BIRD 2 configuration for a node announcing `vip` as `bgp` says, with
/// `router_id`.
pub fn config(bgp: &BgpConfig, vip: IpAddr, router_id: std::net::Ipv4Addr) -> String {
    let (channel, host) = if vip.is_ipv4() {
        ("ipv4", 32)
    } else {
        ("ipv6", 128)
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# BIRD 2 configuration for a raftlb node (raftlb bird-config).\n\
         # The VIP {vip}/{host} is announced while raftlb puts it on its own\n\
         # interface {device:?}: only while the node is eligible (healthy, in\n\
         # the quorum within its lease, not draining), and never after the\n\
         # raftlb process died or froze.\n\
         router id {router_id};\n\
         \n\
         protocol device {{\n\
         \x20   scan time 10;\n\
         }}\n\
         \n\
         protocol direct raftlb_vip {{\n\
         \x20   {channel};\n\
         \x20   interface \"{device}\";\n\
         }}",
        device = bgp.device,
    );
    if bgp.bfd {
        let _ = writeln!(
            text,
            "\nprotocol bfd {{\n\
             \x20   interface \"*\" {{\n\
             \x20       min rx interval 100 ms;\n\
             \x20       min tx interval 100 ms;\n\
             \x20       multiplier 3;\n\
             \x20   }};\n\
             }}"
        );
    }
    let _ = writeln!(
        text,
        "\nprotocol bgp {SESSION} {{\n\
         \x20   local as {local_as};\n\
         \x20   neighbor {peer} as {peer_as};\n\
         \x20   hold time 9;\n\
         \x20   keepalive time 3;\n\
         \x20   connect retry time 1;\n\
         \x20   error wait time 1, 10;\n\
         \x20   bfd {bfd};\n\
         \x20   {channel} {{\n\
         \x20       import none;\n\
         \x20       export where proto = \"raftlb_vip\" && net = {vip}/{host};\n\
         \x20   }};\n\
         }}",
        local_as = bgp.local_as,
        peer = bgp.peer,
        peer_as = bgp.peer_as,
        bfd = if bgp.bfd { "on" } else { "off" },
    );
    text
}

/// How long `birdc` may take.
const BIRDC_TIMEOUT: Duration = Duration::from_secs(2);

/// The uplink session's state as BIRD reports it (`Established`,
/// `Active`, `Connect`, …), or why it could not be read.
pub async fn session_state(socket: &Path) -> Result<String, String> {
    let output = tokio::time::timeout(
        BIRDC_TIMEOUT,
        tokio::process::Command::new("birdc")
            .arg("-s")
            .arg(socket)
            .args(["show", "protocols", SESSION])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "birdc did not answer".to_string())?
    .map_err(|e| format!("birdc: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_session_state(&text).ok_or_else(|| {
        let errors = String::from_utf8_lossy(&output.stderr);
        let said = text
            .lines()
            .chain(errors.lines())
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("no answer")
            .to_string();
        format!("BIRD down or without {SESSION}: {said}")
    })
}

/// The last column of the session's line in `show protocols`: `name BGP
/// table state since info…`, info being `Established` when it is up.
fn parse_session_state(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some(SESSION))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // name, proto, table, state, since (date and maybe time), info.
    let state = fields.get(3)?;
    // The date and time of "since" hold ':' or '-'; the info after them.
    let info = fields
        .iter()
        .skip(4)
        .skip_while(|f| f.contains(':') || f.contains('-'))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    Some(if info.is_empty() {
        (*state).to_string()
    } else {
        info
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_state_is_read_from_show_protocols() {
        let text = "BIRD 2.0.12 ready.\n\
                    Name       Proto      Table      State  Since         Info\n\
                    raftlb_uplink BGP        ---        up     10:42:01.123  Established   \n";
        assert_eq!(parse_session_state(text).as_deref(), Some("Established"));
        let text = "raftlb_uplink BGP        ---        start  10:42:01.123  Active        Socket: Connection refused\n";
        assert_eq!(
            parse_session_state(text).as_deref(),
            Some("Active Socket: Connection refused")
        );
        assert_eq!(parse_session_state("BIRD 2.0.12 ready.\n"), None);
    }

    #[test]
    fn the_configuration_exports_only_the_vip_from_the_owned_interface() {
        let bgp: BgpConfig = toml::from_str(
            "local_as = 65001\npeer = \"10.213.0.1\"\npeer_as = 65000\nbfd = true\n",
        )
        .expect("bgp");
        let text = config(
            &bgp,
            "10.213.9.9".parse().expect("vip"),
            "10.213.0.11".parse().expect("id"),
        );
        for wanted in [
            "router id 10.213.0.11;",
            "interface \"rlb-vip\";",
            "neighbor 10.213.0.1 as 65000;",
            "local as 65001;",
            "bfd on;",
            "export where proto = \"raftlb_vip\" && net = 10.213.9.9/32;",
            "import none;",
            "multiplier 3;",
        ] {
            assert!(text.contains(wanted), "{wanted} missing from:\n{text}");
        }
    }
}
