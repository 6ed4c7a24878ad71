//! A child process (a `pullgate serve` under test) that is killed and reaped when dropped, and its
//! memory as `/proc/PID/status` reports it.

use std::process::Child;

pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field")
    }
}

/// A loopback port free right now (for a server process to listen on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `pullgate serve` on `127.0.0.1:port` with the settings file `config`, the shipped policies and a
/// certificate generated into `certs` (its CA at `certs/ca.pem`); output discarded. Callers add how the
/// Kubernetes API is reached (`--kube-api off`, `--kubeconfig`).
pub fn serve_command(
    port: u16,
    config: &std::path::Path,
    certs: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(config)
        .arg("--policies")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
        .arg("--generated-cert-dir")
        .arg(certs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}
