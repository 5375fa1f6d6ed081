//! Erasure coding of one stripe with reed-solomon-simd: K data shards in, M parity shards out;
//! any K of the N shards back to the stripe's bytes.
//!
//! An [`EcCodec`] belongs to one layout (scheme and shard size) and keeps the codec's work
//! space between stripes: reed-solomon-simd allocates it on creation and reuses it on `reset`,
//! so a core that keeps one codec per layout codes without allocating. Shards of a short stripe
//! are coded at `StripeLayout::coded_bytes`; short data shards are zero-padded in a scratch
//! shard, never in the caller's buffers.
//!
//! Special cases, all giving the bytes the general code would: M = 0 never calls the codec (it
//! needs a recovery shard); K = 1 copies (the parity of one data shard is that shard, checked in
//! the tests), so `1+M` is plain replication.
//!
//! What it does not do: checksums (the shard store and the protocol check every shard before it
//! gets here; the codec cannot tell a wrong shard from a right one), or choosing which shards to
//! fetch (`quorum::read`).

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::shard_set::ShardSet;
use crate::stripe::StripeLayout;

/// Why a stripe could not be coded.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The stripe is empty or longer than the layout's stripe.
    #[error("a stripe of {len} bytes is not within 1..={stripe_bytes}")]
    StripeLength { len: usize, stripe_bytes: u32 },
    /// A shard has another length than the stripe's layout gives it.
    #[error("shard {shard} holds {found} bytes; a stripe of this length stores {expected}")]
    ShardLength {
        shard: u8,
        expected: u32,
        found: usize,
    },
    /// Fewer than K shards: the stripe cannot be restored.
    #[error("{present} shards present; {needed} are needed to restore the stripe")]
    TooFewShards { present: u8, needed: u8 },
    /// reed-solomon-simd refused; the checks above make this unreachable, it stays typed anyway.
    #[error("erasure codec: {0}")]
    Codec(reed_solomon_simd::Error),
}

impl From<reed_solomon_simd::Error> for CodecError {
    fn from(error: reed_solomon_simd::Error) -> Self {
        CodecError::Codec(error)
    }
}

/// Encoder and decoder state for one layout, reused across stripes.
pub struct EcCodec {
    layout: StripeLayout,
    /// None when M = 0 or K = 1: those never call the codec.
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
    /// One full shard of scratch: a short data shard is zero-padded here to the coded size.
    pad: Vec<u8>,
}

impl EcCodec {
    pub fn new(layout: StripeLayout) -> Result<Self, CodecError> {
        let scheme = layout.scheme();
        let (k, m) = (usize::from(scheme.k()), usize::from(scheme.m()));
        let shard_bytes = layout.shard_bytes() as usize;
        let coded = m > 0 && k > 1;
        // Sized for a full stripe once; every later `reset` to a shorter one reuses the space.
        let encoder = match coded {
            true => Some(ReedSolomonEncoder::new(k, m, shard_bytes)?),
            false => None,
        };
        let decoder = match coded {
            true => Some(ReedSolomonDecoder::new(k, m, shard_bytes)?),
            false => None,
        };
        let pad = match coded {
            true => vec![0; shard_bytes],
            false => Vec::new(),
        };
        Ok(Self {
            layout,
            encoder,
            decoder,
            pad,
        })
    }

    pub fn layout(&self) -> StripeLayout {
        self.layout
    }

