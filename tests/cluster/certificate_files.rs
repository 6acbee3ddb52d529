//! `[[certificate]]` entries in a `cluster.toml`: committed from a seed by
//! the node and from `ctl apply`, files relative to the `cluster.toml`,
//! re-applied without a change, and an ACME entry re-applied without
//! losing what was ordered.

use crate::fixture::*;
use crate::https::{connect_with, served};

/// `ctl apply --file` of `text`, written as `dir/cluster.toml`: exit code
/// and output.
fn apply(node: &Node, dir: &std::path::Path, text: &str) -> (i32, String) {
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).expect("write config");
    let (code, out, err) = ctl(
        &node.api(),
        &["apply", "--file", &file.display().to_string()],
    );
    (code, format!("{out}{err}"))
}

fn leaf_der(pem: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem)
        .expect("pem")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_entries_of_a_cluster_toml_are_committed_from_the_seed_and_ctl_apply() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let ca = TestCa::new();
    let first = ca.site("first", &["files.test"]);
    let base = one_frontend("https", 8443, "round_robin", &[backend.address], "");
    let seed = format!(
        "{base}\n[[certificate]]\nname = \"files\"\ncert = \"{}\"\nkey = \"{}\"\n",
        first.0.display(),
        first.1.display()
    );
    let node = Node::start(&seed).await;
    let address = node.frontend(8443);
    let served_leaf = || {
        tokio::task::block_in_place(|| {
            served(&connect_with(&ca.ca(), address, Some("files.test"), false))
        })
    };
    // From the seed: served once the node is ready.
    assert!(
        wait_until(std::time::Duration::from_secs(5), || {
            std::net::TcpStream::connect(address).is_ok()
        })
        .await
    );
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = served_leaf();
        if seen == leaf_der(&first.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        leaf_der(&first.0),
        "the seed's certificate is not served"
    );

    // ctl apply with files relative to the cluster.toml: replaced.
    let dir = ca
        .site("second", &["files.test"])
        .0
        .parent()
        .expect("dir")
        .to_path_buf();
    let with = |entry: &str| format!("{base}\n{entry}");
    let entry = "[[certificate]]\nname = \"files\"\ncert = \"second.pem\"\nkey = \"second-key.pem\"\n\
                 [[certificate]]\nname = \"ordered\"\nacme = { directory = \"https://acme.test/dir\", contact = \"ops@example.com\", names = [\"ordered.test\"] }\n";
    let (code, out) = tokio::task::block_in_place(|| apply(&node, &dir, &with(entry)));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("certificate files"), "{out}");
    assert!(out.contains("certificate ordered"), "{out}");
    assert_eq!(served_leaf(), leaf_der(&dir.join("second.pem")));
    let version = node.config_version();
    // The same file again changes nothing, the ACME entry included.
    let (code, out) = tokio::task::block_in_place(|| apply(&node, &dir, &with(entry)));
    assert_eq!(code, 0, "{out}");
    assert_eq!(node.config_version(), version, "{out}");
    // A missing file is refused before anything is committed.
    let broken =
        "[[certificate]]\nname = \"files\"\ncert = \"absent.pem\"\nkey = \"second-key.pem\"\n";
    let (code, out) = tokio::task::block_in_place(|| apply(&node, &dir, &with(broken)));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("absent.pem"), "{out}");
    assert_eq!(node.config_version(), version);
    let (_, list, _) = tokio::task::block_in_place(|| ctl(&node.api(), &["cert", "list"]));
    assert!(list.contains("ordering (ACME)"), "{list}");
    // The keys read from the files show nowhere.
    let (_, history, _) = tokio::task::block_in_place(|| ctl(&node.api(), &["history"]));
    let (_, config, _) = tokio::task::block_in_place(|| ctl(&node.api(), &["get"]));
    for (what, text) in [
        ("history", history),
        ("get", config),
        ("cert list", list),
        ("log", node.log()),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "a key in {what}");
    }
}
