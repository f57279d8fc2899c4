//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, `postgres` on a
//! free loopback port, stopped and deleted on drop. Never a mock: Debian's own server binaries.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (as in CI containers) the
//! cluster runs as the unprivileged user named by `UID2_PG_USER` (default `uid2pg`), which
//! `scripts/test.sh` creates.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// A running (or stopped) test cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
    port: u16,
}

fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("UID2_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found under /usr/lib/postgresql (install Debian's postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no PostgreSQL version with initdb under /usr/lib/postgresql")
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
        let out = Command::new("id").args([flag, user]).output()?;
        if !out.status.success() {
            bail!("user {user} does not exist (scripts/test.sh creates it: useradd -r -M {user})");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PgCluster {
    /// Creates and starts a cluster.
    pub fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let user =
            is_root().then(|| std::env::var("UID2_PG_USER").unwrap_or_else(|_| "uid2pg".into()));
        let dir = std::env::temp_dir().join(format!(
            "uid2-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        if let Some(user) = &user {
            let (uid, gid) = user_id(user)?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let cluster = Self {
            dir,
            bin,
            user,
            port: free_port()?,
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
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
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
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    fn start_server(&self) -> Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=100",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )?;
        Ok(())
    }

    /// The connection URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
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
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
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

    /// The directory holding the cluster.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
