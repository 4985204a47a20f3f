use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use registry_gateway::passwd::{self, PasswdError};
use registry_gateway::runtime::Snapshot;

// mimalloc: Pingora allocates many small objects per request; this cuts
// per-request CPU measurably over glibc malloc.
#[global_allocator]
static GLOBAL: registry_gateway::allocator::Mimalloc = registry_gateway::allocator::Mimalloc;

#[derive(Parser)]
#[command(version, about = "Reverse-proxy gateway for Docker/OCI registries")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "gateway.yaml")]
    config: PathBuf,
    /// Take the listening sockets over from the running gateway (set by
    /// the old process when it gets SIGUSR2).
    #[arg(long, hide = true)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print a summary.
    Check,
    /// Add or update a user (bcrypt, as `htpasswd -B`), or delete one.
    Passwd {
        /// The htpasswd file (created when missing).
        file: PathBuf,
        user: String,
        /// Remove the user instead.
        #[arg(long)]
        delete: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        stdin: bool,
        /// bcrypt cost (4 to 31); each step doubles the work.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Show which virtual registry, route, upstream and auth a request gets, and why.
    Route {
        /// Host as the client sends it (Host header or :authority), port allowed.
        host: String,
        /// Request path, e.g. /v2/library/alpine/manifests/latest.
        path: String,
        /// Local port the request arrives on (limits registries with `ports`).
        #[arg(long)]
        port: Option<u16>,
        /// Request method (auth scope `writes` exempts GET and HEAD).
        #[arg(long, default_value = "GET")]
        method: String,
        /// Decide access as this user, as if they had logged in (default:
        /// a client without credentials).
        #[arg(long)]
        user: Option<String>,
    },
    /// Signal the running gateway (found by `server.pid_file`), as `nginx -s`.
    Signal {
        #[arg(value_enum)]
        action: registry_gateway::signals::Control,
    },
    /// Make a development CA and server certificate (not for production).
    Certs {
        /// Output folder.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// DNS names and IP addresses of the server certificate.
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        names: Vec<String>,
        /// Replace existing files (otherwise existing certificates are kept).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    registry_gateway::signals::remember_exe();
    let cli = Cli::parse();
    registry_gateway::logging::init();

    if let Some(Command::Signal { action }) = &cli.command {
        return signal(*action, &cli.config);
    }
    if let Some(Command::Certs { out, names, force }) = &cli.command {
        return certs(out, names, *force);
    }
    if let Some(Command::Passwd {
        file,
        user,
        delete,
        stdin,
        cost,
    }) = &cli.command
    {
        return match passwd(file, user, *delete, *stdin, *cost) {
            Ok(message) => {
                eprintln!("{message}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let config = match Snapshot::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            for line in e.lines() {
                eprintln!("error: {line}");
            }
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Check) => {
            print!("{}", registry_gateway::runtime::summary(&config));
            println!("{}: configuration OK", config.source.display());
            ExitCode::SUCCESS
        }
        Some(Command::Route {
            host,
            path,
            port,
            method,
            user,
        }) => {
            println!(
                "{}",
                registry_gateway::explain::route(&config, &host, &path, port, &method, user.as_deref())
            );
            ExitCode::SUCCESS
        }
        Some(Command::Passwd { .. } | Command::Certs { .. } | Command::Signal { .. }) => {
            unreachable!("handled before loading the configuration")
        }
        None => {
            registry_gateway::allocator::start_purger();
            match registry_gateway::server::run(config, cli.upgrade) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn signal(action: registry_gateway::signals::Control, config: &Path) -> ExitCode {
    // Only the pid file is needed: a file the gateway would refuse still
    // names it (reload then logs why the file is refused).
    let settings = match registry_gateway::config::read(config) {
        Ok((settings, _)) => settings,
        Err(e) => {
            for line in e.lines() {
                eprintln!("error: {line}");
            }
            return ExitCode::FAILURE;
        }
    };
    match registry_gateway::signals::send(action, settings.server.pid_file.as_deref(), config) {
        Ok(pid) => {
            eprintln!("sent {} to process {pid}", action.signal().1);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(file: &Path, user: &str, delete: bool, stdin: bool, cost: u32) -> Result<String, PasswdError> {
    passwd::validate_user(user)?;
    if delete {
        passwd::update_file(file, user, None)?;
        return Ok(format!("deleted user {user} from {}", file.display()));
    }
    let io = |e| PasswdError::Io("password input".into(), e);
    let password = if stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(io)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password(format!("New password for {user}: ")).map_err(io)?;
        let again = rpassword::prompt_password("Re-type new password: ").map_err(io)?;
        if first != again {
            return Err(PasswdError::Mismatch);
        }
        first
    };
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    let line = passwd::bcrypt_line(user, &password, cost)?;
    let existed = passwd::update_file(file, user, Some(&line))?;
    let verb = if existed { "updated" } else { "added" };
    Ok(format!("{verb} user {user} in {}", file.display()))
}

fn certs(out: &Path, names: &[String], force: bool) -> ExitCode {
    use registry_gateway::tls::dev;
    if !force && out.join(dev::SERVER_CERT).exists() && out.join(dev::SERVER_KEY).exists() {
        eprintln!(
            "{}: development certificates exist; --force replaces them",
            out.display()
        );
        return ExitCode::SUCCESS;
    }
    match dev::generate(out, names) {
        Ok(()) => {
            eprintln!(
                "wrote {0}/{1} (CA), {0}/{2} and {0}/{3} for {4}; clients trust {0}/{5}/{1}",
                out.display(),
                dev::CA_CERT,
                dev::SERVER_CERT,
                dev::SERVER_KEY,
                names.join(", "),
                dev::TRUST_DIR
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
