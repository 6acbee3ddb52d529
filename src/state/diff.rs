//! `diff(old, new)`: what a change does, object by object, for `ctl apply`
//! output, history summaries and dry runs.

use serde::{Deserialize, Serialize};

use crate::config::{BackendSpec, ClusterSpec, FrontendSpec, PoolSpec};

/// One difference between two configurations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub kind: ChangeKind,
    /// `frontend`, `pool` or `backend`.
    pub object: String,
    /// The object's name; backends as `pool/address`.
    pub name: String,
    /// For `changed`: which fields, as `field: old -> new`.
    pub detail: String,
}

/// Kinds of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present only in the new configuration.
    Added,
    /// Present only in the old configuration.
    Removed,
    /// Present in both, with different settings.
    Changed,
}

impl ChangeKind {
    /// `+`, `-` or `~`, as diff tools print them.
    pub fn sign(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.kind.sign(), self.object, self.name)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// The changes that turn `old` into `new`: frontends, then pools, then
/// backends, each in the new configuration's order.
pub fn diff(old: &ClusterSpec, new: &ClusterSpec) -> Vec<Change> {
    let mut changes = Vec::new();
    named(
        &mut changes,
        "frontend",
        &old.frontends,
        &new.frontends,
        |f| &f.name,
        frontend_detail,
    );
    named(
        &mut changes,
        "pool",
        &old.pools,
        &new.pools,
        |p| &p.name,
        pool_detail,
    );
    for pool in &new.pools {
        let before = old.pools.iter().find(|p| p.name == pool.name);
        let old_backends = before.map_or(&[][..], |p| &p.backends[..]);
        let mut backend_changes = Vec::new();
        named(
            &mut backend_changes,
            "backend",
            old_backends,
            &pool.backends,
            |b| &b.address,
            backend_detail,
        );
        for mut change in backend_changes {
            change.name = format!("{}/{}", pool.name, change.name);
            changes.push(change);
        }
    }
    for pool in &old.pools {
        if !new.pools.iter().any(|p| p.name == pool.name) {
            for backend in &pool.backends {
                changes.push(Change {
                    kind: ChangeKind::Removed,
                    object: "backend".into(),
                    name: format!("{}/{}", pool.name, backend.address),
                    detail: String::new(),
                });
            }
        }
    }
    changes
}

/// A one-line summary: counts of changes, e.g. `+1 backend, ~1 pool`.
pub fn summarize(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no change".into();
    }
    let mut parts = Vec::new();
    for kind in [ChangeKind::Added, ChangeKind::Removed, ChangeKind::Changed] {
        for object in ["frontend", "pool", "backend"] {
            let count = changes
                .iter()
                .filter(|c| c.kind == kind && c.object == object)
                .count();
            if count > 0 {
                let plural = if count == 1 { "" } else { "s" };
                parts.push(format!("{}{count} {object}{plural}", kind.sign()));
            }
        }
    }
    parts.join(", ")
}

fn named<T: PartialEq>(
    changes: &mut Vec<Change>,
    object: &'static str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
    detail: impl Fn(&T, &T) -> String,
) {
    for item in new {
        match old.iter().find(|o| name(o) == name(item)) {
            None => changes.push(Change {
                kind: ChangeKind::Added,
                object: object.into(),
                name: name(item).clone(),
                detail: String::new(),
            }),
            Some(before) if before != item => {
                // A pool whose only differences are its backends is not
                // itself changed: its backends are listed one by one.
                let detail = detail(before, item);
                if !detail.is_empty() {
                    changes.push(Change {
                        kind: ChangeKind::Changed,
                        object: object.into(),
                        name: name(item).clone(),
                        detail,
                    });
                }
            }
            Some(_) => {}
        }
    }
    for item in old {
        if !new.iter().any(|n| name(n) == name(item)) {
            changes.push(Change {
                kind: ChangeKind::Removed,
                object: object.into(),
                name: name(item).clone(),
                detail: String::new(),
            });
        }
    }
}

/// `field: old -> new` for each differing field, compared through serde so
/// no field is forgotten when the model grows.
fn fields<T: Serialize>(old: &T, new: &T, skip: &[&str]) -> String {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return String::new();
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()))
        .filter_map(|k| {
            let (a, b) = (old.get(k), new.get(k));
            (a != b).then(|| {
                let show =
                    |v: Option<&serde_json::Value>| v.map_or("none".to_string(), |v| v.to_string());
                format!("{k}: {} -> {}", show(a), show(b))
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn frontend_detail(old: &FrontendSpec, new: &FrontendSpec) -> String {
    fields(old, new, &[])
}

fn pool_detail(old: &PoolSpec, new: &PoolSpec) -> String {
    // Backends are listed one by one.
    fields(old, new, &["backend"])
}

fn backend_detail(old: &BackendSpec, new: &BackendSpec) -> String {
    fields(old, new, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ClusterSpec {
        toml::from_str(text).expect("spec")
    }

    const OLD: &str = r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
[[pool]]
name = "web"
  [[pool.backend]]
  address = "127.0.0.1:9001"
  [[pool.backend]]
  address = "127.0.0.1:9002"
[[pool]]
name = "old"
  [[pool.backend]]
  address = "127.0.0.1:9901"
"#;

    #[test]
    fn lists_added_removed_and_changed_objects() {
        let new = OLD
            .replace("port = 8080", "port = 8081")
            .replace(
                "address = \"127.0.0.1:9002\"",
                "address = \"127.0.0.1:9002\"\n  weight = 5",
            )
            .replace("127.0.0.1:9001", "127.0.0.1:9003")
            .replace("name = \"old\"", "name = \"new\"");
        let changes = diff(&spec(OLD), &spec(&new));
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "~ frontend web (port: 8080 -> 8081)",
                "+ pool new",
                "- pool old",
                "+ backend web/127.0.0.1:9003",
                "~ backend web/127.0.0.1:9002 (weight: 1 -> 5)",
                "- backend web/127.0.0.1:9001",
                "+ backend new/127.0.0.1:9901",
                "- backend old/127.0.0.1:9901",
            ]
        );
        assert_eq!(
            summarize(&changes),
            "+1 pool, +2 backends, -1 pool, -2 backends, ~1 frontend, ~1 backend"
        );
    }

    #[test]
    fn identical_configurations_have_no_changes() {
        assert!(diff(&spec(OLD), &spec(OLD)).is_empty());
        assert_eq!(summarize(&[]), "no change");
    }
}
