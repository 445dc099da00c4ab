//! Core errors as JavaScript `Error`s carrying `err.code = "GLOAM_E_<KIND>"`.

use gloam_core::{Error, ErrorKind};
use napi::{Env, JsUnknown, Status};

/// The `err.code` of a core error kind, e.g. `GLOAM_E_FUNCTION_NOT_FOUND`.
pub(crate) fn code_of(kind: ErrorKind) -> String {
    format!("GLOAM_E_{}", kind.as_str())
}

/// A napi error that reaches JavaScript as an `Error` with `code` and `message`.
///
/// The JS object is built here (not by napi's default conversion, which would set `code` to a
/// napi status name) and handed over as a reference that napi throws or rejects with as is.
pub(crate) fn js_error(env: &Env, kind: ErrorKind, message: &str) -> napi::Error {
    let build = || -> napi::Result<JsUnknown> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
        obj.set_named_property("code", env.create_string(&code_of(kind))?)?;
        Ok(obj.into_unknown())
    };
    match build() {
        Ok(value) => napi::Error::from(value),
        Err(e) => e,
    }
}

/// [`js_error`] for a core error.
pub(crate) fn from_core(env: &Env, e: &Error) -> napi::Error {
    js_error(env, e.kind(), &e.to_string())
}

/// How a call ends when its handler threw or rejected with an error of `code` and `message`
/// (see [`crate::convert::thrown`]): a Gloam error (`code` = `GLOAM_E_<KIND>`) of a kind that
/// may pass on ([`ErrorKind::can_pass_on`]) keeps that kind, with its message without the
/// prefix naming the kind; anything else is `HANDLER_FAILED` with the message.
pub(crate) fn handler_failure(code: Option<&str>, message: String) -> (ErrorKind, String) {
    let passed = code
        .and_then(|c| c.strip_prefix("GLOAM_E_"))
        .and_then(ErrorKind::from_name)
        .filter(|k| k.can_pass_on());
    match passed {
        Some(kind) => (kind, kind.bare_message(&message).to_string()),
        None => (ErrorKind::HandlerFailed, message),
    }
}
