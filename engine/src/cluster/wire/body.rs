//! Reading a frame's body: a cursor that never reads out of bounds (each read names its
//! field), and the `HELLO` body, the one with a variable list.

use bytes::Bytes;

use gloam_core::protocol::validate_function_name;

use super::{FunctionInfo, Hello, MAGIC, MAX_FUNCTIONS, MAX_TOKEN, VERSION};
use crate::cluster::ClusterError;

/// A cursor over a body that never reads out of bounds: each read names its field.
pub(super) struct Reader {
    pub(super) body: Bytes,
    pub(super) at: usize,
}

impl Reader {
    pub(super) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, ClusterError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.body.len());
        let Some(end) = end else {
            return Err(ClusterError::frame(
                field,
                format!(
                    "truncated: needs {n} bytes at offset {}, the body has {}",
                    self.at,
                    self.body.len()
                ),
            ));
        };
        let out = self.body.slice(self.at..end);
        self.at = end;
        Ok(out)
    }
    pub(super) fn u8(&mut self, f: &'static str) -> Result<u8, ClusterError> {
        Ok(self.take(1, f)?[0])
    }
    pub(super) fn u16(&mut self, f: &'static str) -> Result<u16, ClusterError> {
        let b = self.take(2, f)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self, f: &'static str) -> Result<u32, ClusterError> {
        let b = self.take(4, f)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self, f: &'static str) -> Result<u64, ClusterError> {
        let b = self.take(8, f)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }
    pub(super) fn text(&mut self, n: usize, f: &'static str) -> Result<String, ClusterError> {
        let b = self.take(n, f)?;
        String::from_utf8(b.to_vec()).map_err(|_| ClusterError::frame(f, "is not UTF-8"))
    }
    pub(super) fn rest(&mut self) -> Bytes {
        let out = self.body.slice(self.at..);
        self.at = self.body.len();
        out
    }
    pub(super) fn end(&self, kind: &'static str) -> Result<(), ClusterError> {
        if self.at != self.body.len() {
            return Err(ClusterError::frame(
                kind,
                format!("{} trailing bytes", self.body.len() - self.at),
            ));
        }
        Ok(())
    }
    pub(super) fn magic_and_version(&mut self) -> Result<u16, ClusterError> {
        if self.take(8, "magic")?[..] != MAGIC {
            return Err(ClusterError::frame("magic", "not a Gloam cluster peer"));
        }
        let version = self.u16("version")?;
        if version != VERSION {
            return Err(ClusterError::Version { peer: version });
        }
        self.u16("reserved")?;
        Ok(version)
    }
}

pub(super) fn decode_hello(r: &mut Reader) -> Result<Hello, ClusterError> {
    let version = r.magic_and_version()?;
    let n = usize::from(r.u16("token_len")?);
    if n > MAX_TOKEN {
        return Err(ClusterError::frame(
            "token_len",
            format!("{n} bytes, beyond {MAX_TOKEN}"),
        ));
    }
    let token = r.take(n, "token")?.to_vec();
    let n = usize::from(r.u16("node_len")?);
    if n > 255 {
        return Err(ClusterError::frame(
            "node_len",
            format!("{n} bytes, beyond 255"),
        ));
    }
    let node = r.text(n, "node")?;
    let count = usize::from(r.u16("count")?);
    if count > MAX_FUNCTIONS {
        return Err(ClusterError::frame(
            "count",
            format!("{count} functions, beyond {MAX_FUNCTIONS}"),
        ));
    }
    let mut functions: Vec<FunctionInfo> = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = usize::from(r.u8("function name_len")?);
        let name = r.text(n, "function name")?;
        validate_function_name(&name).map_err(|why| ClusterError::frame("function name", why))?;
        if functions.iter().any(|f| f.name == name) {
            return Err(ClusterError::frame(
                "function name",
                format!("{name} is registered twice"),
            ));
        }
        let capacity = r.u32("capacity")?;
        if capacity == 0 {
            return Err(ClusterError::frame(
                "capacity",
                format!("0 for function {name}"),
            ));
        }
        let max_payload = r.u32("max_payload")?;
        let timeout_ms = r.u32("timeout_ms")?;
        let flags = r.u8("function flags")?;
        if flags & !3 != 0 {
            return Err(ClusterError::frame(
                "function flags",
                format!("unknown bits {flags:#04x}"),
            ));
        }
        functions.push(FunctionInfo {
            name,
            capacity,
            max_payload,
            timeout_ms,
            idempotent: flags & 1 != 0,
            allow_get: flags & 2 != 0,
        });
    }
    Ok(Hello {
        version,
        token,
        node,
        functions,
    })
}
