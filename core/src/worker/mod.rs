//! The worker side every language uses: handshake, receive loop, completions and internal
//! calls (several at once), plus the plain Rust handler API.

mod call;
pub(crate) mod handshake;
mod inbox;
mod logical_worker;
mod options;
mod serve;

pub use call::{Call, ParentRef};
pub use logical_worker::{Next, Worker};
pub use options::{
    debug_from_env, workers_from_env, WorkerOptions, ENV_DEBUG, ENV_FUNCTION, ENV_HANDLER,
    ENV_IPC_ROOT, ENV_WORKERS, ENV_WORKER_SECRET,
};
pub use serve::{
    panic_message, run_loop, serve, serve_with, Ctx, HandlerError, HandlerFn, Handlers,
};
