//! Forwards the core's `tracing` events to Python's `logging.getLogger("gloam")`.
//!
//! Installed once per process, as the global `tracing` subscriber, filtered by `GLOAM_LOG`
//! (`tracing` directives; default `info`). Python's logging then applies its own levels and
//! handlers.

use std::fmt::Write as _;
use std::sync::Once;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

static INSTALL: Once = Once::new();

/// Sends `tracing` events from the core to the Python logger `gloam`. Idempotent; does nothing
/// when another global `tracing` subscriber is already installed.
#[pyfunction]
pub fn install_logging(py: Python<'_>) -> PyResult<()> {
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("gloam",))?;
    let logger = logger.unbind();
    INSTALL.call_once(|| {
        let filter =
            EnvFilter::try_from_env("GLOAM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(PyLogLayer { logger });
        // Err: the embedding program installed its own subscriber; leave it in charge.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    Ok(())
}

struct PyLogLayer {
    logger: Py<PyAny>,
}

impl<S: Subscriber> Layer<S> for PyLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let line = format!("{}{} [{}]", text.message, text.fields, meta.target());
        let level = python_level(*meta.level());
        // SAFETY: Py_IsInitialized only reads a flag; an event may come from a thread that
        // outlives the interpreter, and attaching to a finalized interpreter must be avoided.
        if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
            return;
        }
        Python::with_gil(|py| {
            if let Err(e) = self.logger.call_method1(py, "log", (level, "%s", line)) {
                // A broken handler must not break the worker; Python prints it to stderr.
                e.print(py);
            }
        });
    }
}

/// The `logging` level number of a `tracing` level.
fn python_level(level: Level) -> u8 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
