//! `raftlb ctl traffic`: deployments. `shift` gives another pool a share
//! of a frontend's requests (a canary); `switch` moves the frontend to it
//! (blue/green), any split gone. Each is one committed version: every
//! node serves it from the same Raft entry, requests in flight finish
//! where they are, the change is in `history`, and `rollback` undoes it.
//!
//! `shift --step` walks a canary forward: each step is one version,
//! watched for `--every`; the pool's 5xx answers over the step, summed
//! from every node's counters, decide whether the walk goes on or rolls
//! the frontend back to where it began.
//!
//! Each change reads the configuration, changes the frontend and applies
//! it on the condition that nothing else changed meanwhile (`if_version`),
//! reading again and retrying when something did.

use std::collections::HashMap;
use std::time::Duration;

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
    let (frontend, pool, percent, note) = match verb {
        TrafficVerb::Switch { frontend, pool } => (
            frontend,
            pool,
            100,
            format!("traffic switch {frontend} {pool}"),
        ),
        TrafficVerb::Shift {
            frontend,
            pool,
            percent,
            step: None,
            ..
        } => (
            frontend,
            pool,
            *percent,
            format!("traffic shift {frontend} {pool} {percent}"),
        ),
        TrafficVerb::Shift {
            frontend,
            pool,
            percent,
            step: Some(step),
            every,
            until,
            max_5xx,
            min_requests,
        } => {
            let walk = Walk {
                frontend,
                pool,
                from: *percent,
                step: *step,
                every: every.unwrap_or(Duration::from_secs(60)),
                until: *until,
                max_5xx: *max_5xx,
                min_requests: *min_requests,
            };
            return walk.run(client, json).await;
        }
    };
    let changed = change(client, frontend, Some(pool), &note, |f| {
        share(f, pool, percent)
    })
    .await?;
    let reply = match changed {
        Ok(reply) => reply,
        Err(outcome) => return Ok(outcome),
    };
    let served = served_everywhere(client, reply.version).await?;
    if json {
        // Machine output stays one JSON document.
        return Ok(Outcome::Done(changes(&reply, json)));
    }
    Ok(Outcome::Done(format!(
        "{}\n{served}",
        changes(&reply, json)
    )))
}

/// Longest wait for every node to serve a change.
const SERVED_WAIT: Duration = Duration::from_secs(5);

/// Waits until every node that answers serves `version` (or
/// [`SERVED_WAIT`] passes), and says so: how many nodes, how soon after
/// the commit.
async fn served_everywhere(client: &mut Client, version: u64) -> Result<String, tonic::Status> {
    let started = std::time::Instant::now();
    loop {
        let request = client.request(pb::StatusRequest {}, CALL_TIMEOUT);
        let status = client.inner.status(request).await?.into_inner();
        let serves = |n: &&pb::NodeInfo| n.config_version.is_some_and(|v| v >= version);
        let serving = status.nodes.iter().filter(serves).count();
        let total = status.nodes.len();
        let elapsed = started.elapsed();
        if serving == total || elapsed >= SERVED_WAIT {
            let behind: Vec<String> = status
                .nodes
                .iter()
                .filter(|n| !serves(n))
                .map(|n| n.id.to_string())
                .collect();
            let mut line = format!(
                "version {version} served by {serving} of {total} nodes {} ms after the commit",
                elapsed.as_millis()
            );
            if !behind.is_empty() {
                line.push_str(&format!(
                    " (not yet, or not answering: node {})",
                    behind.join(", ")
                ));
            }
            return Ok(line);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Times a step is watched for `--every` while it has seen fewer than
/// `--min-requests` requests.
const WATCHES: u32 = 3;

/// A canary walk's settings.
struct Walk<'a> {
    frontend: &'a str,
    pool: &'a str,
    from: u32,
    step: u32,
    every: Duration,
    until: u32,
    max_5xx: f64,
    min_requests: u64,
}

impl Walk<'_> {
    async fn run(&self, client: &mut Client, json: bool) -> Result<Outcome, tonic::Status> {
        if self.until < self.from {
            return Ok(Outcome::Usage(format!(
                "--until {} is below the first step's {} %",
                self.until, self.from
            )));
        }
        if !(0.0..=100.0).contains(&self.max_5xx) {
            return Ok(Outcome::Usage("--max-5xx is a percentage, 0 to 100".into()));
        }
        // Where the walk began: what a failed step goes back to.
        let (spec, _) = read(client).await?;
        let Some(origin) = spec.frontends.iter().find(|f| f.name == self.frontend) else {
            return Ok(Outcome::Usage(format!(
                "no frontend named {:?}",
                self.frontend
            )));
        };
        let origin = (origin.pool.clone(), origin.split.clone());
        let pool = self.pool;
        let mut percent = self.from;
        loop {
            let note = format!(
                "traffic shift {} {pool} {percent} (walk to {}, step {})",
                self.frontend, self.until, self.step
            );
            if let Err(outcome) = change(client, self.frontend, Some(pool), &note, |f| {
                share(f, pool, percent)
            })
            .await?
            {
                return Ok(outcome);
            }
            let (requests, errors) = match self.watch(client).await {
                Ok(counts) => counts,
                Err(status) => {
                    let why = format!(
                        "the nodes' counters could not be read ({})",
                        status.message()
                    );
                    return self.roll_back(client, &origin, &why).await;
                }
            };
            let ratio = if requests == 0 {
                0.0
            } else {
                errors as f64 * 100.0 / requests as f64
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"percent": percent, "requests": requests, "errors": errors})
                );
            } else {
                println!(
                    "{percent:>3} %: {pool} answered {requests} requests, {errors} with 5xx or failed ({ratio:.1} %)"
                );
            }
            if ratio > self.max_5xx {
                let why = format!(
                    "{pool} answered {ratio:.1} % 5xx at {percent} %, over --max-5xx {} %",
                    self.max_5xx
                );
                return self.roll_back(client, &origin, &why).await;
            }
            if requests < self.min_requests {
                // No evidence either way: the canary stays where it is.
                return Ok(Outcome::Refused(format!(
                    "stopped at {percent} %: {pool} answered {requests} requests over {} watches of {} \
                     (--min-requests {}); {} stays as it is",
                    WATCHES,
                    humantime::format_duration(self.every),
                    self.min_requests,
                    self.frontend
                )));
            }
            if percent >= self.until {
                return Ok(Outcome::Done(format!(
                    "{pool} has {percent} % of {}'s requests",
                    self.frontend
                )));
            }
            percent = (percent + self.step).min(self.until);
        }
    }

    /// Watches the pool for `--every`, again while it saw fewer than
    /// `--min-requests` (up to [`WATCHES`] times): its requests, and its
    /// 5xx answers and failed exchanges, summed over the nodes.
    async fn watch(&self, client: &mut Client) -> Result<(u64, u64), tonic::Status> {
        let before = pool_answers(client, self.pool).await?;
        let mut counts = (0, 0);
        for _ in 0..WATCHES {
            tokio::time::sleep(self.every).await;
            let after = pool_answers(client, self.pool).await?;
            counts = over_step(&before, &after);
            if counts.0 >= self.min_requests {
                break;
            }
        }
        Ok(counts)
    }

    /// Puts the frontend's pool and split back as they were before the
    /// walk, as one more version, and says why.
    async fn roll_back(
        &self,
        client: &mut Client,
        (pool, split): &(String, Vec<SplitArm>),
        why: &str,
    ) -> Result<Outcome, tonic::Status> {
        let note = format!("traffic walk rolled back: {why}");
        let restored = change(client, self.frontend, None, &note, |f| {
            f.pool = pool.clone();
            f.split = split.clone();
            Ok(())
        })
        .await?;
        Ok(match restored {
            Err(outcome) => outcome,
            Ok(_) => Outcome::Refused(format!(
                "rolled back: {why}; {} is back where the walk began",
                self.frontend
            )),
        })
    }
}

