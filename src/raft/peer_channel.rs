//! Channels to peers: connected lazily, and started afresh when a peer
//! stops answering.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

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
    channel: Mutex<Channel>,
}

impl RenewableChannel {
    pub fn new(raft_addr: &str) -> Result<Self, tonic::transport::Error> {
        let endpoint = peer_endpoint(raft_addr)?;
        let channel = Mutex::new(endpoint.connect_lazy());
        Ok(RenewableChannel { endpoint, channel })
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
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = self.endpoint.connect_lazy();
    }
}

/// One lazily connected channel per peer for the control plane's own calls
/// (forwarded writes, health reports, peer queries), apart from Raft's
/// channels so they never wait behind a snapshot. Made once per address
/// and kept, and renewed when a call to the peer fails or times out.
#[derive(Default)]
pub struct PeerChannels {
    channels: Mutex<HashMap<String, RenewableChannel>>,
}

impl PeerChannels {
    /// The channel to `raft_addr`, made on first use.
    pub fn get(&self, raft_addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(raft_addr) {
            return Ok(channel.get());
        }
        let channel = RenewableChannel::new(raft_addr)?;
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
