//! `raftlb ctl`'s command line: the options every verb shares, and the
//! verbs (each with an example in its help).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Options shared by every verb.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control API address(es) of any node, comma-separated; the next is
    /// tried when one is unreachable. Without it: RAFTLB_ENDPOINT, else
    /// `endpoints` in $XDG_CONFIG_HOME/raftlb/ctl.toml (or
    /// ~/.config/raftlb/ctl.toml, which `raftlb demo` writes), else
    /// 127.0.0.1:7200.
    #[arg(long, global = true, env = "RAFTLB_ENDPOINT", value_delimiter = ',')]
    pub endpoint: Option<Vec<String>>,
    /// The cluster token, when the cluster takes tokens (else `token_file`
    /// in ctl.toml).
    #[arg(long, global = true, env = "RAFTLB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster's CA bundle, for mutual TLS (else `ca` in ctl.toml).
    /// Before the verb: `raftlb ctl --ca F --cert F --key F status`.
    #[arg(long, env = "RAFTLB_CA")]
    pub ca: Option<PathBuf>,
    /// This client's certificate from `raftlb certs init` (else `cert` in
    /// ctl.toml).
    #[arg(long, env = "RAFTLB_CERT")]
    pub cert: Option<PathBuf>,
    /// Its private key (else `key` in ctl.toml).
    #[arg(long, env = "RAFTLB_KEY")]
    pub key: Option<PathBuf>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// `raftlb ctl cert` verbs.
#[derive(Debug, Subcommand)]
pub enum CertVerb {
    /// Add a certificate from local PEM files: the chain (leaf first) and
    /// its key. Every node serves it to clients whose SNI it names.
    ///
    /// Examples: raftlb ctl cert add site --cert site.pem --key site-key.pem --default
    ///           raftlb ctl cert add shop --acme --directory https://acme-v02.api.letsencrypt.org/directory \
    ///               --domain shop.example.com --contact mailto:ops@example.com
    Add(CertFiles),
    /// Replace a certificate: new handshakes on every node get the new
    /// one, open connections keep theirs.
    ///
    /// Example: raftlb ctl cert replace site --cert renewed.pem --key renewed-key.pem
    Replace(CertFiles),
    /// Order an ACME certificate anew now, whatever its expiry (the
    /// leader renews each one 30 days before its end by itself).
    ///
    /// Example: raftlb ctl cert renew shop
    Renew {
        /// The entry's name.
        name: String,
    },
    /// Remove a certificate.
    ///
    /// Example: raftlb ctl cert remove site
    Remove {
        /// The entry's name.
        name: String,
    },
    /// Every certificate: its DNS names, expiry and fingerprint.
    ///
    /// Example: raftlb ctl cert list
    List {
        /// Answer from the contacted node's applied state.
        #[arg(long)]
        local: bool,
    },
}

/// A certificate's files, for `cert add` and `cert replace`.
#[derive(Debug, Args)]
pub struct CertFiles {
    /// The entry's name (not a DNS name): `site`.
    pub name: String,
    /// The chain, leaf first (PEM).
    #[arg(long, required_unless_present = "acme", conflicts_with = "acme")]
    pub cert: Option<PathBuf>,
    /// The leaf's private key (PEM).
    #[arg(long, required_unless_present = "acme", conflicts_with = "acme")]
    pub key: Option<PathBuf>,
    /// Ordered and renewed by the leader from an ACME server (HTTP-01
    /// challenges, answered by every node's http frontends on port 80 or
    /// wherever the names lead).
    #[arg(long, requires_all = ["directory", "domain"])]
    pub acme: bool,
    /// ACME: the server's directory URL.
    #[arg(long, requires = "acme")]
    pub directory: Option<String>,
    /// ACME: a DNS name to order (repeat for more).
    #[arg(long, requires = "acme")]
    pub domain: Vec<String>,
    /// ACME: a contact for the account, `mailto:…` (repeat for more).
    #[arg(long, requires = "acme")]
    pub contact: Vec<String>,
    /// ACME: a PEM file of the CA that signed the directory's own TLS
    /// certificate (a private or test ACME server).
    #[arg(long, requires = "acme")]
    pub directory_ca: Option<PathBuf>,
    /// Serve it to clients whose SNI no certificate names (or that send
    /// none).
    #[arg(long)]
    pub default: bool,
}

