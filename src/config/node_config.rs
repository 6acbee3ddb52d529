//! `node.toml`: one node's identity, addresses and local settings.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, read_toml};

/// One node's configuration, as read from `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id, unique in the cluster.
    pub id: u64,
    /// Peer gRPC address (Raft).
    pub raft_addr: SocketAddr,
    /// Control gRPC address; loopback unless configured otherwise.
    #[serde(default = "default_api_addr")]
    pub api_addr: SocketAddr,
    /// Admin HTTP address: `/readyz`, `/status`, `/metrics`, `/`; loopback
    /// unless configured otherwise.
    #[serde(default = "default_admin_addr")]
    pub admin_addr: SocketAddr,
    /// Address this node's frontends listen on.
    #[serde(default = "default_serve_ip")]
    pub serve_ip: IpAddr,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// Optional shared secret for the API (role admin) and, without TLS,
    /// the peers; sent as `authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Optional second token for the API with the role `read`.
    #[serde(default)]
    pub read_token_file: Option<PathBuf>,
    /// Mutual TLS on the peer port and the control API.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsFiles>,
    /// Access to the admin port.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Allow a peer or API address beyond loopback without mutual TLS (or,
    /// for the API, a token): anyone who reaches it could change the
    /// cluster. Logged as a warning at every start.
    #[serde(default)]
    pub insecure: bool,
    /// How long a shutdown waits for open requests and connections.
    #[serde(default = "default_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Threads of the node's runtime (forwarding, Raft and the API share
    /// them); default: one per CPU. Like HAProxy's `nbthread` or nginx's
    /// `worker_processes`.
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// What serves HTTP/1.1 clients: the purpose-built relay (default), or
    /// hyper for everything, for comparison and as a fallback.
    #[serde(default, skip_serializing_if = "Http1Engine::is_default")]
    pub http1: Http1Engine,
    /// Bootstrap settings, used only when the data dir is empty.
    pub cluster: ClusterBootstrap,
    /// The leader's virtual IP.
    #[serde(default)]
    pub vip: VipConfig,
    /// `[bgp]`: the BGP session for `[vip] mode = "bgp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<super::BgpConfig>,
    /// Raft timing and log compaction.
    #[serde(default)]
    pub raft: RaftTiming,
}

/// `http1`: what serves HTTP/1.1 clients. Either way, HTTP/2 clients,
/// upgrades (WebSocket), `Expect`, gRPC, HTTP/1.0 and pools of `h2`/`h2c`
/// backends are served by hyper, and both share routing, balancing,
/// header rules and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Http1Engine {
    /// The HTTP/1.1 relay (`proxy::relay`): httparse heads, raw backend
    /// connections.
    #[default]
    Relay,
    /// hyper's server and client for every request.
    Hyper,
}

impl Http1Engine {
    fn is_default(&self) -> bool {
        *self == Http1Engine::default()
    }
}

/// `[admin]`: who may read the admin port (`admin_addr`). `/readyz` is
/// always open, for load balancers and systemd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// HTTPS with the node's certificate (needs `[tls]`); a client
    /// certificate from the cluster's CA then stands in for the token.
    #[serde(default)]
    pub tls: bool,
    /// A token for everything but `/readyz` (Bearer, or Basic with the
    /// token as password).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Connections served at once; more are closed.
    #[serde(default = "default_admin_connections")]
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            tls: false,
            token_file: None,
            max_connections: default_admin_connections(),
        }
    }
}

fn default_admin_connections() -> usize {
    256
}

/// `[raft]`: timing and log compaction. The defaults suit a LAN: a leader
/// that dies is replaced, and the VIP answers again, within about 300 ms;
/// a leader is deposed only after its heartbeats stop for 150 ms (five
/// heartbeats), so a busy machine does not fail over spuriously. Shorter
/// timeouts fail over faster but risk that; longer ones tolerate slower
/// networks. The VIP lease is `election_timeout_min_ms - heartbeat_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftTiming {
    /// Interval of the leader's heartbeats.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Shortest time a follower waits without heartbeats before campaigning;
    /// also how long voters refuse other candidates after a heartbeat.
    #[serde(default = "default_election_min_ms")]
    pub election_timeout_min_ms: u64,
    /// Longest such time; each follower draws a fresh timeout between the
    /// two before every attempt.
    #[serde(default = "default_election_max_ms")]
    pub election_timeout_max_ms: u64,
    /// A snapshot is taken after this many entries since the last one.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
    /// Entries kept behind a snapshot, so a briefly lagging follower can
    /// catch up from the log instead of a snapshot.
    #[serde(default = "default_keep_logs")]
    pub keep_logs_after_snapshot: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: default_heartbeat_ms(),
            election_timeout_min_ms: default_election_min_ms(),
            election_timeout_max_ms: default_election_max_ms(),
            snapshot_logs: default_snapshot_logs(),
            keep_logs_after_snapshot: default_keep_logs(),
        }
    }
}

