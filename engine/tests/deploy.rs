//! The shipped Kubernetes deployment agrees with the engine: the `gloam.toml` in the ConfigMap
//! is a valid configuration that joins the gateway's engine Service, and its IPC root is the
//! DaemonSet's in-memory volume. (ci/validate-deploy.sh checks the manifests' schemas.)

use std::path::{Path, PathBuf};

use gloam_engine::config::Config;

fn deploy(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The block scalar under `key: |` in a YAML document, unindented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().unwrap_or_else(|| panic!("no {key}: | block"));
    let indent = head.len() - head.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configmap_is_a_valid_engine_config_for_the_daemonset() {
    let text = block(&deploy("configmap.yaml"), "gloam.toml");
    let config = Config::parse(&text, Path::new("/etc/gloam/gloam.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let join = config.engine.join.as_deref().unwrap_or_default();
    assert!(join.starts_with("gloam-gateway-engines."), "{join}");
    assert!(join.ends_with(":7070"), "{join}");
    assert!(config.functions.iter().any(|f| f.idempotent));
    let daemonset = deploy("engine-daemonset.yaml");
    let root = config.engine.ipc_root.display().to_string();
    assert!(
        daemonset.contains(&format!("mountPath: {root}")),
        "the IPC root {root} is not the DaemonSet's volume"
    );
    assert!(daemonset.contains("medium: Memory"));
    assert!(daemonset.contains(&format!("mountPath: {}", config.engine.log_dir.display())));
    assert!(deploy("gateway.yaml").contains("--engines=0.0.0.0:7070"));
}
