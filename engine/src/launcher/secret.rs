//! The per-process secret a launched worker presents in `HELLO`.

use std::io::Read;

use subtle::ConstantTimeEq;

/// Bytes of randomness in a secret (hex-encoded in the environment).
const SECRET_BYTES: usize = 16;

/// What the engine makes of a connecting worker's process and secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The process is one of the launcher's and presented its own secret.
    Valid,
    /// The process is one of the launcher's, with another secret (or none).
    WrongSecret,
    /// The process group is none of the launcher's processes.
    UnknownProcess,
}

/// A fresh secret: 16 bytes from the kernel's random source, hex-encoded.
pub(super) fn fresh() -> std::io::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares the presented secret with the slot's in constant time.
pub(super) fn check(expected: Option<&String>, presented: &str) -> Verdict {
    match expected {
        Some(e) if bool::from(e.as_bytes().ct_eq(presented.as_bytes())) => Verdict::Valid,
        _ => Verdict::WrongSecret,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_compared_exactly() -> std::io::Result<()> {
        let a = fresh()?;
        let b = fresh()?;
        assert_eq!(a.len(), 2 * SECRET_BYTES);
        assert_ne!(a, b);
        assert_eq!(check(Some(&a), &a), Verdict::Valid);
        assert_eq!(check(Some(&a), &b), Verdict::WrongSecret);
        assert_eq!(check(Some(&a), ""), Verdict::WrongSecret);
        assert_eq!(check(None, &a), Verdict::WrongSecret);
        Ok(())
    }
}
