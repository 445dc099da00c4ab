//! `gloam-cworker LIBRARY.so`: serves a function library written against Nightcore's v1 C
//! interface (`include/faas/worker_v1_interface.h`) through Gloam, unchanged.
//!
//! Started by the engine like any worker (`GLOAM_FUNCTION`, `GLOAM_WORKERS`, ...): it loads the
//! library, calls `faas_init` once, then runs one logical worker per thread, each with its own
//! `faas_create_func_worker` handle.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;

use gloam_core::worker::{workers_from_env, WorkerOptions};
use gloam_core::{Error, ErrorKind, ParentRef, Worker};

type InvokeFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const c_char,
    usize,
    *mut *const c_char,
    *mut usize,
) -> c_int;
type AppendFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize);
type InitFn = unsafe extern "C" fn() -> c_int;
type CreateFn = unsafe extern "C" fn(*mut c_void, InvokeFn, AppendFn, *mut *mut c_void) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CallFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> c_int;

/// The library's four entry points.
#[derive(Clone, Copy)]
struct Library {
    init: InitFn,
    create: CreateFn,
    destroy: DestroyFn,
    call: CallFn,
}

/// What the library's callbacks reach through `caller_context`: one per logical worker.
struct HostContext<'w> {
    worker: &'w Worker,
    state: Mutex<CallState>,
}

#[derive(Default)]
struct CallState {
    parent: Option<ParentRef>,
    output: Vec<u8>,
    // Outputs of internal calls, kept until the current call returns (the v1 contract).
    // Boxed slices do not move when the vector grows.
    nested: Vec<Box<[u8]>>,
}

impl HostContext<'_> {
    fn state(&self) -> std::sync::MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: gloam-cworker LIBRARY.so (started by `gloam up`)");
        return ExitCode::from(2);
    };
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gloam-cworker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::ffi::OsStr) -> Result<(), Error> {
    let lib = load(path)?;
    // SAFETY: `faas_init` has the v1 signature (the library's contract).
    let rc = unsafe { (lib.init)() };
    if rc != 0 {
        return Err(Error::Internal(format!("faas_init returned {rc}")));
    }
    let opts = WorkerOptions::from_env()?.language("c");
    let n = workers_from_env()?;
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n).map(|_| s.spawn(|| serve_one(&opts, lib))).collect();
        let mut result = Ok(());
        for t in threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("worker thread panicked".into())));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

fn load(path: &std::ffi::OsStr) -> Result<Library, Error> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_bytes())
        .map_err(|_| Error::InvalidConfig("library path contains a NUL byte".into()))?;
    // SAFETY: `cpath` is NUL-terminated; loading runs the library's initialisers, which is
    // what the user asked for.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(Error::InvalidConfig(format!(
            "cannot load {}: {}",
            path.to_string_lossy(),
            dl_error()
        )));
    }
    let sym = |name: &CStr| -> Result<*mut c_void, Error> {
        // SAFETY: `handle` is a live library handle (never closed); `name` NUL-terminated.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(Error::InvalidConfig(format!(
                "{} does not export {} (a Nightcore v1 function library must)",
                path.to_string_lossy(),
                name.to_string_lossy()
            )))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is declared by the v1 interface with exactly these signatures.
    unsafe {
        Ok(Library {
            init: std::mem::transmute::<*mut c_void, InitFn>(sym(c"faas_init")?),
            create: std::mem::transmute::<*mut c_void, CreateFn>(sym(c"faas_create_func_worker")?),
            destroy: std::mem::transmute::<*mut c_void, DestroyFn>(sym(
                c"faas_destroy_func_worker",
            )?),
            call: std::mem::transmute::<*mut c_void, CallFn>(sym(c"faas_func_call")?),
        })
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-NULL, NUL-terminated (above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn serve_one(opts: &WorkerOptions, lib: Library) -> Result<(), Error> {
    let worker = Worker::connect(opts)?;
    let ctx = HostContext {
        worker: &worker,
        state: Mutex::new(CallState::default()),
    };
    let ctx_ptr = &ctx as *const HostContext<'_> as *mut c_void;
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: v1 signature; `ctx` outlives every use of the handle (destroyed below).
    let rc = unsafe { (lib.create)(ctx_ptr, invoke_cb, append_cb, &mut handle) };
    if rc != 0 {
        return Err(Error::Internal(format!(
            "faas_create_func_worker returned {rc}"
        )));
    }
    let result = loop {
        let call = match worker.next_call() {
            Ok(Some(call)) => call,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        {
            let mut st = ctx.state();
            st.parent = Some(call.parent_ref());
            st.output.clear();
        }
        let input = call.input();
        // SAFETY: v1 signature; the input outlives the call.
        let rc = unsafe { (lib.call)(handle, input.as_ptr().cast(), input.len()) };
        let (output, _nested) = {
            let mut st = ctx.state();
            st.parent = None;
            (
                std::mem::take(&mut st.output),
                std::mem::take(&mut st.nested),
            )
        };
        let sent = if rc == 0 {
            worker.complete(call, &output)
        } else {
            worker.fail(
                call,
                ErrorKind::HandlerFailed,
                &format!("faas_func_call returned {rc}"),
            )
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Shutdown => break Ok(()),
            Err(e) => eprintln!("gloam-cworker: could not answer a call: {e}"),
        }
    };
    // SAFETY: the handle came from faas_create_func_worker and is not used afterwards.
    unsafe { (lib.destroy)(handle) };
    result
}

/// `append_output_fn` given to the library.
unsafe extern "C" fn append_cb(caller_context: *mut c_void, data: *const c_char, len: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if caller_context.is_null() || (data.is_null() && len > 0) {
            return;
        }
        // SAFETY: the library passes back the context we gave it, live during the call.
        let ctx = unsafe { &*(caller_context as *const HostContext<'_>) };
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: `len` readable bytes (v1 contract).
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        ctx.state().output.extend_from_slice(bytes);
    }));
}

/// `invoke_func_fn` given to the library.
unsafe extern "C" fn invoke_cb(
    caller_context: *mut c_void,
    func_name: *const c_char,
    input: *const c_char,
    input_len: usize,
    output: *mut *const c_char,
    output_len: *mut usize,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if caller_context.is_null()
            || func_name.is_null()
            || output.is_null()
            || output_len.is_null()
            || (input.is_null() && input_len > 0)
        {
            return -1;
        }
        // SAFETY: the context we gave the library, live during the call.
        let ctx = unsafe { &*(caller_context as *const HostContext<'_>) };
        // SAFETY: NUL-terminated name (v1 contract).
        let Ok(name) = unsafe { CStr::from_ptr(func_name) }.to_str() else {
            return -1;
        };
        let bytes = if input_len == 0 {
            &[][..]
        } else {
            // SAFETY: `input_len` readable bytes (v1 contract).
            unsafe { std::slice::from_raw_parts(input.cast::<u8>(), input_len) }
        };
        let Some(parent) = ctx.state().parent else {
            return -1; // not inside a call
        };
        match ctx.worker.invoke(parent, name, bytes) {
            Ok(out) => {
                let out = out.into_boxed_slice();
                let (ptr, len) = (out.as_ptr(), out.len());
                ctx.state().nested.push(out);
                // SAFETY: non-NULL writable out-parameters (checked above).
                unsafe {
                    *output = ptr.cast();
                    *output_len = len;
                }
                0
            }
            Err(e) => {
                eprintln!("gloam-cworker: internal call to {name} failed: {e}");
                -1
            }
        }
    }))
    .unwrap_or(-1)
}
