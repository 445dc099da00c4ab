//! Checks on raw arguments: NULL pointers, byte views and strings, each error naming the
//! parameter.

use std::ffi::{c_char, CStr};

use gloam_core::Error;

pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// `ptr` as a reference, or `InvalidArgument` naming `name` when NULL.
///
/// # Safety
/// A non-NULL `ptr` points to a live `T` for `'a`.
pub(crate) unsafe fn non_null<'a, T>(ptr: *const T, name: &'static str) -> Result<&'a T, Error> {
    // SAFETY: validity for 'a is the caller's contract; NULL is handled by `as_ref`.
    unsafe { ptr.as_ref() }.ok_or_else(|| invalid(name, "must not be NULL"))
}

/// `ptr` as a mutable reference, or `InvalidArgument` naming `name` when NULL.
///
/// # Safety
/// A non-NULL `ptr` points to a live, writable `T` for `'a`, not aliased meanwhile.
pub(crate) unsafe fn out_ptr<'a, T>(ptr: *mut T, name: &'static str) -> Result<&'a mut T, Error> {
    // SAFETY: validity and exclusivity for 'a are the caller's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| invalid(name, "must not be NULL"))
}

/// The byte view `(ptr, len)`; `ptr` may be NULL only when `len` is 0.
///
/// # Safety
/// A non-NULL `ptr` points to `len` readable bytes that stay valid and unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    name: &'static str,
) -> Result<&'a [u8], Error> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(invalid(name, format!("is NULL with a length of {len}")))
        };
    }
    if len > isize::MAX as usize {
        return Err(invalid(name, format!("length {len} is too large")));
    }
    // SAFETY: non-NULL, `len` readable bytes for 'a (caller's contract), len ≤ isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The UTF-8 text `(ptr, len)` (no NUL needed).
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(
    ptr: *const c_char,
    len: usize,
    name: &'static str,
) -> Result<&'a str, Error> {
    // SAFETY: forwarded contract.
    let b = unsafe { bytes(ptr.cast(), len, name) }?;
    std::str::from_utf8(b).map_err(|e| invalid(name, format!("is not UTF-8: {e}")))
}

/// The NUL-terminated UTF-8 string at `ptr`, or `None` when NULL.
///
/// # Safety
/// A non-NULL `ptr` points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn opt_cstr<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(Some)
        .map_err(|e| invalid(name, format!("is not UTF-8: {e}")))
}