fn default_heartbeat_ms() -> u64 {
    30
}
fn default_election_min_ms() -> u64 {
    150
}
fn default_election_max_ms() -> u64 {
    300
}
fn default_snapshot_logs() -> u64 {
    1_000
}
fn default_keep_logs() -> u64 {
    100
}

/// `[cluster]`: who the first members are and what they serve at first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterBootstrap {
    /// Node id to peer address, for every first member: `IP:PORT`, or
    /// `NAME:PORT` where the name is looked up at each connect (a
    /// Kubernetes StatefulSet's `raftlb-0.raftlb-peers:7100`, whose pod
    /// addresses change).
    pub members: BTreeMap<String, String>,
    /// `cluster.toml` committed at bootstrap, relative to `node.toml`.
    #[serde(default)]
    pub seed: Option<PathBuf>,
}

/// `[vip]`: how the leader holds the virtual IP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// How the address is held.
    #[serde(default)]
    pub mode: VipMode,
    /// The virtual address.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// `netlink`: the interface the address is added to.
    #[serde(default)]
    pub interface: Option<String>,
    /// `netlink`: prefix length of the added address (default 32 for IPv4,
    /// 128 for IPv6: the VIP adds no route).
    #[serde(default)]
    pub prefix_len: Option<u8>,
    /// `netlink`: gratuitous ARPs sent on acquiring, the first at once and
    /// the rest spread over the first second (keepalived's
    /// `garp_master_repeat`).
    #[serde(default = "default_garp_repeats")]
    pub garp_repeats: u32,
    /// `script`: shell command run (`/bin/sh -c`) on acquiring, like
    /// keepalived's `notify_master`. It sees `RAFTLB_VIP`, `RAFTLB_EVENT`
    /// (`acquire` or `release`) and `RAFTLB_NODE_ID`.
    #[serde(default)]
    pub on_acquire: Option<String>,
    /// `script`: shell command run on releasing.
    #[serde(default)]
    pub on_release: Option<String>,
    /// `script`: a command still running after this long is killed and
    /// counted as failed.
    #[serde(default = "default_script_timeout_ms")]
    pub script_timeout_ms: u64,
}

impl Default for VipConfig {
    fn default() -> Self {
        VipConfig {
            mode: VipMode::None,
            address: None,
            interface: None,
            prefix_len: None,
            garp_repeats: default_garp_repeats(),
            on_acquire: None,
            on_release: None,
            script_timeout_ms: default_script_timeout_ms(),
        }
    }
}

fn default_garp_repeats() -> u32 {
    5
}

fn default_script_timeout_ms() -> u64 {
    5_000
}

/// Ways to hold the virtual IP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VipMode {
    /// Listen on the VIP as an extra address for every frontend.
    Bind,
    /// Add the address to an interface and announce it by ARP.
    Netlink,
    /// Run operator commands on acquire and release.
    Script,
    /// Every eligible node announces the VIP through its local BIRD
    /// (ECMP at the router); `[bgp]` says how.
    Bgp,
    /// No VIP.
    #[default]
    None,
}

fn default_serve_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

/// A peer address: `IP:PORT` (`[IPv6]:PORT`) or `NAME:PORT`.
pub fn check_peer_address(text: &str) -> Result<(), &'static str> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let expected = "expected IP:PORT or NAME:PORT";
    let (name, port) = text.rsplit_once(':').ok_or(expected)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("the port must be 1 to 65535")?;
    if !is_host_name(name) {
        return Err(expected);
    }
    Ok(())
}

/// A host name: dot-separated labels of letters, digits and hyphens (not
/// at either end of a label), each 1 to 63 bytes, 253 in all, and not all
/// digits (that would be a mistyped address).
pub fn is_host_name(text: &str) -> bool {
    let labels_ok = text.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    labels_ok && text.len() <= 253 && !text.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn default_api_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7200))
}

fn default_admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7300))
}

fn default_grace_ms() -> u64 {
    10_000
}

