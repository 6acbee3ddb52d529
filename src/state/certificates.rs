//! Certificates the cluster serves on its HTTPS frontends: kept in the
//! cluster state (committed through Raft like any change, the same on
//! every node), added and replaced with `raftlb ctl cert`. A key is stored
//! with its certificate but never shown: what leaves the state is a
//! certificate's [`CertificateInfo`] (name, DNS names, fingerprint,
//! expiry).

use std::collections::BTreeMap;
use std::fmt;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::StateError;

/// A certificate chain and its private key, as committed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCertificate {
    /// The entry's name (not a DNS name): `site`, `wildcard-example`.
    pub name: String,
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// The leaf's private key (PEM). Never printed or logged.
    pub key_pem: String,
    /// Served to clients that send no SNI, or a name no certificate has.
    #[serde(default)]
    pub default: bool,
    /// Ordered and renewed by the leader from an ACME server; the chain
    /// and key are empty until the first order is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSettings>,
}

/// How an ACME certificate is ordered (`ctl cert add NAME --acme …`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeSettings {
    /// The ACME server's directory URL.
    pub directory: String,
    /// Contact URLs for the account (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// The DNS names ordered, lower case.
    pub names: Vec<String>,
    /// CA certificates (PEM) to trust for the directory's own TLS (a
    /// private or test ACME server); none: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_ca_pem: Option<String>,
    /// The ACME account's credentials (JSON, with its private key), made
    /// at the first order and kept for the next ones. Never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Order anew at the leader's next look, whatever the expiry
    /// (`ctl cert renew`).
    #[serde(default)]
    pub renew: bool,
}

impl StoredCertificate {
    /// An ACME entry whose first order is not done yet: nothing to serve.
    pub fn is_pending(&self) -> bool {
        self.acme.is_some() && self.chain_pem.is_empty()
    }
}

impl fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("name", &self.name)
            .field("default", &self.default)
            .field("key_pem", &"<redacted>")
            .field("acme", &self.acme.as_ref().map(|a| &a.names))
            .finish()
    }
}

/// What may be shown of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// The entry's name.
    pub name: String,
    /// The DNS names it serves (its SANs; `*.example.com` for a
    /// wildcard), lower case.
    pub names: Vec<String>,
    /// SHA-256 of the leaf certificate, hex.
    pub fingerprint: String,
    /// End of validity, ms since the Unix epoch.
    pub not_after_ms: u64,
    /// Served when no name matches.
    pub default: bool,
    /// Ordered from an ACME server (an empty fingerprint: not yet).
    #[serde(default)]
    pub acme: bool,
}

/// The certificates in the state, by entry name.
pub type Certificates = BTreeMap<String, StoredCertificate>;

fn chain(certificate: &StoredCertificate) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(certificate.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable chain: {e}"))?;
    if chain.is_empty() {
        return Err("the chain holds no certificate".into());
    }
    Ok(chain)
}

/// `certificate` ready for handshakes, with what may be shown of it: the
/// chain and key parsed and checked to belong together.
pub fn load(
    certificate: &StoredCertificate,
) -> Result<(CertificateInfo, Arc<CertifiedKey>), String> {
    let chain = chain(certificate)?;
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes())
        .map_err(|_| "unreadable private key (PEM: PKCS#8, PKCS#1 or SEC1)".to_string())?;
    let info = describe(certificate, &chain[0])?;
    let key = CertifiedKey::from_der(chain, key, &crate::tls::provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".to_string(),
        other => format!("unusable key: {other}"),
    })?;
    Ok((info, Arc::new(key)))
}

/// Checks `certificate` and says what may be shown of it.
pub fn inspect(certificate: &StoredCertificate) -> Result<CertificateInfo, String> {
    if certificate.is_pending() {
        return Ok(pending(certificate));
    }
    load(certificate).map(|(info, _)| info)
}

/// What is shown of an ACME entry not yet ordered.
fn pending(certificate: &StoredCertificate) -> CertificateInfo {
    CertificateInfo {
        name: certificate.name.clone(),
        names: certificate
            .acme
            .as_ref()
            .map(|a| a.names.clone())
            .unwrap_or_default(),
        fingerprint: String::new(),
        not_after_ms: 0,
        default: certificate.default,
        acme: true,
    }
}

