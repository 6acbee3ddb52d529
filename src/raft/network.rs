//! The client side of the peer network: openraft's RPCs sent to peers over
//! tonic gRPC. One long-lived channel per peer, connected lazily (so a peer
//! that is down costs nothing until it is needed), plus a separate channel
//! for snapshot chunks so a large transfer never delays heartbeats; both
//! start afresh while the peer counts as unreachable (see
//! [`RenewableChannel`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::peer_channel::{PeerTransport, RenewableChannel};
use super::{ClusterNode, NodeId, TypeConfig};
use tokio::sync::Notify;

use crate::auth::Token;
use crate::proto::v1::RaftPayload;
use crate::proto::v1::raft_service_client::RaftServiceClient;
use crate::raft::election::ElectionTimer;

/// Largest peer message: snapshot chunks and big configurations fit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Marks an RPC refused because it would exceed [`MAX_MESSAGE_BYTES`].
const TOO_LARGE: &str = "message larger than the peer message limit";
/// Longest a peer RPC may run once openraft stopped waiting for it.
const DETACHED_LIMIT: Duration = Duration::from_secs(2);
/// Wait before retrying a peer that could not be reached.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// A gRPC client for a peer with raised message limits.
pub fn peer_client(channel: Channel) -> RaftServiceClient<Channel> {
    RaftServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Peer RPCs still running after their caller stopped waiting for them:
/// openraft's, and the lease's promise requests. A late AppendEntries or
/// promise still renews its follower's vote lease when it lands, so a
/// leader handing over waits for these to end before it waits out the
/// lease.
#[derive(Debug, Default)]
pub struct InFlightRpcs {
    count: AtomicUsize,
    drained: Notify,
}

impl InFlightRpcs {
    /// Counts one RPC as running until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlightRpc {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightRpc(self.clone())
    }

    /// Waits until no peer RPC is running, or `within` passed.
    pub async fn drained(&self, within: Duration) {
        let wait = async {
            loop {
                let notified = self.drained.notified();
                if self.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
    }
}

/// One running peer RPC; counted until dropped.
pub struct InFlightRpc(Arc<InFlightRpcs>);

impl Drop for InFlightRpc {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Creates peer clients for openraft, keeping one pair of channels per peer.
pub struct PeerNetwork {
    transport: PeerTransport,
    links: HashMap<String, Arc<PeerLinks>>,
    reachability: HashMap<NodeId, Arc<Reachability>>,
    in_flight: Arc<InFlightRpcs>,
    token: Token,
    election: Arc<ElectionTimer>,
    peer_back: Arc<Notify>,
}

impl PeerNetwork {
    /// A network whose RPCs carry `token`; vote answers that show a longer
    /// log than this node's hold back its `election` timer.
    /// `peer_back` is notified whenever a peer that was unreachable answers
    /// again.
    pub fn new(
        transport: PeerTransport,
        token: Token,
        election: Arc<ElectionTimer>,
        peer_back: Arc<Notify>,
        in_flight: Arc<InFlightRpcs>,
    ) -> Self {
        PeerNetwork {
            transport,
            links: HashMap::new(),
            reachability: HashMap::new(),
            in_flight,
            token,
            election,
            peer_back,
        }
    }
}

/// Whether a peer answered its last RPC. openraft itself logs every failed
/// RPC (several a second per peer that is down), so its logs are filtered
/// out by default and this logs each change of a peer's reachability once.
///
/// A peer counts as unreachable only after [`FAILURES_TO_UNREACHABLE`]
/// failed RPCs in a row: on a busy machine a single heartbeat can miss its
/// timeout (openraft gives it one heartbeat interval), and that is not a
/// peer going away.
#[derive(Debug)]
pub struct Reachability {
    reachable: AtomicBool,
    failures: AtomicU32,
    back: Arc<Notify>,
}

/// Failed RPCs in a row after which a peer is reported unreachable.
const FAILURES_TO_UNREACHABLE: u32 = 3;

impl Reachability {
    /// Counts the outcome of one RPC; whether the peer counts as
    /// reachable now.
    fn record(&self, target: NodeId, outcome: Result<(), &dyn std::fmt::Display>) -> bool {
        let reachable = match outcome {
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
                true
            }
            Err(_) => self.failures.fetch_add(1, Ordering::Relaxed) + 1 < FAILURES_TO_UNREACHABLE,
        };
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            match outcome {
                Ok(()) => {
                    tracing::info!(peer = target, "peer reachable again");
                    self.back.notify_one();
                }
                Err(error) => tracing::warn!(
                    peer = target,
                    %error,
                    failures = FAILURES_TO_UNREACHABLE,
                    "peer unreachable"
                ),
            }
        }
        reachable
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> PeerClient {
        let links = match self.links.get(&node.raft_addr) {
            Some(links) => Some(links.clone()),
            None => match PeerLinks::new(&node.raft_addr, &self.transport) {
                Ok(links) => {
                    let links = Arc::new(links);
                    self.links.insert(node.raft_addr.clone(), links.clone());
                    Some(links)
                }
                Err(error) => {
                    tracing::error!(target_node = target, addr = %node.raft_addr, %error, "bad peer address");
                    None
                }
            },
        };
        let reachability = self
            .reachability
            .entry(target)
            .or_insert_with(|| {
                Arc::new(Reachability {
                    reachable: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    back: self.peer_back.clone(),
                })
            })
            .clone();
        PeerClient {
            target,
            node: node.clone(),
            links,
            reachability,
            in_flight: self.in_flight.clone(),
            token: self.token.clone(),
            election: self.election.clone(),
        }
    }
}

/// The two channels to one peer: Raft's RPCs, and snapshot chunks.
struct PeerLinks {
    rpc: RenewableChannel,
    bulk: RenewableChannel,
}

impl PeerLinks {
    fn new(raft_addr: &str, transport: &PeerTransport) -> Result<Self, tonic::transport::Error> {
        Ok(PeerLinks {
            rpc: RenewableChannel::new(raft_addr, transport)?,
            bulk: RenewableChannel::new(raft_addr, transport)?,
        })
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    target: NodeId,
    node: ClusterNode,
    links: Option<Arc<PeerLinks>>,
    reachability: Arc<Reachability>,
    in_flight: Arc<InFlightRpcs>,
    token: Token,
    election: Arc<ElectionTimer>,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        rpc_kind: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ClusterNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(links) = &self.links else {
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other("invalid peer address"),
            )));
        };
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(TOO_LARGE),
            )));
        }
        let link = match rpc_kind {
            Rpc::InstallSnapshot => &links.bulk,
            Rpc::AppendEntries | Rpc::Vote => &links.rpc,
        };
        let mut client = peer_client(link.get());
        let mut grpc = tonic::Request::new(RaftPayload { json });
        grpc.set_timeout(DETACHED_LIMIT);
        self.token.attach(&mut grpc);
        // The RPC runs on a task of its own, so that openraft giving up on
        // it (after one heartbeat interval) does not cancel it: a cancelled
        // call resets its HTTP/2 stream, and a peer that sees many resets
        // before it could accept the streams (h2's rapid-reset guard) drops
        // the whole connection; on a busy machine that turned a late
        // heartbeat into a lost peer, and that into an election.
        let running = self.in_flight.start();
        let call = tokio::spawn(async move {
            let _running = running;
            let rpc = async {
                match rpc_kind {
                    Rpc::AppendEntries => client.append_entries(grpc).await,
                    Rpc::Vote => client.vote(grpc).await,
                    Rpc::InstallSnapshot => client.install_snapshot(grpc).await,
                }
            };
            // A little past the deadline the peer was given, so that the
            // peer ends the call, not a reset from here.
            tokio::time::timeout(DETACHED_LIMIT + Duration::from_millis(500), rpc).await
        });
        let answered = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(Ok(answered))) => Ok(answered),
            Ok(Ok(Err(elapsed))) => Err(elapsed),
            Ok(Err(join)) => Ok(Err(tonic::Status::internal(join.to_string()))),
            Err(elapsed) => Err(elapsed),
        };
        let reply = match answered {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                if !self
                    .reachability
                    .record(self.target, Err(&status.message()))
                {
                    link.renew();
                }
                return Err(status_to_rpc_error(status));
            }
            Err(elapsed) => {
                if !self.reachability.record(self.target, Err(&"timed out")) {
                    link.renew();
                }
                return Err(RPCError::Unreachable(Unreachable::new(&elapsed)));
            }
        };
        self.reachability.record(self.target, Ok(()));
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// The peer RPCs openraft makes.
#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// A peer that cannot be reached (down, refusing, timing out) is reported
/// `Unreachable`, so openraft backs off instead of retrying at once.
fn status_to_rpc_error<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, ClusterNode, RaftError<NodeId, E>> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ClusterNode, RaftError<NodeId>>>
    {
        let entries = request.entries.len() as u64;
        match self.call(Rpc::AppendEntries, &request, &option).await {
            // Too many large entries for one message: openraft resends
            // fewer at a time.
            Err(RPCError::Network(error))
                if entries > 1 && error.to_string().contains(TOO_LARGE) =>
            {
                Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(entries / 2),
                ))
            }
            other => other,
        }
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ClusterNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &request, &option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ClusterNode, RaftError<NodeId>>> {
        let answer: VoteResponse<NodeId> = self.call(Rpc::Vote, &request, &option).await?;
        if !answer.vote_granted && answer.last_log_id > request.last_log_id {
            // A voter has more of the log: let it (or another such node)
            // win instead of campaigning again soon and splitting the votes.
            self.election.saw_longer_log();
        }
        Ok(answer)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
