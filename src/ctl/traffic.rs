//! `raftlb ctl traffic`: deployments. `switch` moves a frontend to another
//! pool (blue/green) as one committed version: every node serves the new
//! pool from the same Raft entry, requests in flight on the old pool
//! finish there, the change is in `history`, and `rollback` undoes it.
//!
//! It reads the configuration, changes the frontend's pool and applies
//! it on the condition that nothing else changed meanwhile (`if_version`),
//! reading again and retrying when something did.

use super::output::changes;
use super::{CALL_TIMEOUT, Client, Outcome, TrafficVerb};
use crate::api::convert;
use crate::proto::v1 as pb;

/// Attempts when other writes keep moving the version.
const ATTEMPTS: usize = 5;

/// Runs one `traffic` verb.
pub async fn run(
    client: &mut Client,
    verb: &TrafficVerb,
    json: bool,
) -> Result<Outcome, tonic::Status> {
    let TrafficVerb::Switch { frontend, pool } = verb;
    for _ in 0..ATTEMPTS {
        let request = client.request(pb::GetConfigRequest { local: false }, CALL_TIMEOUT);
        let reply = client.inner.get_config(request).await?.into_inner();
        let mut spec = convert::from_proto(reply.config.unwrap_or_default())
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let Some(front) = spec.frontends.iter_mut().find(|f| f.name == *frontend) else {
            return Ok(Outcome::Usage(format!("no frontend named {frontend:?}")));
        };
        if !spec.pools.iter().any(|p| p.name == *pool) {
            return Ok(Outcome::Usage(format!("no pool named {pool:?}")));
        }
        front.pool = pool.clone();
        let message = pb::ApplyConfigRequest {
            config: Some(convert::to_proto(&spec)),
            if_version: Some(reply.version),
            dry_run: false,
            // Each attempt its own: a refused one is not the same write.
            request_id: client.ids.id("traffic-switch"),
        };
        let request = client.request(message, CALL_TIMEOUT);
        match client.inner.apply_config(request).await {
            Ok(reply) => return Ok(Outcome::Done(changes(&reply.into_inner(), json))),
            // Another write came first: read again.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => continue,
            Err(status) => return Err(status),
        }
    }
    Ok(Outcome::Refused(format!(
        "the configuration kept changing: {ATTEMPTS} attempts, none applied"
    )))
}