/// `raftlb ctl traffic` verbs.
#[derive(Debug, Subcommand)]
pub enum TrafficVerb {
    /// Send all of a frontend's new requests to another pool (blue/green),
    /// on every node from one committed version; requests in flight finish
    /// where they are. `rollback` undoes it.
    ///
    /// Example: raftlb ctl traffic switch web green
    Switch {
        /// The frontend.
        frontend: String,
        /// The pool it should use.
        pool: String,
    },
    /// Send a percentage of a frontend's requests (those no route takes)
    /// to another pool, the rest to its own pool (a canary); 0 ends the
    /// split, 100 is a switch. With --step, walk the share up by that much
    /// --every interval until --until, and roll back to where the walk
    /// began if the pool's 5xx answers over a step pass --max-5xx.
    ///
    /// Examples: raftlb ctl traffic shift web green 10
    ///           raftlb ctl traffic shift web green 10 --step 10 --every 60s --until 100
    Shift {
        /// The frontend.
        frontend: String,
        /// The pool that gets the share.
        pool: String,
        /// Its share, 0 to 100 (with --step: the first step's).
        #[arg(value_parser = clap::value_parser!(u32).range(0..=100))]
        percent: u32,
        /// Walk: percentage points added at each step.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100), requires = "every")]
        step: Option<u32>,
        /// Walk: time each step is watched, as 60s, 5m or 500ms.
        #[arg(long, value_parser = humantime::parse_duration, requires = "step")]
        every: Option<std::time::Duration>,
        /// Walk: the share it ends at.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        until: u32,
        /// Walk: the pool's highest share of 5xx answers (and failed
        /// exchanges) over a step, in percent, as all nodes count them.
        #[arg(long = "max-5xx", default_value_t = 5.0)]
        max_5xx: f64,
        /// Walk: requests the pool must answer in a step before it counts;
        /// a step with fewer is watched again, twice at most, then the walk
        /// stops where it is.
        #[arg(long, default_value_t = 20)]
        min_requests: u64,
    },
}

