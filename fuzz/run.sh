#!/usr/bin/env bash
# Fuzzes the shard store's on-disk decoders, the wire protocol's frame decoder and the overlay's
# datagram decoder with cargo fuzz (libFuzzer + AddressSanitizer).
#
#   fuzz/run.sh [SECONDS]     every target for SECONDS each (default 30)
#   FUZZ_TARGETS="superblock checkpoint" fuzz/run.sh 60     only those targets
#   FUZZ_TOOLCHAIN=stable fuzz/run.sh                      that toolchain, with RUSTC_BOOTSTRAP=1
#
# Installs cargo-fuzz from crates.io if it is missing. cargo fuzz needs nightly-only -Z flags:
# it uses an installed nightly toolchain when there is one, and otherwise the default (stable)
# toolchain with RUSTC_BOOTSTRAP=1, which works for these flags; no toolchain is downloaded.
# Seeds (valid encodings) are written into fuzz/corpus/<target>/ first; what the fuzzer learns
# stays there between runs (gitignored). A crash leaves its input in fuzz/artifacts/<target>/;
# logs go to fuzz/target/logs/. Exits non-zero if any target crashes or fails to build.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$PWD
cd ..

secs=${1:-30}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: fuzz/run.sh [SECONDS]" >&2
  exit 2
fi
targets=${FUZZ_TARGETS:-record_header superblock segment_header checkpoint segment_scan proto_decoder overlay_decoder shard_header meta_record}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  # Forced, e.g. FUZZ_TOOLCHAIN=stable to check the fallback below.
  toolchain=(+"$FUZZ_TOOLCHAIN")
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: $(rustup run "$FUZZ_TOOLCHAIN" rustc --version) with RUSTC_BOOTSTRAP=1"
elif command -v rustup >/dev/null && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  echo "fuzz: $(rustup run nightly rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: no nightly toolchain; $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
echo "fuzz: $(cargo fuzz --version)"

echo "fuzz: writing seed corpus"
cargo "${toolchain[@]}" run --quiet --release --manifest-path "$fuzz_dir/Cargo.toml" \
  --example gen_corpus -- "$fuzz_dir/corpus"

echo "fuzz: building targets"
# shellcheck disable=SC2086
for target in $targets; do
  cargo "${toolchain[@]}" fuzz build "$target"
done

mkdir -p "$fuzz_dir/target/logs"
failed=()
summary=()
# shellcheck disable=SC2086
for target in $targets; do
  log=$fuzz_dir/target/logs/$target.log
  # A target without seeds in gen_corpus (proto_decoder forges its own) starts from nothing.
  mkdir -p "$fuzz_dir/corpus/$target"
  echo "fuzz: $target for ${secs}s (log $log)"
  status=0
  cargo "${toolchain[@]}" fuzz run "$target" "$fuzz_dir/corpus/$target" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || status=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  if [ "$status" -eq 0 ]; then
    summary+=("$target: ok  ${done_line:-(no DONE line)}")
  else
    failed+=("$target")
    artifact=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //' || true)
    summary+=("$target: FAILED (exit $status)${artifact:+, input $artifact}")
    grep -E -m 3 "panicked at|^SUMMARY|ERROR: (libFuzzer|AddressSanitizer)" "$log" | sed 's/^/    /' || true
    tail -n 40 "$log" | sed 's/^/    /'
  fi
done

echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
  echo "fuzz: reproduce with: ${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }cargo ${toolchain[*]:+${toolchain[*]} }fuzz run TARGET fuzz/artifacts/TARGET/<file>"
  exit 1
fi
echo "fuzz: all targets ran ${secs}s without a crash"
