//! Real podman (Debian's `podman` package: containers/image and libpod's spec generation) as the oracle
//! for "would the runtime create this container": its own root, run root and `vfs` storage in a temp
//! dir, its own `registries.conf` and signature policy, `podman pull` from a `docker-registry` on
//! 127.0.0.1, then `podman create --network none` — which builds the container's process from the
//! image's Entrypoint/Cmd and the given entrypoint/args without running anything (containers cannot
//! run in this sandbox; creating one needs no OCI runtime). `./test.sh` installs podman when missing.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A private podman store; removed on drop.
pub struct Podman {
    dir: tempfile::TempDir,
}

/// What `podman create` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    /// It refused: the last line of its stderr.
    Refused(String),
}

impl Podman {
    /// A fresh store; an error (never a skip) when podman is missing.
    pub fn new() -> anyhow::Result<Self> {
        let found = Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("podman is missing: ./test.sh installs Debian's podman package");
        }
        let dir = tempfile::Builder::new().prefix("pg-podman-").tempdir()?;
        std::fs::write(dir.path().join("registries.conf"), "")?;
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )?;
        std::fs::write(
            dir.path().join("containers.conf"),
            "[engine]\nevents_logger = \"file\"\n",
        )?;
        Ok(Self { dir })
    }

    fn command(&self) -> Command {
        let root = self.dir.path();
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_REGISTRIES_CONF", root.join("registries.conf"))
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("XDG_RUNTIME_DIR", root.join("xdg"))
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .stdin(Stdio::null());
        command
    }

    fn run(&self, mut command: Command) -> anyhow::Result<Output> {
        std::fs::create_dir_all(self.dir.path().join("xdg"))?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("podman")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("podman did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child.wait_with_output()?)
    }

    /// `podman pull` over plain HTTP from a registry on 127.0.0.1.
    pub fn pull(&self, reference: &str) -> anyhow::Result<()> {
        let mut command = self.command();
        command
            .args([
                "pull",
                "--quiet",
                "--tls-verify=false",
                "--signature-policy",
            ])
            .arg(self.dir.path().join("policy.json"))
            .arg(reference);
        let output = self.run(command)?;
        if !output.status.success() {
            bail!(
                "podman pull {reference}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// `podman create` of `reference` with a Kubernetes container's `command` (as `--entrypoint`, which
    /// also drops the image's Cmd) and `args` (as the command line), as kubelet passes them: empty is
    /// unset.
    pub fn create(
        &self,
        reference: &str,
        command: Option<&[&str]>,
        args: Option<&[&str]>,
    ) -> anyhow::Result<Created> {
        let mut podman = self.command();
        podman.args(["create", "--network", "none"]);
        if let Some(command) = command.filter(|c| !c.is_empty()) {
            podman
                .arg("--entrypoint")
                .arg(serde_json::to_string(command)?);
        }
        podman.arg(reference);
        podman.args(args.unwrap_or_default());
        let output = self.run(podman)?;
        if output.status.success() {
            return Ok(Created::Created);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Ok(Created::Refused(last.to_owned()))
    }
}