impl NodeConfig {
    /// Reads and checks `node.toml`; relative paths inside it are taken
    /// relative to the file's folder, so a deployment folder can move.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let mut config: NodeConfig = read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.token_file = config.token_file.map(|p| base.join(p));
        config.read_token_file = config.read_token_file.map(|p| base.join(p));
        config.tls = config.tls.map(|files| files.relative_to(base));
        config.admin.token_file = config.admin.token_file.map(|p| base.join(p));
        config.cluster.seed = config.cluster.seed.map(|p| base.join(p));
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })?;
        Ok(config)
    }

    /// Whether this node is one of the first members (else it waits to be
    /// added with `raftlb ctl cluster add-node`).
    pub fn is_first_member(&self) -> bool {
        self.members().is_ok_and(|m| m.contains_key(&self.id))
    }

    /// The first members as ids, checking that each key is a number.
    pub fn members(&self) -> Result<BTreeMap<u64, String>, String> {
        self.cluster
            .members
            .iter()
            .map(|(id, addr)| {
                let id = id.parse::<u64>().map_err(|_| {
                    format!("cluster.members: key {id:?} is not a node id (a positive number)")
                })?;
                check_peer_address(addr)
                    .map_err(|why| format!("cluster.members: {id} = {addr:?}: {why}"))?;
                Ok((id, addr.clone()))
            })
            .collect()
    }

    /// What is open beyond loopback without authentication: `raft_addr`
    /// without TLS, `api_addr` without TLS or a token. Allowed only with
    /// `insecure = true`.
    pub fn exposed(&self) -> Vec<&'static str> {
        let mut open = Vec::new();
        if self.tls.is_none() && !self.raft_addr.ip().is_loopback() {
            open.push("raft_addr");
        }
        if self.tls.is_none() && self.token_file.is_none() && !self.api_addr.ip().is_loopback() {
            open.push("api_addr");
        }
        open
    }

    fn check(&self) -> Result<(), String> {
        let exposed = self.exposed();
        if !exposed.is_empty() && !self.insecure {
            return Err(format!(
                "{}: beyond loopback without authentication; add a [tls] section \
                 (raftlb certs init makes the files), or a token_file for the API, \
                 or set insecure = true to allow it anyway",
                exposed.join(", ")
            ));
        }
        if self.admin.tls && self.tls.is_none() {
            return Err("admin.tls: needs a [tls] section (the node's certificate)".into());
        }
        if self.admin.max_connections == 0 {
            return Err("admin.max_connections: must be at least 1".into());
        }
        if self.read_token_file.is_some() && self.token_file.is_none() {
            return Err("read_token_file: needs token_file too (the admin's token)".into());
        }
        let members = self.members()?;
        if members.is_empty() {
            return Err("cluster.members: at least one member is needed".into());
        }
        if members.len() > 7 {
            return Err(format!(
                "cluster.members: {} members given; raftlb supports 1 to 7",
                members.len()
            ));
        }
        if self.vip.mode != VipMode::None && self.vip.address.is_none() {
            return Err("vip.address: required when vip.mode is not \"none\"".into());
        }
        match self.vip.mode {
            VipMode::Netlink if self.vip.interface.is_none() => {
                return Err("vip.interface: required when vip.mode = \"netlink\"".into());
            }
            VipMode::Bgp => match &self.bgp {
                None => {
                    return Err("bgp: a [bgp] section is required when vip.mode = \"bgp\"".into());
                }
                Some(bgp) => bgp.check(self.serve_ip, self.vip.address)?,
            },
            VipMode::Script if self.vip.on_acquire.is_none() || self.vip.on_release.is_none() => {
                return Err(
                    "vip.on_acquire, vip.on_release: both required when vip.mode = \"script\""
                        .into(),
                );
            }
            _ => {}
        }
        let host_bits = if self.vip.address.is_some_and(|a| a.is_ipv6()) {
            128
        } else {
            32
        };
        if let Some(prefix) = self.vip.prefix_len
            && (prefix == 0 || prefix > host_bits)
        {
            return Err(format!("vip.prefix_len: {prefix} must be 1 to {host_bits}"));
        }
        let raft = &self.raft;
        if raft.heartbeat_ms == 0 || raft.election_timeout_min_ms <= 2 * raft.heartbeat_ms {
            return Err(format!(
                "raft.election_timeout_min_ms: {} must exceed twice raft.heartbeat_ms ({})",
                raft.election_timeout_min_ms, raft.heartbeat_ms
            ));
        }
        if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
            return Err(format!(
                "raft.election_timeout_max_ms: {} must exceed raft.election_timeout_min_ms ({})",
                raft.election_timeout_max_ms, raft.election_timeout_min_ms
            ));
        }
        if raft.snapshot_logs == 0 {
            return Err("raft.snapshot_logs: 0 is out of range (at least 1)".into());
        }
        if self.worker_threads == Some(0) {
            return Err("worker_threads: 0 is out of range (at least 1)".into());
        }
        if self.shutdown_grace_ms == 0 {
            return Err("shutdown_grace_ms: 0 is out of range (at least 1)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    const EXAMPLE: &str = r#"
id = 1
raft_addr  = "127.0.0.11:7100"
api_addr   = "127.0.0.11:7200"
admin_addr = "127.0.0.11:7300"
serve_ip   = "127.0.0.11"
data_dir   = "data/node1"
token_file = "secrets/token"

[cluster]
members = { 1 = "127.0.0.11:7100", 2 = "127.0.0.12:7100", 3 = "127.0.0.13:7100" }
seed    = "cluster.toml"

[vip]
mode    = "bind"
address = "127.0.0.100"
"#;

    #[test]
    fn parses_the_interface_example() {
        let config = parse(EXAMPLE).expect("example parses");
        assert_eq!(config.id, 1);
        assert_eq!(config.members().expect("ids").len(), 3);
        assert_eq!(config.vip.mode, VipMode::Bind);
    }

    #[test]
    fn addresses_beyond_loopback_need_tls_or_insecure() {
        let lan = EXAMPLE
            .replace(
                "raft_addr  = \"127.0.0.11:7100\"",
                "raft_addr  = \"10.0.0.11:7100\"",
            )
            .replace(
                "api_addr   = \"127.0.0.11:7200\"",
                "api_addr   = \"10.0.0.11:7200\"",
            );
        let error = parse(&lan).expect_err("no TLS");
        // The API has a token; the peer port has nothing.
        assert!(error.starts_with("raft_addr: beyond loopback"), "{error}");
        assert!(error.contains("insecure = true"), "{error}");
        let no_token = lan.replace("token_file = \"secrets/token\"\n", "");
        let error = parse(&no_token).expect_err("no TLS, no token");
        assert!(
            error.starts_with("raft_addr, api_addr: beyond loopback"),
            "{error}"
        );
        let config = parse(&format!("insecure = true\n{no_token}")).expect("insecure");
        assert_eq!(config.exposed(), vec!["raft_addr", "api_addr"]);
        let tls =
            format!("{no_token}\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"k.pem\"\n");
        assert!(parse(&tls).expect("with TLS").exposed().is_empty());
        // HTTPS on the admin port needs the node's certificate.
        let admin = format!("{EXAMPLE}\n[admin]\ntls = true\n");
        assert!(
            parse(&admin)
                .expect_err("no [tls]")
                .starts_with("admin.tls")
        );
    }

    #[test]
    fn members_are_addresses_or_names_with_ports() {
        for good in [
            "127.0.0.1:7100",
            "[fd00::1]:7100",
            "raftlb-0.raftlb-peers.lb.svc.cluster.local:7100",
            "localhost:7100",
        ] {
            assert_eq!(check_peer_address(good), Ok(()), "{good}");
        }
        for bad in [
            "raftlb-0",
            "raftlb-0:0",
            "raftlb-0:http",
            "a..b:7100",
            "-a:7100",
            ":7100",
        ] {
            assert!(check_peer_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_outside_the_first_members_joins_later() {
        let config = parse(&EXAMPLE.replace("id = 1", "id = 9")).expect("valid");
        assert!(!config.is_first_member());
    }

    #[test]
    fn election_timeout_must_exceed_heartbeats() {
        let text =
            format!("{EXAMPLE}\n[raft]\nheartbeat_ms = 100\nelection_timeout_min_ms = 150\n");
        let err = parse(&text).expect_err("refused");
        assert!(err.contains("raft.election_timeout_min_ms"), "{err}");
    }

    #[test]
    fn vip_modes_need_their_settings() {
        let netlink = EXAMPLE.replace("mode    = \"bind\"", "mode    = \"netlink\"");
        let err = parse(&netlink).expect_err("refused");
        assert!(err.contains("vip.interface: required"), "{err}");
        assert!(parse(&format!("{netlink}interface = \"eth0\"\n")).is_ok());
        let script = EXAMPLE.replace("mode    = \"bind\"", "mode    = \"script\"");
        let err = parse(&format!("{script}on_acquire = \"true\"\n")).expect_err("refused");
        assert!(err.contains("vip.on_release"), "{err}");
        let err = parse(&format!("{EXAMPLE}prefix_len = 33\n")).expect_err("refused");
        assert!(err.contains("vip.prefix_len: 33 must be 1 to 32"), "{err}");
    }

    #[test]
    fn worker_threads_must_be_positive() {
        let text = EXAMPLE.replace("data_dir", "worker_threads = 0\ndata_dir");
        let err = parse(&text).expect_err("refused");
        assert!(err.contains("worker_threads"), "{err}");
        let text = EXAMPLE.replace("data_dir", "worker_threads = 1\ndata_dir");
        assert_eq!(parse(&text).expect("valid").worker_threads, Some(1));
    }
}
