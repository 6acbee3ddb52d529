//! `raftlb ctl cert`: certificates for `https` frontends, read from local
//! PEM files and committed to the cluster state. What comes back is never
//! a key: names, DNS names, expiry and fingerprint.

use super::output::{self, changes, table};
use super::{CALL_TIMEOUT, CertFiles, CertVerb, Client, Outcome};
use crate::proto::v1 as pb;
use crate::tls::{days_left, expires_soon};

/// Runs one `cert` verb.
pub async fn run(
    client: &mut Client,
    verb: &CertVerb,
    json: bool,
) -> Result<Outcome, tonic::Status> {
    Ok(match verb {
        CertVerb::Add(files) => return put(client, files, false, json).await,
        CertVerb::Replace(files) => return put(client, files, true, json).await,
        CertVerb::Renew { name } => {
            let message = pb::RenewCertificateRequest {
                name: name.clone(),
                request_id: client.ids.id("cert-renew"),
            };
            let request = client.request(message, CALL_TIMEOUT);
            let reply = client.inner.renew_certificate(request).await?.into_inner();
            Outcome::Done(changes(&reply, json))
        }
        CertVerb::Remove { name } => {
            let message = pb::RemoveCertificateRequest {
                name: name.clone(),
                request_id: client.ids.id("cert-remove"),
            };
            let request = client.request(message, CALL_TIMEOUT);
            let reply = client.inner.remove_certificate(request).await?.into_inner();
            Outcome::Done(changes(&reply, json))
        }
        CertVerb::List { local } => {
            let request =
                client.request(pb::ListCertificatesRequest { local: *local }, CALL_TIMEOUT);
            let reply = client.inner.list_certificates(request).await?.into_inner();
            Outcome::Done(list(&reply, json, crate::control::unix_millis()))
        }
    })
}

async fn put(
    client: &mut Client,
    files: &CertFiles,
    replace: bool,
    json: bool,
) -> Result<Outcome, tonic::Status> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let (chain_pem, key_pem, acme) = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => match (read(cert), read(key)) {
            (Ok(chain), Ok(key)) => (chain, key, None),
            (Err(error), _) | (_, Err(error)) => return Ok(Outcome::Usage(error)),
        },
        _ => {
            let directory_ca_pem = match files.directory_ca.as_deref().map(read).transpose() {
                Ok(pem) => pem,
                Err(error) => return Ok(Outcome::Usage(error)),
            };
            let acme = pb::AcmeCertificate {
                directory: files.directory.clone().unwrap_or_default(),
                contact: files.contact.clone(),
                names: files.domain.clone(),
                directory_ca_pem,
            };
            (String::new(), String::new(), Some(acme))
        }
    };
    let message = pb::PutCertificateRequest {
        name: files.name.clone(),
        chain_pem,
        key_pem,
        default: files.default,
        replace,
        request_id: client.ids.id("cert-put"),
        acme,
    };
    let request = client.request(message, CALL_TIMEOUT);
    let reply = client.inner.put_certificate(request).await?.into_inner();
    Ok(Outcome::Done(changes(&reply, json)))
}

/// For `ctl status`: a warning line for each served certificate within
/// 30 days of its end (nothing when none is, or the node cannot say).
pub async fn expiring(client: &mut Client) -> String {
    let request = client.request(pb::ListCertificatesRequest { local: false }, CALL_TIMEOUT);
    let Ok(reply) = client.inner.list_certificates(request).await else {
        return String::new();
    };
    let now_ms = crate::control::unix_millis();
    reply
        .into_inner()
        .certificates
        .iter()
        .filter(|c| expires_soon(c.not_after_ms, now_ms))
        .map(|c| {
            format!(
                "\nWARNING certificate {} ({}) {}: replace it (ctl cert replace)",
                c.name,
                c.names.join(" "),
                days_left(c.not_after_ms, now_ms)
                    .map_or("has expired".to_string(), |days| format!(
                        "ends in {days} days"
                    ))
            )
        })
        .collect()
}

/// `cert list`: one row per certificate, with a warning for those within
/// 30 days of their end.
fn list(reply: &pb::ListCertificatesReply, json: bool, now_ms: u64) -> String {
    if json {
        let certificates: Vec<_> = reply
            .certificates
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "names": c.names, "fingerprint": c.fingerprint,
                    "not_after_ms": c.not_after_ms, "default": c.default, "acme": c.acme,
                })
            })
            .collect();
        return serde_json::json!({"version": reply.version, "certificates": certificates})
            .to_string();
    }
    let rows = reply
        .certificates
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.names.join(" "),
                if c.fingerprint.is_empty() {
                    "ordering (ACME)".into()
                } else {
                    output::days_left(c.not_after_ms, now_ms)
                },
                c.fingerprint.chars().take(16).collect(),
                if c.default { "yes" } else { "" }.into(),
            ]
        })
        .collect();
    let warnings: String = reply
        .certificates
        .iter()
        .filter(|c| expires_soon(c.not_after_ms, now_ms))
        .map(|c| {
            format!(
                "\nWARNING certificate {} ends within 30 days: replace it (ctl cert replace)",
                c.name
            )
        })
        .collect();
    format!(
        "{}{warnings}",
        table(&["name", "dns names", "left", "sha256", "default"], rows)
    )
}

/// `ctl apply`'s `[[certificate]]` entries (their files already read):
/// each added, or replaced when the store has one of its name (the same
/// content again changes nothing). What each commit changed, as `ctl
/// cert` prints it.
pub async fn apply_entries(
    client: &mut Client,
    entries: Vec<crate::state::certificates::StoredCertificate>,
    json: bool,
) -> Result<String, tonic::Status> {
    let request = client.request(pb::ListCertificatesRequest { local: false }, CALL_TIMEOUT);
    let present: Vec<String> = client
        .inner
        .list_certificates(request)
        .await?
        .into_inner()
        .certificates
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut printed = String::new();
    for stored in entries {
        let message = pb::PutCertificateRequest {
            replace: present.contains(&stored.name),
            // One id per entry: the invocation's writes are several.
            request_id: client.ids.id(&format!("cert-put-{}", stored.name)),
            acme: stored.acme.map(|a| pb::AcmeCertificate {
                directory: a.directory,
                contact: a.contact,
                names: a.names,
                directory_ca_pem: a.directory_ca_pem,
            }),
            name: stored.name,
            chain_pem: stored.chain_pem,
            key_pem: stored.key_pem,
            default: stored.default,
        };
        let request = client.request(message, CALL_TIMEOUT);
        let reply = client.inner.put_certificate(request).await?.into_inner();
        printed.push_str(&changes(&reply, json));
    }
    Ok(printed)
}
