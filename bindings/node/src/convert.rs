//! Bytes in and out of JavaScript: `Buffer`, `Uint8Array` or `string` (UTF-8).

use napi::bindgen_prelude::{FromNapiValue, Uint8Array};
use napi::{Env, JsObject, JsString, JsUnknown, NapiRaw, ValueType};

/// The bytes of a handler result or an `invoke` input. `undefined` and `null` are empty.
/// `Err` carries a message naming what was given instead.
pub(crate) fn to_bytes(env: &Env, value: JsUnknown, what: &str) -> Result<Vec<u8>, String> {
    let fail = |e: napi::Error| format!("{what}: {e}");
    match value.get_type().map_err(fail)? {
        ValueType::Undefined | ValueType::Null => Ok(Vec::new()),
        ValueType::String => {
            // SAFETY: the type was just checked.
            let s: JsString = unsafe { value.cast() };
            Ok(s.into_utf8().map_err(fail)?.as_slice().to_vec())
        }
        ValueType::Object if value.is_typedarray().map_err(fail)? => {
            // A Buffer is a Uint8Array too. (Not `JsBuffer::into_value`: it is unsound for an
            // empty Buffer, whose data pointer is null.)
            // SAFETY: `value` is a live handle of this env, checked to be a typed array;
            // `Uint8Array::from_napi_value` itself checks the element type.
            let arr = unsafe { Uint8Array::from_napi_value(env.raw(), value.raw()) }
                .map_err(|_| format!("{what}: expected a Uint8Array, got another typed array"))?;
            Ok(arr.to_vec())
        }
        other => Err(format!(
            "{what}: expected a Buffer, Uint8Array or string, got {}",
            type_name(other)
        )),
    }
}

/// What a handler threw or rejected with.
pub(crate) struct Thrown {
    /// Its `code` property, when a string (e.g. `GLOAM_E_TIMEOUT` on an error of `ctx.invoke`).
    pub(crate) code: Option<String>,
    /// `err.message` if it is a string, else `String(v)`.
    pub(crate) message: String,
    /// `err.stack`, when a string.
    pub(crate) stack: Option<String>,
}

/// Reads what a handler threw or rejected with.
pub(crate) fn thrown(value: JsUnknown) -> Thrown {
    if let Ok(ValueType::Object) = value.get_type() {
        // SAFETY: the type was just checked.
        let obj: JsObject = unsafe { value.cast() };
        let code = string_property(&obj, "code");
        let stack = string_property(&obj, "stack");
        let message = match string_property(&obj, "message") {
            Some(text) => text,
            None => coerce(obj.coerce_to_string()),
        };
        return Thrown {
            code,
            message,
            stack,
        };
    }
    Thrown {
        code: None,
        message: coerce(value.coerce_to_string()),
        stack: None,
    }
}

/// `obj[name]` when it is a string.
fn string_property(obj: &JsObject, name: &str) -> Option<String> {
    let value = obj.get_named_property::<JsUnknown>(name).ok()?;
    if !matches!(value.get_type(), Ok(ValueType::String)) {
        return None;
    }
    // SAFETY: the type was just checked.
    let s: JsString = unsafe { value.cast() };
    s.into_utf8().and_then(|u| u.into_owned()).ok()
}

fn coerce(text: napi::Result<JsString>) -> String {
    text.and_then(|s| s.into_utf8())
        .and_then(|u| u.into_owned())
        .unwrap_or_else(|_| "handler failed with a value that has no message".into())
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::BigInt => "a bigint",
        ValueType::Symbol => "a symbol",
        ValueType::Function => "a function",
        ValueType::External => "an external",
        ValueType::Object => "an object",
        _ => "an unsupported value",
    }
}