    /// Computes the M parity shards of a stripe whose content is `stripe` (its length is the
    /// stripe's length). Writes `coded_bytes` bytes at the start of each `parity` buffer (which
    /// must be at least that long) and returns that count. The data shards are
    /// `layout.data_shard(stripe, i)`: slices of the stripe, never copied out.
    pub fn encode<P: AsMut<[u8]>>(
        &mut self,
        stripe: &[u8],
        parity: &mut [P],
    ) -> Result<u32, CodecError> {
        let scheme = self.layout.scheme();
        assert_eq!(parity.len(), usize::from(scheme.m()));
        let stripe_len = self.check_stripe_len(stripe.len())?;
        let coded = self.layout.coded_bytes(stripe_len);
        let coded_usize = coded as usize;
        for buffer in parity.iter_mut() {
            assert!(buffer.as_mut().len() >= coded_usize);
        }
        if scheme.m() == 0 {
            return Ok(coded);
        }
        if scheme.k() == 1 {
            for buffer in parity.iter_mut() {
                let buffer = &mut buffer.as_mut()[..coded_usize];
                buffer[..stripe.len()].copy_from_slice(stripe);
                buffer[stripe.len()..].fill(0);
            }
            return Ok(coded);
        }
        let Self {
            layout,
            encoder,
            pad,
            ..
        } = self;
        let encoder = encoder
            .as_mut()
            .expect("a codec with K > 1 and M > 0 has an encoder");
        encoder.reset(
            usize::from(scheme.k()),
            usize::from(scheme.m()),
            coded_usize,
        )?;
        for shard in 0..scheme.k() {
            encoder.add_original_shard(padded(layout.data_shard(stripe, shard), pad, coded))?;
        }
        let result = encoder.encode()?;
        for (buffer, recovery) in parity.iter_mut().zip(result.recovery_iter()) {
            assert_eq!(recovery.len(), coded_usize);
            buffer.as_mut()[..coded_usize].copy_from_slice(recovery);
        }
        Ok(coded)
    }

    /// Restores the content of a stripe into `out` (its length is the stripe's length) from the
    /// shards at hand: `shards[i]` is shard i as stored, or None. With all K data shards present
    /// they are copied and nothing is decoded; otherwise the present data shards and the lowest
    /// parity shards, K in all, are decoded. Returns the data shards rebuilt from parity (empty
    /// when nothing was decoded). On an error `out` holds no stripe and must not be used.
    pub fn decode<B: AsRef<[u8]>>(
        &mut self,
        shards: &[Option<B>],
        out: &mut [u8],
    ) -> Result<ShardSet, CodecError> {
        let scheme = self.layout.scheme();
        assert_eq!(shards.len(), usize::from(scheme.n()));
        let stripe_len = self.check_stripe_len(out.len())?;
        let coded = self.layout.coded_bytes(stripe_len);
        let mut present = ShardSet::EMPTY;
        for (shard, bytes) in (0u8..).zip(shards) {
            let Some(bytes) = bytes else { continue };
            let expected = self.layout.stored_bytes(stripe_len, shard);
            if bytes.as_ref().len() != expected as usize {
                return Err(CodecError::ShardLength {
                    shard,
                    expected,
                    found: bytes.as_ref().len(),
                });
            }
            present.insert(shard);
        }
        let data = ShardSet::first(scheme.k());
        let missing = data.difference(present);
        // Present data shards go straight to their place in the stripe.
        for shard in data.intersection(present).iter() {
            let range = self.layout.data_range(stripe_len, shard);
            let bytes = shards[usize::from(shard)]
                .as_ref()
                .expect("present")
                .as_ref();
            out[range.start as usize..range.end as usize].copy_from_slice(bytes);
        }
        if missing.is_empty() {
            return Ok(ShardSet::EMPTY);
        }
        if present.len() < scheme.k() {
            return Err(CodecError::TooFewShards {
                present: present.len(),
                needed: scheme.k(),
            });
        }
        if scheme.k() == 1 {
            // Every parity shard is a copy of data shard 0, zero-padded to the coded size.
            let parity = present.lowest().expect("K = 1 shard present");
            let bytes = shards[usize::from(parity)]
                .as_ref()
                .expect("present")
                .as_ref();
            out.copy_from_slice(&bytes[..out.len()]);
            return Ok(missing);
        }
        let Self {
            layout,
            decoder,
            pad,
            ..
        } = self;
        let decoder = decoder
            .as_mut()
            .expect("a codec with K > 1 and M > 0 has a decoder");
        decoder.reset(
            usize::from(scheme.k()),
            usize::from(scheme.m()),
            coded as usize,
        )?;
        for shard in data.intersection(present).iter() {
            let bytes = shards[usize::from(shard)]
                .as_ref()
                .expect("present")
                .as_ref();
            decoder.add_original_shard(usize::from(shard), padded(bytes, pad, coded))?;
        }
        let parity_used = present.difference(data).lowest_n(missing.len());
        for shard in parity_used.iter() {
            let bytes = shards[usize::from(shard)]
                .as_ref()
                .expect("present")
                .as_ref();
            decoder.add_recovery_shard(usize::from(shard - scheme.k()), bytes)?;
        }
        let result = decoder.decode()?;
        let mut rebuilt = ShardSet::EMPTY;
        for (index, restored) in result.restored_original_iter() {
            let shard = u8::try_from(index).expect("shard index below K");
            assert!(missing.contains(shard));
            let range = layout.data_range(stripe_len, shard);
            out[range.start as usize..range.end as usize].copy_from_slice(&restored[..range.len()]);
            rebuilt.insert(shard);
        }
        assert_eq!(rebuilt, missing);
        Ok(rebuilt)
    }