/// The DNS names a certificate serves, from its leaf alone (no key work);
/// an ACME entry's, the names it orders.
fn names(certificate: &StoredCertificate) -> Result<Vec<String>, String> {
    if let Some(acme) = &certificate.acme {
        return Ok(acme.names.clone());
    }
    let chain = chain(certificate)?;
    Ok(describe(certificate, &chain[0])?.names)
}

impl crate::config::CertificateFile {
    /// The entry as the store keeps it: its PEM files read (ACME: its
    /// directory CA file), its contact made a `mailto:` URL, its names
    /// lower case.
    pub fn to_stored(&self) -> Result<StoredCertificate, String> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("certificate {}: {path}: {e}", self.name))
        };
        let (chain_pem, key_pem) = match (&self.cert, &self.key, &self.acme) {
            (Some(cert), Some(key), None) => (read(cert)?, read(key)?),
            (None, None, Some(_)) => (String::new(), String::new()),
            _ => {
                return Err(format!(
                    "certificate {}: give cert and key, or acme",
                    self.name
                ));
            }
        };
        let acme = match &self.acme {
            None => None,
            Some(acme) => Some(AcmeSettings {
                directory: acme.directory.clone(),
                contact: acme
                    .contact
                    .iter()
                    .map(|c| match c.starts_with("mailto:") {
                        true => c.clone(),
                        false => format!("mailto:{c}"),
                    })
                    .collect(),
                names: acme.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                directory_ca_pem: acme.directory_ca.as_deref().map(read).transpose()?,
                account: None,
                renew: false,
            }),
        };
        Ok(StoredCertificate {
            name: self.name.clone(),
            chain_pem,
            key_pem,
            default: self.default,
            acme,
        })
    }
}

/// Whether putting `new` over `old` would only drop what the leader
/// ordered: the same ACME settings again, as a `cluster.toml` applied
/// anew gives them (nothing to do).
pub fn same_acme_order(old: &StoredCertificate, new: &StoredCertificate) -> bool {
    match (&old.acme, &new.acme) {
        (Some(was), Some(now)) => {
            new.chain_pem.is_empty()
                && old.default == new.default
                && was.directory == now.directory
                && was.contact == now.contact
                && was.names == now.names
                && was.directory_ca_pem == now.directory_ca_pem
        }
        _ => false,
    }
}

/// Checks an ACME entry's settings.
fn check_acme(acme: &AcmeSettings) -> Result<(), String> {
    let url = acme
        .directory
        .parse::<http::Uri>()
        .map_err(|_| format!("directory {:?} is not a URL", acme.directory))?;
    if url.scheme_str() != Some("https") || url.host().is_none() {
        return Err(format!(
            "directory {:?} must be an https URL",
            acme.directory
        ));
    }
    if acme.names.is_empty() {
        return Err("an ACME certificate needs at least one name".into());
    }
    for name in &acme.names {
        let valid = rustls::pki_types::DnsName::try_from(name.as_str()).is_ok()
            && name.parse::<std::net::IpAddr>().is_err();
        if !valid || name != &name.to_ascii_lowercase() {
            return Err(format!("{name:?} is not a lower-case DNS name"));
        }
    }
    for contact in &acme.contact {
        if !contact.starts_with("mailto:") {
            return Err(format!("contact {contact:?} must be a mailto: URL"));
        }
    }
    if let Some(pem) = &acme.directory_ca_pem {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("directory CA: unreadable PEM: {e}"))?;
        if roots.is_empty() {
            return Err("directory CA: no certificate in it".into());
        }
    }
    Ok(())
}

