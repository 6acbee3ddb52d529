//! `raftlb ctl watch`: follows one node's events, and when that node goes
//! away moves to the next endpoint and resumes from the last configuration
//! version it printed, so a change is printed once, whichever node it came
//! through.

use std::io::Write;
use std::time::{Duration, Instant};

use super::client_config::Access;
use super::{Outcome, code_name, connect, describe, is_unreachable, output};
use crate::proto::v1 as pb;

/// How long the watch keeps trying when no endpoint answers.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// Pause after every endpoint failed once in a row.
const ROUND_PAUSE: Duration = Duration::from_millis(200);

/// Streams events until the reader goes away, an endpoint refuses the
/// watch, or no endpoint has answered for [`GIVE_UP_AFTER`].
pub async fn follow(access: &Access, from_version: Option<u64>, json: bool) -> Outcome {
    let (endpoints, token) = (&access.endpoints, &access.token);
    if endpoints.is_empty() {
        return Outcome::Usage("no endpoint given".into());
    }
    // The last configuration version printed (or asked to start after).
    let mut last = from_version;
    let mut last_error = String::new();
    let mut answered_at = Instant::now();
    let mut failed_in_a_row = 0;
    for endpoint in endpoints.iter().cycle() {
        if answered_at.elapsed() > GIVE_UP_AFTER {
            return Outcome::Unreachable(format!(
                "watch: no endpoint answered for {} s: {last_error}",
                GIVE_UP_AFTER.as_secs()
            ));
        }
        if failed_in_a_row > 0 && failed_in_a_row % endpoints.len() == 0 {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        let errors = crate::tls::transport::FirstError::default();
        let mut client = match connect(endpoint, access.tls.as_ref(), &errors).await {
            Ok(client) => client,
            Err(error) => {
                last_error = format!("{endpoint}: {error}");
                failed_in_a_row += 1;
                continue;
            }
        };
        if last.is_none() {
            // Start from the version this node serves, so that a resume
            // elsewhere has a version to start after even before the
            // first change arrives.
            let mut request = tonic::Request::new(pb::StatusRequest {});
            token.attach(&mut request);
            request.set_timeout(Duration::from_secs(5));
            match client.status(request).await {
                Ok(status) => last = Some(status.into_inner().config_version),
                Err(status) => {
                    last_error = format!("{endpoint}: {}", describe(&status));
                    failed_in_a_row += 1;
                    continue;
                }
            }
        }
        let mut request = tonic::Request::new(pb::WatchRequest { from_version: last });
        token.attach(&mut request);
        let mut stream = match client.watch(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) if is_unreachable(&status) => {
                last_error = format!("{endpoint}: {}", describe(&status));
                failed_in_a_row += 1;
                continue;
            }
            Err(status) => {
                return Outcome::Refused(format!(
                    "{}: {}",
                    code_name(status.code()),
                    status.message()
                ));
            }
        };
        answered_at = Instant::now();
        failed_in_a_row = 0;
        let ended = loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    answered_at = Instant::now();
                    if let Some(pb::watch_event::Event::Config(config)) = &event.event {
                        if last.is_some_and(|v| config.version <= v) {
                            continue;
                        }
                        last = Some(config.version);
                    }
                    if writeln!(std::io::stdout(), "{}", output::event(&event, json)).is_err() {
                        // The reader went away (`raftlb ctl watch | head`).
                        return Outcome::Done(String::new());
                    }
                }
                Ok(None) => break "the node closed the stream".to_string(),
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    break status.message().to_string();
                }
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    return Outcome::Refused(status.message().to_string());
                }
                Err(status) => break status.message().to_string(),
            }
        };
        eprintln!(
            "watch: {endpoint}: {ended}; resuming after version {} on the next endpoint",
            last.unwrap_or(0)
        );
        last_error = format!("{endpoint}: {ended}");
    }
    Outcome::Unreachable(last_error)
}
