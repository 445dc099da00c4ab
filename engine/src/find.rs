//! Which engine the client commands (`invoke`, `status`, `logs`, `bench`) talk to, and saying
//! so when it cannot be reached.
//!
//! In order: `--addr`; the `engine.listen` of `--config FILE`; `GLOAM_ADDR`; the
//! `engine.listen` of `./gloam.toml`; `127.0.0.1:8080`. A wildcard listen address
//! (`0.0.0.0`, `[::]`) is reached on loopback.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use crate::client::{HttpClient, Response};
use crate::config::{Config, DEFAULT_LISTEN};

/// Environment variable: the address of the engine's gateway (`HOST:PORT`).
pub const ENV_ADDR: &str = "GLOAM_ADDR";

/// The engine a command talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `HOST:PORT` of its gateway.
    pub addr: String,
    /// Where the address came from, for messages (`./gloam.toml (engine.listen)`, ...).
    pub from: String,
    /// The deployment file, when the address came from one.
    pub config: Option<PathBuf>,
}

/// Finds the engine (see the [module docs](self)).
pub fn find(addr: Option<&str>, config: Option<&Path>) -> Result<Target> {
    if let Some(a) = addr {
        return Ok(Target {
            addr: a.to_string(),
            from: "--addr".into(),
            config: None,
        });
    }
    if let Some(path) = config {
        return from_config(
            path,
            &format!("engine.listen in --config {}", path.display()),
        );
    }
    if let Ok(a) = std::env::var(ENV_ADDR) {
        if !a.trim().is_empty() {
            return Ok(Target {
                addr: a.trim().to_string(),
                from: ENV_ADDR.into(),
                config: None,
            });
        }
    }
    let local = Path::new("gloam.toml");
    if local.is_file() {
        return from_config(local, "engine.listen in ./gloam.toml");
    }
    Ok(Target {
        addr: DEFAULT_LISTEN.into(),
        from: format!("the default (no --addr, --config, {ENV_ADDR} or ./gloam.toml)"),
        config: None,
    })
}

fn from_config(path: &Path, label: &str) -> Result<Target> {
    let config = Config::load(path)?;
    let listen = config.engine.listen;
    if listen.port() == 0 {
        bail!(
            "{}: engine.listen has port 0 (the engine picks one at start): pass --addr with \
             the address `gloam up` printed",
            path.display()
        );
    }
    Ok(Target {
        addr: reachable(listen).to_string(),
        from: label.to_string(),
        config: Some(path.to_path_buf()),
    })
}

/// The address a client uses for a listen address: loopback for a wildcard.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

impl Target {
    /// A client for the engine.
    pub fn client(&self) -> Result<HttpClient> {
        HttpClient::new(self.addr.as_str()).map_err(|e| {
            anyhow!(
                "cannot resolve the engine's address {} (from {}): {e}",
                self.addr,
                self.from
            )
        })
    }

    /// The error for a request that failed on the way: names the address and its source.
    pub fn unreachable(&self, e: &io::Error) -> anyhow::Error {
        let hint = match e.kind() {
            io::ErrorKind::ConnectionRefused => "; is `gloam up` running there?",
            _ => "",
        };
        anyhow!(
            "cannot reach the engine at {} (from {}): {e}{hint}",
            self.addr,
            self.from
        )
    }

    /// `GET path` on a fresh client, naming the engine when it cannot be reached.
    pub fn get(&self, path: &str) -> Result<Response> {
        self.client()?.get(path).map_err(|e| self.unreachable(&e))
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reachable(a).to_string(), "127.0.0.1:9000");
        let a: SocketAddr = "[::]:9000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reachable(a).to_string(), "[::1]:9000");
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reachable(a), a);
    }

    #[test]
    fn the_config_gives_the_address_and_an_unreachable_engine_is_named() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gloam.toml");
        std::fs::write(
            &path,
            "[engine]\nlisten = \"0.0.0.0:1\"\n[functions.A]\ncommand = \"x\"\n",
        )?;
        let t = find(None, Some(&path))?;
        assert_eq!(t.addr, "127.0.0.1:1");
        assert!(
            t.from.starts_with("engine.listen in --config "),
            "{}",
            t.from
        );
        let e = t
            .get("/_/status")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with(
                "cannot reach the engine at 127.0.0.1:1 (from engine.listen in --config "
            ),
            "{e}"
        );
        assert!(find(Some("h:2"), Some(&path))?.addr == "h:2");
        std::fs::write(&path, "[engine]\nlisten = \"127.0.0.1:0\"\n[functions.A]\n")?;
        let e = find(None, Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("port 0"), "{e}");
        Ok(())
    }
}
