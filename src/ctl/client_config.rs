//! Where `raftlb ctl` finds the cluster when `--endpoint` is not given:
//! `RAFTLB_ENDPOINT`, then `endpoints` in the client config file
//! (`$XDG_CONFIG_HOME/raftlb/ctl.toml`, else `~/.config/raftlb/ctl.toml`;
//! `raftlb demo` writes one), then `127.0.0.1:7200`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The endpoint used when nothing else names one.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7200";

/// The first line of a file `raftlb demo` wrote (and may replace or
/// remove); a file without it is the operator's and is left alone.
pub const DEMO_MARK: &str = "# written by raftlb demo";

/// The client config file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Control API addresses of the cluster's nodes.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// The client config file's path, if a home or config directory is known.
pub fn path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(config) => PathBuf::from(config),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("raftlb").join("ctl.toml"))
}

/// The endpoints in the file at `path`: `Ok(None)` when there is no file,
/// an error naming the file when it cannot be read or parsed.
pub fn read_endpoints(path: &Path) -> Result<Option<Vec<String>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let config: ClientConfig =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((!config.endpoints.is_empty()).then_some(config.endpoints))
}

/// The endpoints to use: those given (flag or `RAFTLB_ENDPOINT`), else the
/// client config file's, else [`DEFAULT_ENDPOINT`].
pub fn endpoints(given: Option<Vec<String>>) -> Result<Vec<String>, String> {
    if let Some(given) = given.filter(|g| !g.is_empty()) {
        return Ok(given);
    }
    if let Some(path) = path()
        && let Some(endpoints) = read_endpoints(&path)?
    {
        return Ok(endpoints);
    }
    Ok(vec![DEFAULT_ENDPOINT.to_string()])
}

/// Writes `endpoints` to the client config file for the demo, unless a
/// file there is the operator's; the path written, or why not.
pub fn write_for_demo(endpoints: &[String]) -> Result<PathBuf, String> {
    let path = path().ok_or("no HOME or XDG_CONFIG_HOME")?;
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.starts_with(DEMO_MARK)
    {
        return Err(format!("{} exists and is not the demo's", path.display()));
    }
    let body = toml::to_string(&ClientConfig {
        endpoints: endpoints.to_vec(),
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
        assert_eq!(read_endpoints(&file), Ok(None));
        std::fs::write(
            &file,
            "endpoints = [\"127.0.0.11:7200\", \"127.0.0.12:7200\"]\n",
        )
        .expect("write");
        assert_eq!(
            read_endpoints(&file),
            Ok(Some(vec![
                "127.0.0.11:7200".into(),
                "127.0.0.12:7200".into()
            ]))
        );
        std::fs::write(&file, "endpoint = \"x\"\n").expect("write");
        let error = read_endpoints(&file).expect_err("unknown field");
        assert!(error.contains("ctl.toml"), "{error}");
        // Given endpoints win over any file.
        assert_eq!(
            endpoints(Some(vec!["10.0.0.1:7200".into()])),
            Ok(vec!["10.0.0.1:7200".to_string()])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
