//! The function table the engine sends in `WELCOME`: names ↔ ids and the payload limit.
//!
//! Encoding (UTF-8 text, trailing the `WELCOME` message on the handshake socket):
//! a first line `max_payload <bytes>`, then one line `fn <id> <name>` per function.

use crate::error::{Error, Result};
use crate::protocol::{validate_function_name, ProtocolError};

/// Function names and ids known to the engine, plus the node's payload limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionTable {
    entries: Vec<(u16, String)>,
    max_payload: u64,
}

impl FunctionTable {
    /// A table from `(id, name)` pairs.
    pub fn new(entries: Vec<(u16, String)>, max_payload: u64) -> FunctionTable {
        FunctionTable {
            entries,
            max_payload,
        }
    }

    /// The id of `name`.
    pub fn id_of(&self, name: &str) -> Result<u16> {
        self.entries
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
            .ok_or_else(|| Error::FunctionNotFound(name.to_string()))
    }

    /// The name of `id`.
    pub fn name_of(&self, id: u16) -> Option<&str> {
        self.entries
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.as_str())
    }

    /// The node's payload limit in bytes.
    pub fn max_payload(&self) -> u64 {
        self.max_payload
    }

    /// All entries.
    pub fn entries(&self) -> &[(u16, String)] {
        &self.entries
    }

    /// Encodes as text.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("max_payload {}\n", self.max_payload);
        for (id, name) in &self.entries {
            s.push_str(&format!("fn {id} {name}\n"));
        }
        s.into_bytes()
    }

    /// Decodes text produced by [`FunctionTable::encode`].
    pub fn decode(bytes: &[u8]) -> Result<FunctionTable, ProtocolError> {
        let bad = |reason: String| ProtocolError::BadPayload {
            field: "welcome.function_table",
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
        let mut lines = text.lines();
        let max_payload = lines
            .next()
            .and_then(|l| l.strip_prefix("max_payload "))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("first line must be `max_payload <bytes>`".into()))?;
        let mut entries = Vec::new();
        for line in lines {
            let mut parts = line.splitn(3, ' ');
            let (Some("fn"), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(format!("bad line {line:?}")));
            };
            let id = id
                .parse::<u16>()
                .map_err(|_| bad(format!("bad id in {line:?}")))?;
            validate_function_name(name).map_err(bad)?;
            entries.push((id, name.to_string()));
        }
        Ok(FunctionTable {
            entries,
            max_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = FunctionTable::new(vec![(1, "Foo".into()), (2, "Bar.baz".into())], 1234);
        let back = FunctionTable::decode(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.id_of("Bar.baz").unwrap(), 2);
        assert_eq!(back.name_of(1), Some("Foo"));
        let e = back.id_of("Nope").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::FunctionNotFound);
        assert!(e.to_string().contains("Nope"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(FunctionTable::decode(b"hello").is_err());
        assert!(FunctionTable::decode(b"max_payload 5\nfn x Foo\n").is_err());
        assert!(FunctionTable::decode(&[0xff, 0xfe]).is_err());
    }
}
