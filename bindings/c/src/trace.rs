//! The stack of a failing C handler, for its worker's log: captured where the handler calls
//! into the library (gloam_ctx_fail()), trimmed to the frames between that call and the
//! library's worker loop — the handler's own. Symbol names need the program's symbol table
//! (not stripped); file and line need its debug information (`-g`).

use std::backtrace::Backtrace;

/// The frames calling the library function `entry`, numbered from 0, one `  N: symbol` line
/// each (plus its `at file:line` line when known). Captured whatever `RUST_BACKTRACE` says.
pub(crate) fn here(entry: &str) -> String {
    trim(&Backtrace::force_capture().to_string(), entry)
}

/// The frames of `text` (a formatted backtrace) after the last one naming `entry` and before
/// the library's worker loop.
fn trim(text: &str, entry: &str) -> String {
    // A frame: "  N: symbol" then optional indented "at file:line" lines.
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let starts_frame = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if starts_frame {
            frames.push(vec![line]);
        } else if let Some(f) = frames.last_mut() {
            f.push(line);
        }
    }
    let symbol = |f: &Vec<&str>| -> String {
        f.first()
            .and_then(|l| l.trim_start().split_once(": "))
            .map_or(String::new(), |(_, s)| s.to_string())
    };
    let start = frames
        .iter()
        .rposition(|f| symbol(f).contains(entry))
        .map_or(0, |i| i + 1);
    let end = frames[start..]
        .iter()
        .position(|f| {
            let s = symbol(f);
            // The worker loop (named with or without its module path), or what it was
            // inlined into.
            s == "worker_main"
                || s.ends_with("::worker_main")
                || s.contains("gloam::serve::")
                || s == "gloam_serve"
        })
        .map_or(frames.len(), |i| start + i);
    let mut out = String::from("stack (innermost first):");
    for (n, f) in frames[start..end].iter().enumerate() {
        out.push_str(&format!("\n  {n}: {}", symbol(f)));
        for at in &f[1..] {
            out.push_str(&format!("\n       {}", at.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::trim;

    #[test]
    fn keeps_the_handlers_frames() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/x/backtrace.rs:1:1\n   1: gloam_c::trace::here\n   2: gloam_ctx_fail\n   3: handle\n             at main.c:20:9\n   4: main_loop_helper\n   5: worker_main\n             at serve.rs:1:1\n   6: gloam::serve::serve_env::{{closure}}\n   7: main\n";
        assert_eq!(
            trim(text, "gloam_ctx_fail"),
            "stack (innermost first):\n  0: handle\n       at main.c:20:9\n  1: main_loop_helper"
        );
    }
}
