//! What a worker says of itself in `HELLO`, and the rule for function names.

use crate::protocol::{Header, Kind, Message, ProtocolError};

/// The inline payload of a `HELLO`: who the worker is.
///
/// Layout: `pid` u32 LE, then `function`, `language` and (optional, absent = empty) `secret`
/// as (u8 length, UTF-8 bytes) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The worker process id.
    pub pid: u32,
    /// The function the worker serves.
    pub function: String,
    /// `rust`, `c`, `python`, `node`, `go`, ...
    pub language: String,
    /// The secret the launcher gave this worker's process at spawn ([`ENV_WORKER_SECRET`]);
    /// empty for a worker started by hand. The engine checks it against the process that
    /// connected (`SO_PEERCRED`).
    ///
    /// [`ENV_WORKER_SECRET`]: crate::worker::ENV_WORKER_SECRET
    pub secret: String,
}

impl Hello {
    /// Encodes into a `HELLO` message.
    pub fn to_message(&self) -> Result<Message, ProtocolError> {
        let mut buf = Vec::with_capacity(8 + self.function.len() + self.language.len());
        buf.extend_from_slice(&self.pid.to_le_bytes());
        let fields = [
            ("function", &self.function),
            ("language", &self.language),
            ("secret", &self.secret),
        ];
        for (field, s) in fields {
            let len = u8::try_from(s.len()).map_err(|_| ProtocolError::BadPayload {
                field,
                reason: format!("{} bytes, at most 255", s.len()),
            })?;
            buf.push(len);
            buf.extend_from_slice(s.as_bytes());
        }
        Message::with_inline(Header::new(Kind::Hello), &buf)
    }

    /// Decodes the payload of a `HELLO` message.
    pub fn from_message(m: &Message) -> Result<Hello, ProtocolError> {
        let p = m.inline_payload();
        let bad = |field: &'static str, reason: &str| ProtocolError::BadPayload {
            field,
            reason: reason.to_string(),
        };
        let pid = u32::from_le_bytes(
            p.get(0..4)
                .ok_or_else(|| bad("hello.pid", "missing"))?
                .try_into()
                .map_err(|_| bad("hello.pid", "missing"))?,
        );
        let mut rest = &p[4..];
        let take = |rest: &mut &[u8], field: &'static str| -> Result<String, ProtocolError> {
            let (&len, tail) = rest.split_first().ok_or_else(|| bad(field, "missing"))?;
            let s = tail
                .get(..usize::from(len))
                .ok_or_else(|| bad(field, "truncated"))?;
            *rest = &tail[usize::from(len)..];
            String::from_utf8(s.to_vec()).map_err(|_| bad(field, "not UTF-8"))
        };
        let function = take(&mut rest, "hello.function")?;
        let language = take(&mut rest, "hello.language")?;
        // Workers of earlier builds send no secret.
        let secret = if rest.is_empty() {
            String::new()
        } else {
            take(&mut rest, "hello.secret")?
        };
        Ok(Hello {
            pid,
            function,
            language,
            secret,
        })
    }
}

/// Checks a function name: `[A-Za-z0-9_.:-]`, 1–128 characters.
pub fn validate_function_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "function name must be 1-128 characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "function name {name:?} has the character {c:?}; allowed are A-Z a-z 0-9 _ . : -"
        ));
    }
    Ok(())
}
