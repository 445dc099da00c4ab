//! Bytes owned by the library and handed to C (the output of an internal call).

/// A byte buffer allocated by the library, e.g. the output of gloam_worker_invoke().
///
/// `data` is NULL when `len` is 0. Release it with gloam_buffer_free(), never with free().
///
/// \par Thread safety
/// A plain struct: the bytes may be read from any thread; free it once.
#[repr(C)]
#[derive(Debug)]
pub struct gloam_buffer_t {
    /// The bytes (NULL when empty).
    pub data: *mut u8,
    /// How many bytes `data` holds.
    pub len: usize,
}

impl gloam_buffer_t {
    pub(crate) fn empty() -> gloam_buffer_t {
        gloam_buffer_t {
            data: std::ptr::null_mut(),
            len: 0,
        }
    }

    pub(crate) fn from_vec(v: Vec<u8>) -> gloam_buffer_t {
        if v.is_empty() {
            return gloam_buffer_t::empty();
        }
        let len = v.len();
        let data = Box::into_raw(v.into_boxed_slice()).cast::<u8>();
        gloam_buffer_t { data, len }
    }
}

/// Releases the bytes of `buf` and resets it to `{NULL, 0}`.
///
/// @param buf the buffer; `NULL`, or a buffer whose `data` is NULL, is a no-op.
///
/// # Safety
/// `buf` is NULL or points to a `gloam_buffer_t` filled by this library and not freed since
/// (or zero-initialised).
///
/// \par Thread safety
/// Safe from any thread, once per buffer.
#[no_mangle]
pub unsafe extern "C" fn gloam_buffer_free(buf: *mut gloam_buffer_t) {
    crate::boundary::no_status(|| {
        // SAFETY: NULL or a live buffer record (contract).
        let Some(buf) = (unsafe { buf.as_mut() }) else {
            return;
        };
        if !buf.data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(buf.data, buf.len);
            // SAFETY: `data`/`len` came from `Box<[u8]>::into_raw` in `from_vec` (contract).
            drop(unsafe { Box::from_raw(slice) });
        }
        *buf = gloam_buffer_t::empty();
    })
}