/// The configuration and its version.
async fn read(client: &mut Client) -> Result<(crate::config::ClusterSpec, u64), tonic::Status> {
    let request = client.request(pb::GetConfigRequest { local: false }, CALL_TIMEOUT);
    let reply = client.inner.get_config(request).await?.into_inner();
    let spec = convert::from_proto(reply.config.unwrap_or_default())
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok((spec, reply.version))
}

/// Changes frontend `frontend` with `edit` as one version, checking that
/// `pool` (if given) exists; `Err` holds the outcome of a refusal.
async fn change(
    client: &mut Client,
    frontend: &str,
    pool: Option<&str>,
    note: &str,
    edit: impl Fn(&mut FrontendSpec) -> Result<(), String>,
) -> Result<Result<pb::ChangeReply, Outcome>, tonic::Status> {
    for _ in 0..ATTEMPTS {
        let (mut spec, version) = read(client).await?;
        if let Some(pool) = pool
            && !spec.pools.iter().any(|p| p.name == pool)
        {
            return Ok(Err(Outcome::Usage(format!("no pool named {pool:?}"))));
        }
        let Some(front) = spec.frontends.iter_mut().find(|f| f.name == frontend) else {
            return Ok(Err(Outcome::Usage(format!(
                "no frontend named {frontend:?}"
            ))));
        };
        if let Err(why) = edit(front) {
            return Ok(Err(Outcome::Usage(why)));
        }
        let message = pb::ApplyConfigRequest {
            config: Some(convert::to_proto(&spec)),
            if_version: Some(version),
            dry_run: false,
            // Each attempt its own: a refused one is not the same write.
            request_id: client.ids.numbered("traffic"),
            note: Some(note.to_string()),
        };
        let request = client.request(message, CALL_TIMEOUT);
        match client.inner.apply_config(request).await {
            Ok(reply) => return Ok(Ok(reply.into_inner())),
            // Another write came first: read again.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => continue,
            Err(status) => return Err(status),
        }
    }
    Ok(Err(Outcome::Refused(format!(
        "the configuration kept changing: {ATTEMPTS} attempts, none applied"
    ))))
}

/// Each reached node's count of `pool`'s requests, and of its 5xx answers
/// and failed exchanges.
async fn pool_answers(
    client: &mut Client,
    pool: &str,
) -> Result<HashMap<u64, (u64, u64)>, tonic::Status> {
    let request = client.request(pb::TrafficRequest {}, CALL_TIMEOUT);
    let reply = client.inner.traffic(request).await?.into_inner();
    Ok(reply
        .nodes
        .iter()
        .filter(|node| node.reached)
        .map(|node| {
            let backends = node.backends.iter().filter(|b| b.pool == pool);
            let counts = backends.fold((0, 0), |(requests, errors), b| {
                (requests + b.requests, errors + b.errors + b.failures)
            });
            (node.id, counts)
        })
        .collect())
}

/// Requests and errors between two samples, over the nodes in both (a
/// node that restarted counts from zero).
fn over_step(before: &HashMap<u64, (u64, u64)>, after: &HashMap<u64, (u64, u64)>) -> (u64, u64) {
    after.iter().fold((0, 0), |(requests, errors), (id, now)| {
        let Some(&then) = before.get(id) else {
            return (requests, errors);
        };
        let (r, e) = if now.0 < then.0 {
            *now
        } else {
            (now.0 - then.0, now.1.saturating_sub(then.1))
        };
        (requests + r, errors + e)
    })
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
