//! Helpers shared by the configuration's unit tests.

use std::path::Path;

use super::model::{Config, ConfigError};

/// Parses `text` as `/etc/gloam/gloam.toml`.
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/gloam/gloam.toml"))
}

/// The message of the error `text` must produce.
pub(super) fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}
