//! Where `raftlb ctl` finds the cluster and how it proves who it is, when
//! the command line does not say: `RAFTLB_ENDPOINT` (`RAFTLB_CA`,
//! `RAFTLB_CERT`, `RAFTLB_KEY`, `RAFTLB_TOKEN`), then the client config
//! file (`$XDG_CONFIG_HOME/raftlb/ctl.toml`, else
//! `~/.config/raftlb/ctl.toml`; `raftlb demo` writes one), then
//! `127.0.0.1:7200` without TLS or token.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The endpoint used when nothing else names one.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7200";

/// The first line of a file `raftlb demo` wrote (and may replace or
/// remove); a file without it is the operator's and is left alone.
pub const DEMO_MARK: &str = "# written by raftlb demo";

/// The client config file. Relative paths are taken from its folder.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Control API addresses of the cluster's nodes.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The cluster's CA bundle (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// A file holding the token, for a cluster that takes tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// What the command line and the environment gave (each overrides the
/// file's setting).
#[derive(Debug, Default, Clone)]
pub struct Given {
    /// `--endpoint` / `RAFTLB_ENDPOINT`.
    pub endpoints: Option<Vec<String>>,
    /// `--ca` / `RAFTLB_CA`.
    pub ca: Option<PathBuf>,
    /// `--cert` / `RAFTLB_CERT`.
    pub cert: Option<PathBuf>,
    /// `--key` / `RAFTLB_KEY`.
    pub key: Option<PathBuf>,
    /// `--token` / `RAFTLB_TOKEN`.
    pub token: Option<String>,
}

/// How `ctl` reaches and authenticates to the cluster.
pub struct Access {
    /// Endpoints, tried in order.
    pub endpoints: Vec<String>,
    /// Mutual TLS settings, when a CA, certificate and key are given.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The token, when one is given.
    pub token: crate::auth::Token,
}

/// Reads the client config file, if there is one.
pub fn read(path: &Path) -> Result<Option<ClientConfig>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut config: ClientConfig =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for file in [
        &mut config.ca,
        &mut config.cert,
        &mut config.key,
        &mut config.token_file,
    ] {
        *file = file.take().map(|f| base.join(f));
    }
    Ok(Some(config))
}

/// The endpoints, TLS settings and token: each from the command line or
/// the environment, else the client config file; the endpoints else
/// [`DEFAULT_ENDPOINT`].
pub fn resolve(given: Given) -> Result<Access, String> {
    let file = match path() {
        Some(path) => read(&path)?.unwrap_or_default(),
        None => ClientConfig::default(),
    };
    let endpoints = given
        .endpoints
        .filter(|e| !e.is_empty())
        .or((!file.endpoints.is_empty()).then_some(file.endpoints))
        .unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_string()]);
    let (ca, cert, key) = (
        given.ca.or(file.ca),
        given.cert.or(file.cert),
        given.key.or(file.key),
    );
    let tls = match (ca, cert, key) {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key)) => Some(
            crate::tls::client_config(&crate::tls::TlsFiles { ca, cert, key })
                .map_err(|e| format!("tls: {e}"))?,
        ),
        _ => return Err("tls: give all three of --ca, --cert and --key (or none)".into()),
    };
    let token = match (given.token, file.token_file) {
        (Some(token), _) => crate::auth::Token::from_value(Some(token)),
        (None, Some(path)) => crate::auth::Token::load(&path)?,
        (None, None) => crate::auth::Token::none(),
    };
    Ok(Access {
        endpoints,
        tls,
        token,
    })
}

/// The client config file's path, if a home or config directory is known.
pub fn path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(config) => PathBuf::from(config),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("raftlb").join("ctl.toml"))
}

/// Writes `endpoints` (and the demo's TLS files) to the client config
/// file for the demo, unless a file there is the operator's; the path
/// written, or why not.
pub fn write_for_demo(
    endpoints: &[String],
    tls: Option<&crate::tls::TlsFiles>,
) -> Result<PathBuf, String> {
    let path = path().ok_or("no HOME or XDG_CONFIG_HOME")?;
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.starts_with(DEMO_MARK)
    {
        return Err(format!("{} exists and is not the demo's", path.display()));
    }
    let body = toml::to_string(&ClientConfig {
        endpoints: endpoints.to_vec(),
        ca: tls.map(|t| t.ca.clone()),
        cert: tls.map(|t| t.cert.clone()),
        key: tls.map(|t| t.key.clone()),
        token_file: None,
    })
    .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, format!("{DEMO_MARK}; removed when it stops\n{body}"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Removes the client config file if the demo wrote it.
pub fn remove_demo_file(path: &Path) {
    if std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(DEMO_MARK)) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_gives_endpoints_and_a_bad_file_is_named() {
        let dir = std::env::temp_dir().join(format!("raftlb-ctl-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("ctl.toml");
        let endpoints_in = |file: &Path| read(file).map(|c| c.map(|c| c.endpoints));
        assert_eq!(endpoints_in(&file), Ok(None));
        std::fs::write(
            &file,
            "endpoints = [\"127.0.0.11:7200\", \"127.0.0.12:7200\"]\n",
        )
        .expect("write");
        assert_eq!(
            endpoints_in(&file),
            Ok(Some(vec![
                "127.0.0.11:7200".into(),
                "127.0.0.12:7200".into()
            ]))
        );
        std::fs::write(&file, "endpoint = \"x\"\n").expect("write");
        let error = read(&file).expect_err("unknown field");
        assert!(error.contains("ctl.toml"), "{error}");
        // Paths are taken from the file's folder.
        std::fs::write(&file, "ca = \"certs/ca.pem\"\n").expect("write");
        let config = read(&file).expect("read").expect("a file");
        assert_eq!(config.ca, Some(dir.join("certs/ca.pem")));
        // Given endpoints win over any file.
        let given = Given {
            endpoints: Some(vec!["10.0.0.1:7200".into()]),
            ..Given::default()
        };
        assert_eq!(
            resolve(given).map(|a| a.endpoints),
            Ok(vec!["10.0.0.1:7200".to_string()])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
