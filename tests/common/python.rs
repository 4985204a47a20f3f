//! Real Python clients (Debian's python3 with python3-requests) from
//! `tests/clients/`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::require_tool;

pub const PYTHON_BIN: &str = "/usr/bin/python3";

/// Runs `tests/clients/<script>` with `args`; its output unjudged.
pub fn run_python_client(script: &str, args: &[&str]) -> Output {
    require_tool(PYTHON_BIN, "python3");
    require_tool(
        "/usr/lib/python3/dist-packages/requests/__init__.py",
        "python3-requests",
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    Command::new(PYTHON_BIN)
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {PYTHON_BIN} {}: {e}", path.display()))
}
