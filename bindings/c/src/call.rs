//! A call received by a worker, and its accessors.

use gloam_core::Call;

use crate::args;
use crate::error::{gloam_error_t, gloam_status_e};

/// A call to run, received with gloam_worker_recv().
///
/// \par Ownership
/// Owned by the program from `recv` until it is passed to gloam_worker_complete() or
/// gloam_worker_fail(), which consume (free) it. Its input view stays valid until then.
///
/// \par Thread safety
/// The accessors and gloam_worker_invoke() only read the call: any number of threads may use
/// them at once while the call is alive. Completing or failing it must happen once, after every
/// other thread is done with it.
pub struct gloam_call_t {
    pub(crate) inner: Call,
    /// The gRPC method's name (empty for a plain function's call).
    pub(crate) method: String,
}

impl gloam_call_t {
    /// Wraps `inner`, received by `worker`.
    pub(crate) fn new(worker: &gloam_core::Worker, inner: Call) -> gloam_call_t {
        let method = worker.method_of(&inner).to_string();
        gloam_call_t { inner, method }
    }
}

/// The call's input bytes, as a view.
///
/// @param call the call.
/// @param[out] data receives a pointer to the input (NULL when the input is empty).
/// @param[out] len receives the input's length.
/// @return `GLOAM_OK`, or `GLOAM_E_INVALID_ARGUMENT` when an argument is NULL.
///
/// \par Ownership
/// The bytes belong to the call: valid until it is completed or failed; never free them.
///
/// # Safety
/// `call` is NULL or a live call; `data` and `len` are NULL or writable.
///
/// \par Thread safety
/// Safe from any thread while the call is alive.
#[no_mangle]
pub unsafe extern "C" fn gloam_call_input(
    call: *const gloam_call_t,
    data: *mut *const u8,
    len: *mut usize,
) -> gloam_status_e {
    crate::boundary::run(std::ptr::null_mut::<gloam_error_t>(), || {
        // SAFETY: NULL or live (contract).
        let call = unsafe { args::non_null(call, "call") }?;
        // SAFETY: NULL or writable (contract).
        let data = unsafe { args::out_ptr(data, "data") }?;
        // SAFETY: NULL or writable (contract).
        let len = unsafe { args::out_ptr(len, "len") }?;
        let input = call.inner.input();
        *data = if input.is_empty() {
            std::ptr::null()
        } else {
            input.as_ptr()
        };
        *len = input.len();
        Ok(())
    })
}

/// The name of the gRPC method the call is for, as a view: `SayHello` for
/// `/demo.Greeter/SayHello` served by function `grpc:demo.Greeter` (the index of the method
/// in the function's `grpc_methods`); empty (`len` 0, `data` NULL) for a plain function.
///
/// @param call the call.
/// @param[out] data receives a pointer to the name (ASCII, not NUL-terminated).
/// @param[out] len receives the name's length.
/// @return `GLOAM_OK`, or `GLOAM_E_INVALID_ARGUMENT` when an argument is NULL.
///
/// \par Ownership
/// The bytes belong to the call: valid until it is completed or failed; never free them.
///
/// # Safety
/// `call` is NULL or a live call; `data` and `len` are NULL or writable.
///
/// \par Thread safety
/// Safe from any thread while the call is alive.
#[no_mangle]
pub unsafe extern "C" fn gloam_call_method(
    call: *const gloam_call_t,
    data: *mut *const u8,
    len: *mut usize,
) -> gloam_status_e {
    crate::boundary::run(std::ptr::null_mut::<gloam_error_t>(), || {
        // SAFETY: NULL or live (contract).
        let call = unsafe { args::non_null(call, "call") }?;
        // SAFETY: NULL or writable (contract).
        let data = unsafe { args::out_ptr(data, "data") }?;
        // SAFETY: NULL or writable (contract).
        let len = unsafe { args::out_ptr(len, "len") }?;
        *data = if call.method.is_empty() {
            std::ptr::null()
        } else {
            call.method.as_ptr()
        };
        *len = call.method.len();
        Ok(())
    })
}

/// The call's id, unique among calls in flight (0 when `call` is NULL). An asynchronous
/// call keeps its id when it runs again after an engine restart (deduplicate on it).
///
/// # Safety
/// `call` is NULL or a live call.
///
/// \par Thread safety
/// Safe from any thread while the call is alive.
#[no_mangle]
pub unsafe extern "C" fn gloam_call_id(call: *const gloam_call_t) -> u64 {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { call.as_ref() }.map_or(0, |c| c.inner.id().0)
    })
}

/// The call's deadline as `CLOCK_MONOTONIC` nanoseconds; 0 means none (and for a NULL `call`).
///
/// # Safety
/// `call` is NULL or a live call.
///
/// \par Thread safety
/// Safe from any thread while the call is alive.
#[no_mangle]
pub unsafe extern "C" fn gloam_call_deadline_ns(call: *const gloam_call_t) -> u64 {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { call.as_ref() }.map_or(0, |c| c.inner.deadline_ns())
    })
}

/// The id of the function called (see the engine's function table); 0 for a NULL `call`.
///
/// # Safety
/// `call` is NULL or a live call.
///
/// \par Thread safety
/// Safe from any thread while the call is alive.
#[no_mangle]
pub unsafe extern "C" fn gloam_call_function_id(call: *const gloam_call_t) -> u16 {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or live (contract).
        unsafe { call.as_ref() }.map_or(0, |c| c.inner.function_id())
    })
}
