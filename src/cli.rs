//! Parsing helpers shared by the command-line tools: sizes and shard keys.

use anyhow::{bail, Context};
use ds_store::ShardKey;

/// Parses `4096`, `64K`, `1M`, `10G`, `1T` (binary multiples; a trailing `B`/`iB` is allowed).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    // One grammar for sizes everywhere: the config's.
    text.parse::<crate::config::ByteSize>()
        .map(|size| size.bytes())
        .map_err(|()| {
            anyhow::anyhow!(
                "`{text}` is not a size (examples: 4096, 64K, 1M, 10G; at most 2^64 - 1)"
            )
        })
}

/// Parses `OBJECT[/STRIPE[/SHARD]]`, OBJECT being 1 to 32 hex digits.
pub fn parse_key(text: &str) -> anyhow::Result<ShardKey> {
    let mut parts = text.split('/');
    let object = parts.next().unwrap_or_default();
    if object.is_empty() || object.len() > 32 || !object.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("key `{text}`: the object id must be 1 to 32 hex digits");
    }
    let object = u128::from_str_radix(object, 16).expect("checked hex");
    let stripe = match parts.next() {
        Some(stripe) => stripe.parse().with_context(|| {
            format!("key `{text}`: stripe `{stripe}` is not a number below 2^32")
        })?,
        None => 0,
    };
    let shard = match parts.next() {
        Some(shard) => shard
            .parse()
            .with_context(|| format!("key `{text}`: shard `{shard}` is not a number below 256"))?,
        None => 0,
    };
    if parts.next().is_some() {
        bail!("key `{text}`: expected OBJECT[/STRIPE[/SHARD]]");
    }
    Ok(ShardKey::new(object, stripe, shard))
}

/// Parses a node id: 1 to 32 hex digits.
pub fn parse_node_id(text: &str) -> anyhow::Result<u128> {
    if text.is_empty() || text.len() > 32 {
        bail!("node id `{text}` must be 1 to 32 hex digits");
    }
    u128::from_str_radix(text, 16).with_context(|| format!("node id `{text}` is not hex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("10g").unwrap(), 10 << 30);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(parse_key("ff").unwrap(), ShardKey::new(0xff, 0, 0));
        assert_eq!(parse_key("a/3/2").unwrap(), ShardKey::new(0xa, 3, 2));
        assert!(parse_key("").is_err());
        assert!(parse_key("xyz").is_err());
        assert!(parse_key("a/1/300").is_err());
        assert!(parse_key("a/1/2/3").is_err());
        assert!(parse_key(&"f".repeat(33)).is_err());
    }
}