/// What may be shown of `certificate`, whose leaf is `leaf`.
fn describe(certificate: &StoredCertificate, leaf: &[u8]) -> Result<CertificateInfo, String> {
    let facts = crate::tls::x509::read(leaf)?;
    // An old-style certificate without DNS names: its common name.
    let names = if facts.dns_names.is_empty() {
        facts.common_names
    } else {
        facts.dns_names
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
    Ok(CertificateInfo {
        name: certificate.name.clone(),
        names,
        fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        not_after_ms: facts.not_after_ms,
        default: certificate.default,
        acme: certificate.acme.is_some(),
    })
}

/// Puts `certificate` into `certificates` (adding, or replacing an entry
/// of that name), refusing a bad one, a DNS name another entry serves, or
/// a second default (a new default takes the role from the old one).
pub fn put(
    certificates: &mut Certificates,
    certificate: StoredCertificate,
    replace: bool,
) -> Result<CertificateInfo, StateError> {
    let name = certificate.name.clone();
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_name {
        return Err(StateError::invalid(
            "certificate.name",
            &name,
            "1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    match (certificates.contains_key(&name), replace) {
        (true, false) => {
            return Err(StateError::AlreadyExists {
                what: format!("certificate {name:?} (replace it with ctl cert replace)"),
            });
        }
        (false, true) => {
            return Err(StateError::NotFound {
                what: format!("certificate {name:?}"),
            });
        }
        _ => {}
    }
    if let Some(acme) = &certificate.acme {
        check_acme(acme).map_err(|why| StateError::invalid("certificate.acme", &name, why))?;
    }
    let info =
        inspect(&certificate).map_err(|why| StateError::invalid("certificate", &name, why))?;
    for (other_name, other) in certificates.iter() {
        if *other_name == name {
            continue;
        }
        let Ok(other_names) = names(other) else {
            continue;
        };
        if let Some(clash) = info.names.iter().find(|n| other_names.contains(n)) {
            return Err(StateError::invalid(
                "certificate",
                &name,
                format!("{clash} is already served by certificate {other_name:?}"),
            ));
        }
    }
    if certificate.default {
        for other in certificates.values_mut() {
            other.default = false;
        }
    }
    certificates.insert(name, certificate);
    Ok(info)
}

/// What changed between two sets of certificates, for the history and the
/// command's answer: names, DNS names, fingerprint and expiry only.
pub fn changes(before: &Certificates, after: &Certificates) -> Vec<super::Change> {
    use super::{Change, ChangeKind};
    let shown = |c: &StoredCertificate| match inspect(c) {
        Ok(info) if info.fingerprint.is_empty() => {
            format!("{} (ACME, not ordered yet)", info.names.join(" "))
        }
        Ok(info) => format!(
            "{} (sha256 {}, until {}{})",
            info.names.join(" "),
            &info.fingerprint[..16],
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(info.not_after_ms)
            ),
            if info.default { ", default" } else { "" }
        ),
        Err(why) => why,
    };
    let mut changes = Vec::new();
    for (name, old) in before {
        match after.get(name) {
            None => changes.push(Change {
                kind: ChangeKind::Removed,
                object: "certificate".into(),
                name: name.clone(),
                detail: String::new(),
            }),
            Some(new) if new != old => changes.push(Change {
                kind: ChangeKind::Changed,
                object: "certificate".into(),
                name: name.clone(),
                detail: shown(new),
            }),
            Some(_) => {}
        }
    }
    for (name, new) in after {
        if !before.contains_key(name) {
            changes.push(Change {
                kind: ChangeKind::Added,
                object: "certificate".into(),
                name: name.clone(),
                detail: shown(new),
            });
        }
    }
    changes
}

#[cfg(test)]
mod acme_tests {
    use super::*;

    #[test]
    fn the_same_acme_entry_again_keeps_what_was_ordered() {
        let settings = AcmeSettings {
            directory: "https://acme.test/dir".into(),
            contact: vec!["mailto:ops@example.com".into()],
            names: vec!["a.test".into()],
            directory_ca_pem: None,
            account: None,
            renew: false,
        };
        let asked = StoredCertificate {
            name: "a".into(),
            chain_pem: String::new(),
            key_pem: String::new(),
            default: false,
            acme: Some(settings.clone()),
        };
        let mut ordered = asked.clone();
        ordered.chain_pem = "CHAIN".into();
        ordered.key_pem = "KEY".into();
        if let Some(acme) = ordered.acme.as_mut() {
            acme.account = Some("{}".into());
        }
        assert!(same_acme_order(&ordered, &asked));
        let mut other = asked.clone();
        other
            .acme
            .as_mut()
            .expect("acme")
            .names
            .push("b.test".into());
        assert!(!same_acme_order(&ordered, &other));
        let mut manual = asked.clone();
        manual.acme = None;
        assert!(!same_acme_order(&ordered, &manual));
    }
}
