//! Tests of the configuration's resolution: defaults, relative paths, engine keys and the
//! errors that name them.

use super::*;
use crate::config::testing::{error, parse};

#[test]
fn defaults_and_resolution() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gloam.toml");
    std::fs::write(
        &path,
        r#"
        [functions.Foo]
        command = "../bin/foo"
        args = ["--x"]
        env = { KEY = "value" }

        [functions.Bar]
        command = "python3"
        dir = "bar"
        min_workers = 20
        workers_per_process = 8
        "#,
    )?;
    let config = Config::load(&path)?;
    assert_eq!(config.source, path);
    let e = &config.engine;
    assert_eq!(e.ipc_root, IpcPaths::default_root());
    assert_eq!(e.io_threads, 2);
    assert_eq!(e.listen, "127.0.0.1:8080".parse::<SocketAddr>()?);
    assert_eq!(e.queue_bound, 1024);
    assert_eq!(e.max_payload, DEFAULT_MAX_PAYLOAD);
    assert_eq!(e.default_timeout, Duration::from_secs(30));
    assert_eq!(e.drain_timeout, Duration::from_secs(5));
    assert_eq!(e.max_connections, None);
    assert_eq!(e.header_read_timeout, Duration::from_secs(10));
    assert_eq!(e.idle_timeout, Duration::from_secs(60));
    assert_eq!(e.log_dir, dir.path().join("logs"));

    // Sorted by id; ids assigned in sorted-name order.
    let names: Vec<_> = config.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["Bar", "Foo"]);
    let bar = config.function("Bar").ok_or(anyhow::anyhow!("Bar"))?;
    assert_eq!(bar.id, 1);
    assert_eq!(bar.command, Some(PathBuf::from("python3")));
    assert_eq!(bar.dir, dir.path().join("bar"));
    // The default max_workers holds min_workers' whole processes (3 × 8).
    assert_eq!((bar.min_workers, bar.max_workers), (20, 24));
    assert_eq!(bar.processes(), 3);

    let foo = config.function_by_id(2).ok_or(anyhow::anyhow!("id 2"))?;
    assert_eq!(foo.name, "Foo");
    assert_eq!(foo.command, Some(dir.path().join("../bin/foo")));
    assert!(foo.command.as_deref().is_some_and(Path::is_absolute));
    assert_eq!(foo.args, ["--x"]);
    assert_eq!(foo.env.get("KEY").map(String::as_str), Some("value"));
    assert_eq!(foo.dir, dir.path());
    assert_eq!((foo.min_workers, foo.max_workers), (1, 16));
    assert_eq!(foo.workers_per_process, 1);
    assert_eq!(foo.processes(), 1);
    assert_eq!(foo.timeout, Duration::from_secs(30));
    assert_eq!(foo.max_payload, DEFAULT_MAX_PAYLOAD);
    assert!(!foo.allow_get);
    assert_eq!(foo.queue_bound, 1024);
    Ok(())
}

#[test]
fn engine_values_flow_into_function_defaults() -> anyhow::Result<()> {
    let config = parse(
        r#"
        [engine]
        ipc_root = "ipc"
        io_threads = 4
        listen = "[::1]:9000"
        queue_bound = 7
        max_payload = 1000
        default_timeout_ms = 250
        drain_timeout_ms = 0
        max_connections = 50
        header_read_timeout_ms = 300
        idle_timeout_ms = 400
        log_dir = "/var/log/gloam"
        join = "gw.example:7070"
        join_token = "s3cret"
        join_ca = "ca.pem"
        node_name = "node-1"

        [functions.A]
        [functions.B]
        idempotent = true
        id = 2
        timeout_ms = 10
        max_payload = 999
        queue_bound = 3
        allow_get = true
        min_workers = 0
        max_workers = 4
        "#,
    )?;
    assert_eq!(config.engine.ipc_root, Path::new("/etc/gloam/ipc"));
    assert_eq!(config.engine.io_threads, 4);
    assert_eq!(config.engine.listen, "[::1]:9000".parse::<SocketAddr>()?);
    assert_eq!(config.engine.drain_timeout, Duration::ZERO);
    assert_eq!(config.engine.max_connections, Some(50));
    assert_eq!(
        config.engine.header_read_timeout,
        Duration::from_millis(300)
    );
    assert_eq!(config.engine.idle_timeout, Duration::from_millis(400));
    assert_eq!(config.engine.log_dir, Path::new("/var/log/gloam"));
    assert_eq!(config.engine.join.as_deref(), Some("gw.example:7070"));
    assert_eq!(config.engine.join_token.as_deref(), Some("s3cret"));
    assert_eq!(
        config.engine.join_ca.as_deref(),
        Some(Path::new("/etc/gloam/ca.pem"))
    );
    assert_eq!(config.engine.node_name.as_deref(), Some("node-1"));
    let a = &config.functions[0];
    assert!(!a.idempotent && config.functions[1].idempotent);
    assert_eq!((a.name.as_str(), a.id), ("A", 1));
    assert_eq!(a.command, None);
    assert_eq!(a.timeout, Duration::from_millis(250));
    assert_eq!((a.max_payload, a.queue_bound), (1000, 7));
    let b = &config.functions[1];
    assert_eq!(
        (b.timeout, b.max_payload, b.queue_bound),
        (Duration::from_millis(10), 999, 3)
    );
    assert!(b.allow_get);
    assert_eq!((b.min_workers, b.max_workers, b.processes()), (0, 4, 0));
    Ok(())
}

