//! Build script: stamps the binaries with the git revision they were built from, so `ds --version`
//! and the stats socket can say exactly what is running.

use std::process::Command;

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=DS_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
}
