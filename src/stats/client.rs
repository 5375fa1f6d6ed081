//! The client side of the stats socket, for `ds stats` and `ds top`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use super::render;
use super::report::NodeReport;

/// The largest answer read from a node.
pub const RESPONSE_BYTES_MAX: u64 = 64 << 20;
/// Time a node has to answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `ds stats` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The human table (`ds stats` without flags).
    #[default]
    Table,
    /// The JSON report (`--json`).
    Json,
    /// Prometheus text (`--prom`).
    Prom,
}

/// Sends one request line and returns the answer; an `error:` answer becomes an error.
pub fn request(path: &Path, line: &str) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to the stats socket {} (is the node running?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
    stream.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .with_context(|| format!("sending to {}", path.display()))?;
    let mut answer = String::new();
    stream
        .take(RESPONSE_BYTES_MAX + 1)
        .read_to_string(&mut answer)
        .with_context(|| format!("reading from {}", path.display()))?;
    if answer.len() as u64 > RESPONSE_BYTES_MAX {
        bail!(
            "{}: answer longer than {RESPONSE_BYTES_MAX} bytes",
            path.display()
        );
    }
    if let Some(error) = answer.strip_prefix("error:") {
        bail!("{}: the node answered: {}", path.display(), error.trim());
    }
    Ok(answer)
}

/// The node's report, parsed.
pub fn fetch_report(path: &Path) -> anyhow::Result<NodeReport> {
    let answer = request(path, "json")?;
    serde_json::from_str(&answer)
        .with_context(|| format!("{}: the answer is not a stats report", path.display()))
}

/// The text `ds stats` prints in `format`.
pub fn fetch(path: impl AsRef<Path>, format: Format) -> anyhow::Result<String> {
    let path = path.as_ref();
    match format {
        Format::Json => request(path, "json"),
        Format::Prom => request(path, "prom"),
        Format::Table => Ok(render::table(&fetch_report(path)?)),
    }
}

/// `ds stats --socket PATH [--json|--prom]`.
pub fn print_stats(path: impl AsRef<Path>, format: Format) -> anyhow::Result<()> {
    let text = fetch(path, format)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
