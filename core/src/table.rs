//! The function table the engine sends in `WELCOME`: names ↔ ids, the gRPC methods of
//! `grpc:<Service>` functions, and the payload limit.
//!
//! Encoding (UTF-8 text, trailing the `WELCOME` message on the handshake socket):
//! a first line `max_payload <bytes>`, then one line `fn <id> <name>` per function, then one
//! line `method <function id> <method id> <name>` per gRPC method (none for a table without
//! gRPC functions, so such a table encodes exactly as before methods existed).

use crate::error::{Error, Result};
use crate::protocol::{validate_function_name, ProtocolError};

/// Function names and ids known to the engine, plus the node's payload limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionTable {
    entries: Vec<(u16, String)>,
    /// `(function id, methods by method id)`, for functions that have methods.
    methods: Vec<(u16, Vec<String>)>,
    max_payload: u64,
}

/// Checks a gRPC method name: `[A-Za-z0-9_]`, 1–128 characters.
pub fn validate_method_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "method name must be 1-128 characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "method name {name:?} has the character {c:?}; allowed are A-Z a-z 0-9 _"
        ));
    }
    Ok(())
}

impl FunctionTable {
    /// A table from `(id, name)` pairs.
    pub fn new(entries: Vec<(u16, String)>, max_payload: u64) -> FunctionTable {
        FunctionTable {
            entries,
            methods: Vec::new(),
            max_payload,
        }
    }

    /// The same table with the gRPC methods of function `id` (index = method id).
    pub fn with_methods(mut self, id: u16, methods: Vec<String>) -> FunctionTable {
        if !methods.is_empty() {
            self.methods.retain(|(f, _)| *f != id);
            self.methods.push((id, methods));
        }
        self
    }

    /// The name of method `method_id` of function `id`: `""` for a plain function's method
    /// 0, `None` for an id the table does not know.
    pub fn method_name(&self, id: u16, method_id: u16) -> Option<&str> {
        match self.methods.iter().find(|(f, _)| *f == id) {
            Some((_, names)) => names.get(usize::from(method_id)).map(String::as_str),
            None => (method_id == 0).then_some(""),
        }
    }

    /// The methods of function `id` (empty for a plain function).
    pub fn methods_of(&self, id: u16) -> &[String] {
        self.methods
            .iter()
            .find(|(f, _)| *f == id)
            .map_or(&[], |(_, m)| m.as_slice())
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
        for (id, names) in &self.methods {
            for (m, name) in names.iter().enumerate() {
                s.push_str(&format!("method {id} {m} {name}\n"));
            }
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
        let mut methods: Vec<(u16, Vec<String>)> = Vec::new();
        for line in lines {
            if let Some(rest) = line.strip_prefix("method ") {
                let mut parts = rest.splitn(3, ' ');
                let (Some(f), Some(m), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad(format!("bad line {line:?}")));
                };
                let (Ok(f), Ok(m)) = (f.parse::<u16>(), m.parse::<usize>()) else {
                    return Err(bad(format!("bad ids in {line:?}")));
                };
                validate_method_name(name).map_err(bad)?;
                let at = match methods.iter().position(|(id, _)| *id == f) {
                    Some(at) => at,
                    None => {
                        methods.push((f, Vec::new()));
                        methods.len() - 1
                    }
                };
                let names = &mut methods[at].1;
                if m != names.len() {
                    return Err(bad(format!("method ids out of order in {line:?}")));
                }
                names.push(name.to_string());
                continue;
            }
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
            methods,
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
    fn methods_round_trip_and_plain_tables_encode_as_before() {
        let plain = FunctionTable::new(vec![(1, "Foo".into())], 10);
        assert_eq!(plain.encode(), b"max_payload 10\nfn 1 Foo\n");
        assert_eq!(plain.method_name(1, 0), Some(""));
        assert_eq!(plain.method_name(1, 1), None);
        let t = FunctionTable::new(vec![(1, "Foo".into()), (2, "grpc:shop.Cart".into())], 10)
            .with_methods(2, vec!["Add".into(), "Get".into()]);
        let back = FunctionTable::decode(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.method_name(2, 1), Some("Get"));
        assert_eq!(back.method_name(2, 2), None);
        assert_eq!(back.methods_of(2), ["Add", "Get"]);
        assert!(FunctionTable::decode(b"max_payload 5\nmethod 2 1 Get\n").is_err());
        assert!(FunctionTable::decode(b"max_payload 5\nmethod 2 0 a b\n").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(FunctionTable::decode(b"hello").is_err());
        assert!(FunctionTable::decode(b"max_payload 5\nfn x Foo\n").is_err());
        assert!(FunctionTable::decode(&[0xff, 0xfe]).is_err());
    }
}
