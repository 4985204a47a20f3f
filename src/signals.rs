//! The process side of nginx-style control: the pid file, sending a signal
//! to the running gateway (`registry-gateway signal ...`), and starting the
//! successor process of an upgrade.

use std::path::Path;
use std::process::Command;

/// What `registry-gateway signal` can ask of the running gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Control {
    /// Reload gateway.yaml (SIGHUP).
    Reload,
    /// Stop accepting, drain for `server.grace_period`, exit (SIGTERM).
    Stop,
    /// The same graceful stop (SIGQUIT).
    Quit,
    /// Reopen the access log file (SIGUSR1).
    Reopen,
    /// Start the binary anew and hand it the listening sockets (SIGUSR2).
    Upgrade,
}

impl Control {
    pub fn signal(self) -> (libc::c_int, &'static str) {
        match self {
            Control::Reload => (libc::SIGHUP, "SIGHUP"),
            Control::Stop => (libc::SIGTERM, "SIGTERM"),
            Control::Quit => (libc::SIGQUIT, "SIGQUIT"),
            Control::Reopen => (libc::SIGUSR1, "SIGUSR1"),
            Control::Upgrade => (libc::SIGUSR2, "SIGUSR2"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("{config}: server.pid_file is not set, so the running gateway cannot be found; set it, or use kill")]
    NoPidFile { config: String },
    #[error("{file}: cannot read the pid file: {source} (is the gateway running?)")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a process id: `{text}`")]
    Invalid { file: String, text: String },
    #[error("process {pid} (from {file}): {source}")]
    Kill {
        pid: i32,
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Sends `control`'s signal to the process named by `pid_file`.
pub fn send(control: Control, pid_file: Option<&Path>, config: &Path) -> Result<i32, SignalError> {
    let path = pid_file.ok_or_else(|| SignalError::NoPidFile {
        config: config.display().to_string(),
    })?;
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SignalError::Read {
        file: file.clone(),
        source,
    })?;
    let pid: i32 = match text.trim().parse() {
        Ok(pid) if pid > 0 => pid,
        _ => {
            return Err(SignalError::Invalid {
                file,
                text: text.trim().to_owned(),
            });
        }
    };
    // SAFETY: kill(2) with a positive pid and a valid signal number.
    if unsafe { libc::kill(pid, control.signal().0) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(SignalError::Kill { pid, file, source });
    }
    Ok(pid)
}

pub fn write_pid_file(path: &Path) {
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        log::error!("{}: cannot write the pid file: {e}", path.display());
    }
}

/// Removes the pid file if it still names this process (after an upgrade
/// it names the new one).
pub fn remove_pid_file(path: &Path) {
    let ours = std::fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Starts this program again (the file at the path it was started from,
/// which an upgrade has replaced) with the same arguments plus `--upgrade`.
pub fn start_successor() -> std::io::Result<u32> {
    let exe = START_EXE.get().cloned().map_or_else(std::env::current_exe, Ok)?;
    let args: Vec<_> = std::env::args_os().skip(1).filter(|a| a != "--upgrade").collect();
    let child = Command::new(&exe).args(args).arg("--upgrade").spawn()?;
    Ok(child.id())
}

static START_EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Remembers where the binary was started from, before anyone replaces it
/// (later, `/proc/self/exe` names the deleted old file).
pub fn remember_exe() {
    if let Ok(exe) = std::env::current_exe() {
        let _ = START_EXE.set(exe);
    }
}
