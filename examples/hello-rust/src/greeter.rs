//! `RustGreeter`: the Rust side of the gRPC example (`examples/grpc/greeter.proto`, service
//! `demo.RustGreeter`, deployed as function `grpc:demo.RustGreeter`). The handler reads the
//! method from `ctx.method()`; messages are decoded and encoded by hand (two fields) so the
//! example needs no protobuf crate: a real service would use its generated code (prost).

use gloam_core::{Ctx, HandlerError};

/// A `HelloRequest`: `name` (field 1, string) and `sleep_ms` (field 2, uint32).
#[derive(Debug, Default, PartialEq)]
struct HelloRequest {
    name: String,
    sleep_ms: u64,
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, HandlerError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*at)
            .ok_or_else(|| HandlerError::new("truncated varint"))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(HandlerError::new("varint too long"))
}

fn decode(bytes: &[u8]) -> Result<HelloRequest, HandlerError> {
    let mut req = HelloRequest::default();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let len = usize::try_from(varint(bytes, &mut at)?)?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= bytes.len())
                    .ok_or_else(|| HandlerError::new("truncated string"))?;
                req.name = String::from_utf8(bytes[at..end].to_vec())?;
                at = end;
            }
            (2, 0) => req.sleep_ms = varint(bytes, &mut at)?,
            (_, 0) => {
                varint(bytes, &mut at)?;
            }
            (_, 2) => {
                let len = usize::try_from(varint(bytes, &mut at)?)?;
                at = at.saturating_add(len);
            }
            (field, wire) => {
                return Err(HandlerError::new(format!(
                    "unexpected wire type {wire} for field {field}"
                )))
            }
        }
    }
    Ok(req)
}

/// A `HelloReply` with `message` (field 1).
fn reply(message: &str) -> Vec<u8> {
    let mut out = vec![0x0a];
    let mut n = message.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(message.as_bytes());
    out
}

/// Serves every method of `demo.RustGreeter`.
pub fn greeter(ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let req = decode(input)?;
    match ctx.method() {
        "SayHello" => Ok(reply(&format!(
            "Hello, {} (from Rust, method SayHello)",
            req.name
        ))),
        "Fail" => Err(HandlerError::new("Fail was called")),
        "Crash" => std::process::abort(),
        "Nested" => {
            ctx.invoke("Sleep", req.sleep_ms.to_string().as_bytes())?;
            Ok(reply("woke up"))
        }
        "Nop" => Ok(Vec::new()),
        other => Err(HandlerError::new(format!("no method {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_by_hand() {
        // HelloRequest{name: "Ann", sleep_ms: 300} as protoc encodes it.
        let bytes = [0x0a, 3, b'A', b'n', b'n', 0x10, 0xac, 0x02];
        let req = decode(&bytes).unwrap_or_default();
        assert_eq!(req.name, "Ann");
        assert_eq!(req.sleep_ms, 300);
        assert_eq!(reply("hi"), [0x0a, 2, b'h', b'i']);
        assert_eq!(reply(&"x".repeat(200))[..3], [0x0a, 0xc8, 0x01]);
        assert!(decode(&[0x0a, 9, b'A']).is_err());
    }
}
