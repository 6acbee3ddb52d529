//! The leader orders and renews the cluster's ACME certificates
//! (`ctl cert add NAME --acme …`) with instant-acme.
//!
//! Every `CHECK_EVERY` the leader looks at each ACME entry: one not yet
//! ordered, one within `RENEW_BEFORE_MS` of its end, one whose names
//! changed, or one marked by `ctl cert renew`, is ordered now. HTTP-01
//! challenges are answered by every node: the leader commits each token's
//! answer (no configuration change), so whichever node the VIP or DNS
//! sends the validator to answers it. The certificate and its new key are
//! committed like a manual one (`PutCertificate`, a new version), with the
//! account's credentials, which the next order (maybe by another leader)
//! reuses. A failed order is logged and tried again `RETRY_AFTER` later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::control::{ClusterControl, unix_millis};
use crate::state::Command;
use crate::state::certificates::{AcmeSettings, StoredCertificate};

/// How often the leader looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Renewed this long before the certificate's end (as certbot does).
const RENEW_BEFORE_MS: u64 = 30 * crate::tls::DAY_MS;
/// A failed order is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// An order (account, challenges, issuance) must be done within this.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs until `stop`.
pub(super) async fn run(control: Arc<ClusterControl>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if control.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let state = control.served.state();
        for certificate in state.certificates.values() {
            let Some(acme) = &certificate.acme else {
                continue;
            };
            if !due(certificate, acme, unix_millis())
                || failed
                    .get(&certificate.name)
                    .is_some_and(|at| at.elapsed() < RETRY_AFTER)
            {
                continue;
            }
            tracing::info!(certificate = %certificate.name, names = ?acme.names, "ordering an ACME certificate");
            let ordered = tokio::select! {
                ordered = tokio::time::timeout(ORDER_TIMEOUT, order(&control, certificate, acme)) => ordered,
                () = stop.cancelled() => return,
            };
            match ordered {
                Ok(Ok(())) => {
                    failed.remove(&certificate.name);
                    tracing::info!(certificate = %certificate.name, "ACME certificate issued and committed");
                }
                Ok(Err(error)) => {
                    failed.insert(certificate.name.clone(), Instant::now());
                    tracing::warn!(certificate = %certificate.name, %error, "ACME order failed; trying again in a minute");
                }
                Err(_) => {
                    failed.insert(certificate.name.clone(), Instant::now());
                    tracing::warn!(certificate = %certificate.name, "ACME order took over two minutes; trying again in a minute");
                }
            }
        }
    }
}

/// Whether `certificate` is to be ordered now.
fn due(certificate: &StoredCertificate, acme: &AcmeSettings, now_ms: u64) -> bool {
    if acme.renew || certificate.is_pending() {
        return true;
    }
    match crate::state::certificates::inspect(certificate) {
        Ok(info) => {
            info.not_after_ms < now_ms + RENEW_BEFORE_MS || {
                let (mut have, mut want) = (info.names, acme.names.clone());
                have.sort();
                want.sort();
                have != want
            }
        }
        Err(_) => true,
    }
}

/// One order, start to commit.
async fn order(
    control: &Arc<ClusterControl>,
    certificate: &StoredCertificate,
    acme: &AcmeSettings,
) -> Result<(), String> {
    let (account, credentials) = account(acme).await?;
    let identifiers: Vec<Identifier> = acme
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut tokens = Vec::new();
    let answered = answer_challenges(control, &mut order, &mut tokens).await;
    let issued = match answered {
        Ok(()) => issue(&mut order).await,
        Err(error) => Err(error),
    };
    for token in tokens {
        let command = Command::RemoveAcmeChallenge {
            token: token.clone(),
        };
        let id = format!("acme-done-{token}");
        if let Err(error) = control.write(command, caller(control), Some(id)).await {
            tracing::warn!(%error, "cannot withdraw an ACME challenge");
        }
    }
    let (chain_pem, key_pem) = issued?;
    let mut settings = acme.clone();
    settings.renew = false;
    settings.account = Some(credentials);
    let command = Command::PutCertificate {
        certificate: StoredCertificate {
            name: certificate.name.clone(),
            chain_pem,
            key_pem,
            default: certificate.default,
            acme: Some(settings),
        },
        replace: true,
    };
    control
        .write(command, caller(control), None)
        .await
        .map_err(|e| format!("committing the certificate: {e}"))?;
    Ok(())
}

