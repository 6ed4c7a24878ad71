//! Real containerd (Debian's `containerd` package) as the oracle for "would the node pull this": a daemon
//! with its own config, root, state and socket in a short temp dir (no system daemon; CRI, overlay and the
//! task runtimes disabled, the `native` snapshotter, content isolated per namespace), and `ctr images pull`
//! into a fresh namespace per question, with the hosts dir, credentials and platform a node would use.
//! `./test.sh` installs containerd when it is missing. Loopback only; every pull has a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running containerd; killed on drop.
pub struct Containerd {
    child: Child,
    socket: PathBuf,
    namespaces: AtomicUsize,
    dir: tempfile::TempDir,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one pull came to.
#[derive(Debug, Clone)]
pub struct Pull {
    pub ok: bool,
    /// The last `ctr: …` line of stderr (the error), empty on success.
    pub error: String,
}

/// How a node would pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions<'a> {
    pub hosts_dir: Option<&'a Path>,
    pub user: Option<(&'a str, &'a str)>,
    /// `os/arch[/variant]` of the node (default linux/amd64).
    pub platform: Option<&'a str>,
}

impl Containerd {
    /// Start a private containerd; an error (never a skip) when the package is missing.
    pub fn start() -> anyhow::Result<Self> {
        for tool in ["containerd", "ctr"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                bail!("{tool} is missing: ./test.sh installs Debian's containerd package");
            }
        }
        // The socket path must stay under 104 bytes: a short directory in /tmp.
        let dir = tempfile::Builder::new()
            .prefix("pgc.")
            .tempdir_in("/tmp")
            .context("temp dir")?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("root"))?;
        std::fs::create_dir_all(d.join("state"))?;
        let socket = d.join("c.sock");
        let (uid, gid) = ids();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.restart",
  "io.containerd.runtime.v1.linux",
  "io.containerd.runtime.v2.task",
  "io.containerd.monitor.v1.cgroups",
  "io.containerd.service.v1.tasks-service",
  "io.containerd.grpc.v1.tasks",
]

[grpc]
  address = "{socket}"
  uid = {uid}
  gid = {gid}

[ttrpc]
  address = "{socket}.ttrpc"
  uid = {uid}
  gid = {gid}

[plugins]
  [plugins."io.containerd.metadata.v1.bolt"]
    content_sharing_policy = "isolated"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            socket = socket.display(),
        );
        std::fs::write(d.join("config.toml"), config)?;
        let log = std::fs::File::create(d.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        let mut daemon = Self {
            child,
            socket,
            namespaces: AtomicUsize::new(0),
            dir,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("containerd exited ({status}):\n{}", daemon.log());
            }
            let ready = Command::new("ctr")
                .arg("--address")
                .arg(&daemon.socket)
                .args(["--connect-timeout", "1s", "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(daemon);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = daemon.child.kill();
        bail!("containerd did not come up:\n{}", daemon.log())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr images pull` of `reference` (with a tag or digest) into a fresh namespace.
    pub fn pull(&self, reference: &str, options: &PullOptions<'_>) -> Pull {
        let namespace = format!("q{}", self.namespaces.fetch_add(1, Ordering::SeqCst));
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--timeout", "20s", "-n", &namespace, "images", "pull"])
            .env("CONTAINERD_SNAPSHOTTER", "native")
            .stdin(Stdio::null());
        if let Some(dir) = options.hosts_dir {
            command.arg("--hosts-dir").arg(dir);
        }
        if let Some((user, pass)) = options.user {
            command.arg("--user").arg(format!("{user}:{pass}"));
        }
        command
            .arg("--platform")
            .arg(options.platform.unwrap_or("linux/amd64"));
        command.arg(reference);
        match command.output() {
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let error = stderr
                    .lines()
                    .rfind(|l| l.starts_with("ctr: "))
                    .unwrap_or("")
                    .to_owned();
                Pull {
                    ok: output.status.success(),
                    error,
                }
            }
            Err(e) => Pull {
                ok: false,
                error: format!("ctr did not run: {e}"),
            },
        }
    }
}

/// The user and group ids the socket belongs to.
fn ids() -> (u32, u32) {
    let read = |flag: &str| {
        Command::new("id")
            .arg(flag)
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
    };
    (read("-u"), read("-g"))
}