    fn check_stripe_len(&self, len: usize) -> Result<u32, CodecError> {
        let stripe_bytes = self.layout.stripe_bytes();
        match u32::try_from(len) {
            Ok(stripe_len) if (1..=stripe_bytes).contains(&stripe_len) => Ok(stripe_len),
            _ => Err(CodecError::StripeLength { len, stripe_bytes }),
        }
    }
}

/// `bytes` as a shard of `coded` bytes: itself when it is that long, else a zero-padded copy in
/// `pad` (the codec copies what it is given, so one scratch shard serves every data shard).
fn padded<'a>(bytes: &'a [u8], pad: &'a mut [u8], coded: u32) -> &'a [u8] {
    let coded = coded as usize;
    assert!(bytes.len() <= coded);
    if bytes.len() == coded {
        return bytes;
    }
    pad[..bytes.len()].copy_from_slice(bytes);
    pad[bytes.len()..coded].fill(0);
    &pad[..coded]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{SHARDS_MAX, SHARD_ALIGN_BYTES};
    use crate::scheme::Scheme;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every shard of a stripe as stored: data shards sliced from the stripe, then parity.
    fn all_shards(codec: &mut EcCodec, stripe: &[u8]) -> Vec<Vec<u8>> {
        let layout = codec.layout();
        let scheme = layout.scheme();
        let mut parity = vec![vec![0xAAu8; layout.shard_bytes() as usize]; scheme.m().into()];
        let coded = codec.encode(stripe, &mut parity).unwrap();
        let mut shards: Vec<Vec<u8>> = (0..scheme.k())
            .map(|i| layout.data_shard(stripe, i).to_vec())
            .collect();
        for mut p in parity {
            p.truncate(coded as usize);
            shards.push(p);
        }
        shards
    }

    fn random_stripe(rng: &mut ChaCha8Rng, layout: StripeLayout) -> Vec<u8> {
        let stripe_bytes = layout.stripe_bytes();
        // Mostly full stripes, often short ones, sometimes tiny ones.
        let len = match rng.gen_range(0..4) {
            0 => stripe_bytes,
            1 => rng.gen_range(1..=64.min(stripe_bytes)),
            _ => rng.gen_range(1..=stripe_bytes),
        };
        (0..len).map(|_| rng.gen()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_k_shards_restore_the_stripe(seed in any::<u64>()) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let k = rng.gen_range(1..=SHARDS_MAX as u8);
            let m = rng.gen_range(0..=SHARDS_MAX as u8 - k);
            let units = rng.gen_range(8..=32);
            let scheme = Scheme::new(k, m).unwrap();
            let layout = StripeLayout::new(scheme, units * SHARD_ALIGN_BYTES).unwrap();
            let mut codec = EcCodec::new(layout).unwrap();
            // Several stripes through one codec: its reused state must not leak between them.
            for _ in 0..4 {
                let stripe = random_stripe(&mut rng, layout);
                let shards = all_shards(&mut codec, &stripe);
                let mut order: Vec<usize> = (0..usize::from(scheme.n())).collect();
                order.shuffle(&mut rng);
                let lost = rng.gen_range(0..=usize::from(m));
                let mut held: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(&s[..])).collect();
                for &i in &order[..lost] {
                    held[i] = None;
                }
                let mut out = vec![0x5Au8; stripe.len()];
                let rebuilt = codec.decode(&held, &mut out).unwrap();
                prop_assert_eq!(&out, &stripe);
                let lost_data: ShardSet = order[..lost]
                    .iter()
                    .map(|&i| i as u8)
                    .filter(|&i| i < k)
                    .collect();
                prop_assert_eq!(rebuilt, lost_data);
                // M + 1 losses are a clear error, never bytes.
                for &i in &order[..=usize::from(m)] {
                    held[i] = None;
                }
                // At least one data shard is among them (there are only M parity shards).
                prop_assert_eq!(
                    codec.decode(&held, &mut out),
                    Err(CodecError::TooFewShards {
                        present: k - 1,
                        needed: k
                    })
                );
            }
        }
    }

    #[test]
    fn losing_m_plus_one_fails() {
        let scheme = Scheme::new(4, 2).unwrap();
        let layout = StripeLayout::new(scheme, 1024).unwrap();
        let mut codec = EcCodec::new(layout).unwrap();
        let stripe: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let shards = all_shards(&mut codec, &stripe);
        let mut held: Vec<Option<&Vec<u8>>> = shards.iter().map(Some).collect();
        held[0] = None;
        held[2] = None;
        held[5] = None;
        let mut out = vec![0; 4096];
        assert_eq!(
            codec.decode(&held, &mut out),
            Err(CodecError::TooFewShards {
                present: 3,
                needed: 4
            })
        );
        held[5] = Some(&shards[5]);
        assert_eq!(
            codec.decode(&held, &mut out),
            Ok([0, 2].into_iter().collect())
        );
        assert_eq!(out, stripe);
    }

    #[test]
    fn replication_is_a_copy_of_what_the_codec_computes() {
        let stripe: Vec<u8> = (0..1000u32).map(|i| (i * 13 + 1) as u8).collect();
        let layout = StripeLayout::new(Scheme::new(1, 3).unwrap(), 1024).unwrap();
        let mut codec = EcCodec::new(layout).unwrap();
        let shards = all_shards(&mut codec, &stripe);
        let mut padded = stripe.clone();
        padded.resize(1024, 0);
        let reference = reed_solomon_simd::encode(1, 3, [&padded]).unwrap();
        assert_eq!(&shards[1..], &reference[..]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let layout = StripeLayout::new(Scheme::new(2, 1).unwrap(), 512).unwrap();
        let mut codec = EcCodec::new(layout).unwrap();
        let mut parity = vec![vec![0u8; 512]];
        assert_eq!(
            codec.encode(&[], &mut parity),
            Err(CodecError::StripeLength {
                len: 0,
                stripe_bytes: 1024
            })
        );
        assert_eq!(
            codec.encode(&[0; 1025], &mut parity),
            Err(CodecError::StripeLength {
                len: 1025,
                stripe_bytes: 1024
            })
        );
        let stripe = vec![3u8; 700];
        let shards = all_shards(&mut codec, &stripe);
        assert_eq!(
            shards.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![512, 188, 512]
        );
        // A data shard stored padded (or cut short) is refused, not decoded into wrong bytes.
        let mut long = shards[1].clone();
        long.push(0);
        let held = [None, Some(&long), Some(&shards[2])];
        let mut out = vec![0; 700];
        assert_eq!(
            codec.decode(&held, &mut out),
            Err(CodecError::ShardLength {
                shard: 1,
                expected: 188,
                found: 189
            })
        );
        let none: [Option<&[u8]>; 3] = [None, None, None];
        assert_eq!(
            codec.decode(&none, &mut out),
            Err(CodecError::TooFewShards {
                present: 0,
                needed: 2
            })
        );
    }

    #[test]
    fn plain_and_striped_without_parity() {
        let layout = StripeLayout::new(Scheme::new(3, 0).unwrap(), 512).unwrap();
        let mut codec = EcCodec::new(layout).unwrap();
        let stripe = vec![9u8; 1200];
        let shards = all_shards(&mut codec, &stripe);
        assert_eq!(shards.len(), 3);
        let mut out = vec![0; 1200];
        let held: Vec<Option<&Vec<u8>>> = shards.iter().map(Some).collect();
        assert_eq!(codec.decode(&held, &mut out), Ok(ShardSet::EMPTY));
        assert_eq!(out, stripe);
        let held = [Some(&shards[0]), None, Some(&shards[2])];
        assert_eq!(
            codec.decode(&held, &mut out),
            Err(CodecError::TooFewShards {
                present: 2,
                needed: 3
            })
        );
    }
}