/// `raftlb ctl` verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Nodes, roles, leader, term, applied index and configuration version.
    ///
    /// Examples: raftlb ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200 status
    ///           raftlb ctl status --wait     # after a restart or a failover
    Status {
        /// Return only when the cluster has settled: a leader, and the VIP,
        /// if one is configured, held by that leader alone (exit 1 if not
        /// within --timeout).
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 10, requires = "wait")]
        timeout: u64,
    },
    /// Every node's traffic, live: requests and 5xx per second, latency
    /// percentiles and open connections per frontend, and per backend;
    /// refreshed every second, `q` quits.
    ///
    /// Examples: raftlb ctl top
    ///           raftlb ctl top --once --json
    Top {
        /// Measure one second, print it, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Replace the whole served configuration with a cluster.toml, in one
    /// atomic change; prints what changed.
    ///
    /// Examples: raftlb ctl apply -f cluster.toml --dry-run
    ///           raftlb ctl apply -f cluster.toml --if-version 7
    Apply {
        /// The cluster.toml to apply.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Refuse unless the configuration is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Print the committed configuration (all of it as cluster.toml, or one
    /// part as a table).
    ///
    /// Example: raftlb ctl get backends
    Get {
        /// frontends, pools or backends; all when omitted.
        #[arg(value_parser = ["frontends", "pools", "backends"])]
        what: Option<String>,
        /// Answer from the contacted node's applied state, without asking
        /// the leader.
        #[arg(long)]
        local: bool,
    },
    /// Change one backend.
    #[command(subcommand)]
    Backend(BackendVerb),
    /// Certificates that `https` frontends serve, kept in the cluster
    /// state (keys are never shown again).
    #[command(subcommand)]
    Cert(CertVerb),
    /// Deployments: move a frontend's traffic to another pool.
    #[command(subcommand)]
    Traffic(TrafficVerb),
    /// Committed changes: version, time, caller and what changed (the last 50).
    ///
    /// Example: raftlb ctl history
    History,
    /// Make an earlier version's configuration current again (as a new
    /// version); prints what changed.
    ///
    /// Example: raftlb ctl rollback 12
    Rollback {
        /// The version to return to.
        version: u64,
    },
    /// Stream configuration, leader and backend health changes as the
    /// contacted node sees them, until Ctrl-C. When that node goes away,
    /// the watch moves to the next endpoint and resumes from the last
    /// configuration version it printed: no change is missed or repeated.
    ///
    /// Example: raftlb ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200 watch --from-version 40
    Watch {
        /// First print every change after this version that the history
        /// still holds.
        #[arg(long)]
        from_version: Option<u64>,
    },
    /// Cluster membership.
    #[command(subcommand)]
    Cluster(ClusterVerb),
    /// One node's part in `[vip] mode = "bgp"`.
    #[command(subcommand)]
    Node(NodeVerb),
}

/// `raftlb ctl node` verbs.
#[derive(Debug, Subcommand)]
pub enum NodeVerb {
    /// Withdraw the node's announcement of the VIP: the router sends its
    /// new flows to the other nodes; its open connections last as long as
    /// the router still sends them here (a stateless multipath router
    /// moves them at once). For maintenance; a SIGTERM withdraws the same
    /// way before it drains. Not kept across a restart of the node.
    ///
    /// Example: raftlb ctl node drain 3
    Drain {
        /// The node id.
        id: u64,
    },
    /// Announce the VIP again (once the node is eligible).
    ///
    /// Example: raftlb ctl node undrain 3
    Undrain {
        /// The node id.
        id: u64,
    },
}

/// `raftlb ctl backend` verbs.
#[derive(Debug, Subcommand)]
pub enum BackendVerb {
    /// Add a backend to a pool.
    ///
    /// Example: raftlb ctl backend add web 10.0.0.5:8080 --weight 2
    Add {
        /// Pool name.
        pool: String,
        /// Backend address, IP:PORT.
        address: String,
        /// Relative weight, 1 to 256.
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Remove a backend; it is drained first (no new traffic, open
    /// connections finish, up to --timeout) unless --now.
    ///
    /// Example: raftlb ctl backend remove web 10.0.0.5:8080
    Remove {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// Remove at once, cutting nothing but sending nothing new.
        #[arg(long)]
        now: bool,
        /// Longest drain before the removal, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Change a backend's weight.
    ///
    /// Example: raftlb ctl backend set-weight web 10.0.0.5:8080 5
    SetWeight {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// New weight, 1 to 256.
        weight: u32,
    },
    /// Stop new connections and requests to a backend on every node; open
    /// ones finish.
    ///
    /// Example: raftlb ctl backend drain web 10.0.0.5:8080 --wait --timeout 60
    Drain {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// Return only when no node has connections to it (or --timeout passes).
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Let a drained or disabled backend take traffic again.
    ///
    /// Example: raftlb ctl backend enable web 10.0.0.5:8080
    Enable {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
    },
    /// Take a backend out of service at once.
    ///
    /// Example: raftlb ctl backend disable web 10.0.0.5:8080
    Disable {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
    },
}

/// `raftlb ctl cluster` verbs.
#[derive(Debug, Subcommand)]
pub enum ClusterVerb {
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    ///
    /// Example: raftlb ctl cluster add-node 4 127.0.0.14:7100 127.0.0.14:7200
    AddNode {
        /// New node id.
        id: u64,
        /// Its peer address: IP:PORT, or NAME:PORT (looked up at each connect).
        raft_addr: String,
        /// Its control API address.
        api_addr: String,
    },
    /// Remove a node from the cluster.
    ///
    /// Example: raftlb ctl cluster remove-node 4
    RemoveNode {
        /// The node id.
        id: u64,
    },
    /// Hand leadership, and with it the VIP, to a node (default: the most
    /// caught-up follower). The VIP is unanswered for about the minimum
    /// election timeout plus an election.
    ///
    /// Example: raftlb ctl cluster transfer-leader 2
    TransferLeader {
        /// The node to take over.
        id: Option<u64>,
    },
}
