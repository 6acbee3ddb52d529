//! `raftlb ctl traffic`: deployments. `shift` gives another pool a share
//! of a frontend's requests (a canary); `switch` moves the frontend to it
//! (blue/green), any split gone. Each is one committed version: every
//! node serves it from the same Raft entry, requests in flight finish
//! where they are, the change is in `history`, and `rollback` undoes it.
//!
//! It reads the configuration, changes the frontend and applies it on the
//! condition that nothing else changed meanwhile (`if_version`), reading
//! again and retrying when something did.

use super::output::changes;
use super::{CALL_TIMEOUT, Client, Outcome, TrafficVerb};
use crate::api::convert;
use crate::config::{FrontendSpec, SplitArm};
use crate::proto::v1 as pb;

/// Attempts when other writes keep moving the version.
const ATTEMPTS: usize = 5;

/// Runs one `traffic` verb.
pub async fn run(
    client: &mut Client,
    verb: &TrafficVerb,
    json: bool,
) -> Result<Outcome, tonic::Status> {
    let (frontend, pool, percent) = match verb {
        TrafficVerb::Switch { frontend, pool } => (frontend, pool, 100),
        TrafficVerb::Shift {
            frontend,
            pool,
            percent,
        } => (frontend, pool, *percent),
    };
    for _ in 0..ATTEMPTS {
        let request = client.request(pb::GetConfigRequest { local: false }, CALL_TIMEOUT);
        let reply = client.inner.get_config(request).await?.into_inner();
        let mut spec = convert::from_proto(reply.config.unwrap_or_default())
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        if !spec.pools.iter().any(|p| p.name == *pool) {
            return Ok(Outcome::Usage(format!("no pool named {pool:?}")));
        }
        let Some(front) = spec.frontends.iter_mut().find(|f| f.name == *frontend) else {
            return Ok(Outcome::Usage(format!("no frontend named {frontend:?}")));
        };
        if let Err(why) = share(front, pool, percent) {
            return Ok(Outcome::Usage(why));
        }
        let message = pb::ApplyConfigRequest {
            config: Some(convert::to_proto(&spec)),
            if_version: Some(reply.version),
            dry_run: false,
            // Each attempt its own: a refused one is not the same write.
            request_id: client.ids.id("traffic"),
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

/// Gives `pool` `percent` of `front`'s requests: 100 makes it the
/// frontend's pool (a switch, any split gone), 0 ends the split, and
/// between them the frontend's own pool keeps the rest.
fn share(front: &mut FrontendSpec, pool: &str, percent: u32) -> Result<(), String> {
    if percent == 100 {
        front.pool = pool.to_string();
        front.split.clear();
        return Ok(());
    }
    if front.pool == pool {
        return Err(format!(
            "{pool:?} is the frontend's own pool: shift another pool's share, or switch"
        ));
    }
    front.split = if percent == 0 {
        Vec::new()
    } else {
        vec![
            SplitArm {
                pool: front.pool.clone(),
                weight: 100 - percent,
            },
            SplitArm {
                pool: pool.to_string(),
                weight: percent,
            },
        ]
    };
    Ok(())
}
