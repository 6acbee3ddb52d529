//! What raftlb reads of an X.509 certificate (x509-parser does the
//! parsing): its names and its end of validity.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's names and validity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// DNS subject alternative names, lower case.
    pub dns_names: Vec<String>,
    /// URI subject alternative names.
    pub uris: Vec<String>,
    /// The subject's common names, lower case.
    pub common_names: Vec<String>,
    /// The subject's organizational units.
    pub units: Vec<String>,
    /// End of validity, ms since the Unix epoch.
    pub not_after_ms: u64,
}

/// Reads a DER certificate.
pub fn read(der: &[u8]) -> Result<Facts, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut facts = Facts {
        not_after_ms: (cert.validity().not_after.timestamp().max(0) as u64) * 1000,
        ..Facts::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => facts.dns_names.push(dns.to_ascii_lowercase()),
                GeneralName::URI(uri) => facts.uris.push(uri.to_string()),
                _ => {}
            }
        }
    }
    let subject = cert.subject();
    let text = |value: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        value.as_str().ok().map(str::to_string)
    };
    facts.common_names = subject
        .iter_common_name()
        .filter_map(text)
        .map(|cn| cn.to_ascii_lowercase())
        .collect();
    facts.units = subject
        .iter_organizational_unit()
        .filter_map(text)
        .collect();
    Ok(facts)
}