/// The entry's account, or a new one, with its credentials as committed
/// (JSON).
async fn account(acme: &AcmeSettings) -> Result<(Account, String), String> {
    let builder = match &acme.directory_ca_pem {
        None => Account::builder().map_err(|e| format!("ACME client: {e}"))?,
        Some(pem) => {
            // instant-acme reads a private directory's CA from a file.
            let file = std::env::temp_dir().join(format!(
                "raftlb-acme-ca-{}-{}.pem",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::write(&file, pem).map_err(|e| format!("directory CA: {e}"))?;
            let built = Account::builder_with_root(&file);
            let _ = std::fs::remove_file(&file);
            built.map_err(|e| format!("directory CA: {e}"))?
        }
    };
    if let Some(stored) = &acme.account {
        let credentials: AccountCredentials =
            serde_json::from_str(stored).map_err(|e| format!("stored account: {e}"))?;
        let account = builder
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("account: {e}"))?;
        return Ok((account, stored.clone()));
    }
    let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account at {}: {e}", acme.directory))?;
    let credentials =
        serde_json::to_string(&credentials).map_err(|e| format!("account credentials: {e}"))?;
    Ok((account, credentials))
}

/// Commits the answer of each pending authorization's HTTP-01 challenge
/// (its token into `tokens`), then tells the server it is ready.
async fn answer_challenges(
    control: &Arc<ClusterControl>,
    order: &mut instant_acme::Order,
    tokens: &mut Vec<String>,
) -> Result<(), String> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or("the server offers no http-01 challenge")?;
        let token = challenge.token.clone();
        let command = Command::PutAcmeChallenge {
            token: token.clone(),
            key_authorization: challenge.key_authorization().as_str().to_string(),
        };
        control
            .write(command, caller(control), Some(format!("acme-{token}")))
            .await
            .map_err(|e| format!("committing the challenge: {e}"))?;
        tokens.push(token);
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge ready: {e}"))?;
    }
    Ok(())
}

/// Waits for the order to be ready, finalizes it with a new key, and
/// fetches the chain: (chain, key), PEM.
async fn issue(order: &mut instant_acme::Order) -> Result<(String, String), String> {
    let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|e| format!("waiting for validation: {e}"))?;
    if status != OrderStatus::Ready {
        let detail = order
            .state()
            .error
            .as_ref()
            .map(|p| format!(": {p}"))
            .unwrap_or_default();
        return Err(format!("the order is {status:?}{detail}"));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    Ok((chain_pem, key_pem))
}

fn caller(control: &ClusterControl) -> String {
    format!("node {} (ACME)", control.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(renew: bool) -> (StoredCertificate, AcmeSettings) {
        let acme = AcmeSettings {
            directory: "https://acme.test/dir".into(),
            contact: Vec::new(),
            names: vec!["a.test".into()],
            directory_ca_pem: None,
            account: None,
            renew,
        };
        let certificate = StoredCertificate {
            name: "a".into(),
            chain_pem: String::new(),
            key_pem: String::new(),
            default: false,
            acme: Some(acme.clone()),
        };
        (certificate, acme)
    }

    #[test]
    fn orders_when_pending_renewing_or_near_the_end() {
        let (pending, acme) = entry(false);
        assert!(due(&pending, &acme, unix_millis()));
        // Issued: a year left, the same names: not due; within 30 days, or
        // asked to renew, or other names wanted: due.
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.self_signed(&key).expect("cert");
        let mut issued = pending.clone();
        issued.chain_pem = cert.pem();
        issued.key_pem = key.serialize_pem();
        let now_ms = unix_millis();
        assert!(!due(&issued, &acme, now_ms));
        assert!(due(&issued, &acme, now_ms + 340 * crate::tls::DAY_MS));
        assert!(due(&issued, &entry(true).1, now_ms));
        let mut other_names = acme.clone();
        other_names.names.push("b.test".into());
        assert!(due(&issued, &other_names, now_ms));
    }
}
