//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, `postgres` on a
//! free loopback port, stopped and deleted on drop. Never a mock: Debian's own server binaries.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (as in CI containers) the
//! cluster runs as the unprivileged user named by `UID2_PG_USER` (default `uid2pg`), which
//! `scripts/test.sh` creates.
//!
//! [`PgCluster::start_tls_only`] starts one that refuses connections without TLS, with a
//! certificate for `localhost` from a test CA of its own (generated with rcgen).
//!
//! Outages come in two kinds: [`PgCluster::stop`] shuts the server down (connections are
//! refused), [`PgCluster::pause`] freezes it with `SIGSTOP` (connections are accepted by the
//! kernel and then never answered, as with a hung host or a network partition).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A cluster operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No PostgreSQL server binaries on this machine.
    #[error("PostgreSQL server binaries not found: {0} (install Debian's postgresql)")]
    NoServer(String),
    /// The unprivileged user the cluster runs as does not exist.
    #[error("user {0} does not exist (scripts/test.sh creates it: useradd -r -M {0})")]
    NoUser(String),
    /// A PostgreSQL tool or `kill` failed.
    #[error("{tool} failed: {output}")]
    Tool {
        /// The tool.
        tool: String,
        /// What it printed.
        output: String,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of a cluster operation.
pub type Result<T, E = PgError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// Times `start` tries another port when the one it picked was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;

/// A running (or stopped, or paused) test cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
    port: u16,
    /// Server options besides the port and sockets (TLS).
    options: String,
}

fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("UID2_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| PgError::NoServer(format!("/usr/lib/postgresql: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| PgError::NoServer("no version with initdb under /usr/lib/postgresql".into()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_id(user: &str) -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(io("running id"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| PgError::NoUser(user.to_owned()))
    };
    Ok((id("-u")?, id("-g")?))
}

/// A port free now. Another process may take it before the server binds it: `start` retries.
fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

fn run_tool(mut cmd: Command, tool: &str) -> Result<Output> {
    let out = cmd.output().map_err(io(format!("running {tool}")))?;
    if !out.status.success() {
        return Err(PgError::Tool {
            tool: tool.to_owned(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out)
}

impl PgCluster {
    /// Creates and starts a cluster.
    pub fn start() -> Result<Self> {
        Self::create()?.started()
    }

    /// Creates and starts a cluster that takes TLS connections only (`hostssl` in
    /// `pg_hba.conf`, plain ones rejected), its certificate for `localhost` (not `127.0.0.1`)
    /// issued by a test CA whose certificate is at [`ca_file`](Self::ca_file).
    pub fn start_tls_only() -> Result<Self> {
        let mut cluster = Self::create()?;
        let tls = |e: rcgen::Error| PgError::Tool {
            tool: "rcgen".into(),
            output: e.to_string(),
        };
        let ca_key = rcgen::KeyPair::generate().map_err(tls)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "uid2-rs test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls)?;
        let server_key = rcgen::KeyPair::generate().map_err(tls)?;
        let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|p| p.signed_by(&server_key, &ca))
            .map_err(tls)?;
        let data = cluster.dir.join("data");
        let hba = "local all all trust\n\
                   hostssl all all 127.0.0.1/32 trust\n\
                   hostnossl all all 127.0.0.1/32 reject\n";
        for (name, text, mode) in [
            ("server.crt", server.pem(), 0o644),
            ("server.key", server_key.serialize_pem(), 0o600),
            ("pg_hba.conf", hba.to_owned(), 0o600),
        ] {
            let path = data.join(name);
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(io(format!("protecting {}", path.display())))?;
            if let Some(user) = &cluster.user {
                let (uid, gid) = user_id(user)?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(io(format!("giving {} to {user}", path.display())))?;
            }
        }
        let ca_path = cluster.ca_file();
        std::fs::write(&ca_path, ca.pem()).map_err(io(format!("writing {}", ca_path.display())))?;
        cluster.options =
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        cluster.started()
    }

    /// The PEM certificate of the CA that issued a TLS-only cluster's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The URL of the `postgres` database with `localhost` for its host (the name the
    /// certificate of a TLS-only cluster is for) and `params` as its query.
    pub fn localhost_url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?{params}",
            self.port
        )
    }

    /// A new cluster's data directory (`initdb`), not started.
    fn create() -> Result<Self> {
        let bin = bin_dir()?;
        let user =
            is_root().then(|| std::env::var("UID2_PG_USER").unwrap_or_else(|_| "uid2pg".into()));
        let dir = std::env::temp_dir().join(format!(
            "uid2-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        if let Some(user) = &user {
            let (uid, gid) = user_id(user)?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(io(format!("giving {} to {user}", dir.display())))?;
        }
        let cluster = Self {
            dir,
            bin,
            user,
            port: free_port()?,
            options: String::new(),
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        Ok(cluster)
    }

    /// Starts the server, on another free port if the one picked was taken meanwhile.
    fn started(mut self) -> Result<Self> {
        let cluster = &mut self;
        for attempt in 1.. {
            let log_before = cluster.log().len();
            let Err(e) = cluster.start_server() else {
                break;
            };
            let port_taken = cluster
                .log()
                .get(log_before..)
                .is_some_and(|l| l.contains("could not bind"));
            if !port_taken || attempt == PORT_ATTEMPTS {
                return Err(e);
            }
            cluster.port = free_port()?;
        }
        Ok(self)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn log_path(&self) -> String {
        self.dir.join("postgres.log").display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let path = self.bin.join(tool);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args).current_dir(&self.dir);
        run_tool(cmd, tool)
    }

    fn start_server(&self) -> Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=100{}",
            self.port,
            self.dir.display(),
            self.options
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &self.log_path(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )?;
        Ok(())
    }

    /// The connection URL of the database `name`.
    fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The connection URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// A URL of a fresh database `name` in this cluster (created now).
    pub fn database(&self, name: &str) -> Result<String> {
        let url = self.url();
        self.run(
            "psql",
            &[
                "-d",
                &url,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE DATABASE \"{name}\""),
            ],
        )?;
        Ok(self.database_url(name))
    }

    /// Stops the server (fast shutdown: clients are disconnected, committed data is kept).
    pub fn stop(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        )?;
        Ok(())
    }

    /// Starts the server again on the same port.
    pub fn restart(&self) -> Result<()> {
        self.start_server()
    }

    fn postmaster_pid(&self) -> Result<String> {
        let path = self.dir.join("data").join("postmaster.pid");
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        Ok(text.lines().next().unwrap_or_default().trim().to_owned())
    }

    fn signal(&self, signal: &str, resume: bool) -> Result<()> {
        let pid = self.postmaster_pid()?;
        let postmaster = || {
            let mut c = Command::new("kill");
            c.args([signal, &pid]);
            run_tool(c, "kill").map(drop)
        };
        let backends = || {
            let mut c = Command::new("pkill");
            c.args([signal, "-P", &pid]);
            // pkill exits 1 when there is no child, which is not a failure here.
            c.output().map(drop).map_err(io("running pkill"))
        };
        // Pause the postmaster first so that it forks no new backend; resume it last.
        if resume {
            backends()?;
            postmaster()
        } else {
            postmaster()?;
            backends()
        }
    }

    /// Freezes the server and every backend (`SIGSTOP`): it accepts connections but answers
    /// nothing, as a hung database does, until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP", false)
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT", true)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A stopped process ignores the shutdown signal until it runs again.
        let _ = self.resume();
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
