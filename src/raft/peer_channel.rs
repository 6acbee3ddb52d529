//! Channels to peers: connected lazily, and started afresh when a peer
//! stops answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::tls::ClusterTls;

/// Time allowed to open a connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How a peer's `raft_addr` is connected to: lazily, by each channel made
/// from it.
fn peer_endpoint(raft_addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{raft_addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// How this node reaches its peers: plain TCP, or mutual TLS with the
/// settings current at each new connection.
#[derive(Clone, Default)]
pub struct PeerTransport {
    tls: Option<Arc<ClusterTls>>,
}

impl PeerTransport {
    /// Peers over mutual TLS when `tls` is given.
    pub fn new(tls: Option<Arc<ClusterTls>>) -> Self {
        PeerTransport { tls }
    }

    /// A channel on `endpoint` that connects when first used.
    fn connect_lazy(&self, endpoint: &Endpoint) -> Channel {
        match &self.tls {
            None => endpoint.connect_lazy(),
            Some(tls) => {
                let tls = tls.clone();
                endpoint.connect_with_connector_lazy(crate::tls::transport::connector(
                    move || tls.client(),
                    Default::default(),
                ))
            }
        }
    }
}

/// A channel to one peer that can be started afresh. A channel reconnects
/// by itself when its connection fails, but not when the connection is
/// only stuck: after a partition (or a frozen peer) the old TCP connection
/// waits out its retransmission back-off, which doubles with every retry,
/// and so stays silent for up to seconds after the network is back, while
/// a new connection gets through at once. Seen: the two nodes left after
/// the leader's link was cut 2 s after a partition had healed could not
/// elect for 2 s. So a channel to a peer that stopped answering is
/// renewed.
pub struct RenewableChannel {
    endpoint: Endpoint,
    transport: PeerTransport,
    channel: Mutex<Channel>,
}

impl RenewableChannel {
    pub fn new(
        raft_addr: &str,
        transport: &PeerTransport,
    ) -> Result<Self, tonic::transport::Error> {
        let endpoint = peer_endpoint(raft_addr)?;
        let channel = Mutex::new(transport.connect_lazy(&endpoint));
        Ok(RenewableChannel {
            endpoint,
            transport: transport.clone(),
            channel,
        })
    }

    /// The channel for the next call.
    pub fn get(&self) -> Channel {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts afresh: later calls go on a new connection; calls still
    /// running on the old one finish there.
    pub fn renew(&self) {
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) =
            self.transport.connect_lazy(&self.endpoint);
    }
}

/// One lazily connected channel per peer for the control plane's own calls
/// (forwarded writes, health reports, peer queries), apart from Raft's
/// channels so they never wait behind a snapshot. Made once per address
/// and kept, and renewed when a call to the peer fails or times out.
#[derive(Default)]
pub struct PeerChannels {
    transport: PeerTransport,
    channels: Mutex<HashMap<String, RenewableChannel>>,
}

impl PeerChannels {
    /// Channels made over `transport`.
    pub fn new(transport: PeerTransport) -> Self {
        PeerChannels {
            transport,
            channels: Mutex::default(),
        }
    }

    /// The channel to `raft_addr`, made on first use.
    pub fn get(&self, raft_addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(raft_addr) {
            return Ok(channel.get());
        }
        let channel = RenewableChannel::new(raft_addr, &self.transport)?;
        let got = channel.get();
        channels.insert(raft_addr.to_string(), channel);
        Ok(got)
    }

    /// After a call to `raft_addr` failed: the next one goes on a new
    /// connection.
    pub fn renew(&self, raft_addr: &str) {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(raft_addr) {
            channel.renew();
        }
    }
}