#[test]
fn missing_ids_skip_taken_ones() -> anyhow::Result<()> {
    let config =
        parse("[functions.a]\n[functions.b]\nid = 1\n[functions.c]\n[functions.d]\nid = 3\n")?;
    let ids: Vec<_> = config
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.id))
        .collect();
    assert_eq!(ids, [("b", 1), ("a", 2), ("d", 3), ("c", 4)]);
    Ok(())
}

#[test]
fn semantic_errors() {
    let cases = [
        (
            "[functions.\"bad name\"]\n",
            "/etc/gloam/gloam.toml: functions.\"bad name\": function name \"bad name\" has the character ' '",
        ),
        (
            "[functions.A]\nid = 3\n[functions.B]\nid = 3\n",
            "/etc/gloam/gloam.toml: functions.B.id: id 3 is already used by function A",
        ),
        (
            "[functions.A]\nid = 4096\n",
            "/etc/gloam/gloam.toml: functions.A.id: 4096 is out of range; ids are 1..=4095",
        ),
        (
            "[functions.A]\nid = 0\n",
            "/etc/gloam/gloam.toml: functions.A.id: 0 is out of range",
        ),
        (
            "[engine]\nmax_payload = 4294967296\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.max_payload: 4294967296 is out of range",
        ),
        (
            "[engine]\nio_threads = 0\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.io_threads: 0 is out of range; must be 1..=64",
        ),
        (
            "[engine]\nio_threads = 65\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.io_threads: 65 is out of range",
        ),
        (
            "[engine]\nlisten = \"localhost\"\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.listen: \"localhost\" is not an address",
        ),
        (
            "[engine]\nmax_connections = 0\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.max_connections: must be at least 1",
        ),
        (
            "[engine]\nmax_connections = -1\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.max_connections: invalid value: integer `-1`, expected u64",
        ),
        (
            "[engine]\nheader_read_timeout_ms = 0\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.header_read_timeout_ms: must be at least 1 ms",
        ),
        (
            "[engine]\nidle_timeout_ms = 0\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.idle_timeout_ms: must be at least 1 ms",
        ),
        (
            "[engine]\nidle_timeout_ms = \"1m\"\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.idle_timeout_ms: invalid type: string \"1m\", expected u64",
        ),
        (
            "[engine]\nqueue_bound = 0\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.queue_bound: must be at least 1",
        ),
        (
            "[engine]\njoin = \"gateway\"\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.join: \"gateway\" is not a gateway address",
        ),
        (
            "[engine]\njoin_token = \"\"\n[functions.A]\n",
            "/etc/gloam/gloam.toml: engine.join_token: must be 1..=1024 bytes",
        ),
        (
            "[functions.A]\nidempotent = \"yes\"\n",
            "/etc/gloam/gloam.toml: functions.A.idempotent: invalid type: string \"yes\", expected a boolean",
        ),
        ("", "/etc/gloam/gloam.toml: no functions"),
        ("[engine]\nio_threads = 2\n", "/etc/gloam/gloam.toml: no functions"),
    ];
    for (text, expected) in cases {
        let e = error(text);
        assert!(
            e.starts_with(expected),
            "for {text:?}:\n got {e}\nwant {expected}"
        );
    }
}

#[test]
fn relative_source_resolves_against_current_dir() -> anyhow::Result<()> {
    let config = Config::parse("[functions.A]\ndir = \"w\"\n", Path::new("gloam.toml"))?;
    let cwd = std::env::current_dir()?;
    assert_eq!(config.functions[0].dir, cwd.join("w"));
    assert_eq!(config.engine.log_dir, cwd.join("logs"));
    Ok(())
}
