//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): the lookup table of a frontend
//! that the programs index by a flow's hash (`bpfk_ebpf_common::flow_hash`). Every backend
//! fills the table in the order of its own permutation of the slots, so a backend that
//! comes or goes changes about 1/N of the entries and the other flows keep their backend.
//! The permutations hash the backend's address and port with a fixed function, so every
//! node builds the same table for the same backends.

pub use bpfk_ebpf_common::flow_hash;

use crate::{map_mirror::BackendAddr, Error, Result};

/// Default table size (a prime well over 100 times the backends of a usual service).
pub const DEFAULT_TABLE_SIZE: u32 = 4093;
/// The largest table size accepted (tables are written entry by entry).
pub const MAX_TABLE_SIZE: u32 = 131_071;

/// Checks a table size: a prime (the permutations must cover every slot) between 3 and
/// [`MAX_TABLE_SIZE`].
pub fn validate_table_size(size: u32) -> Result<()> {
    if !(3..=MAX_TABLE_SIZE).contains(&size) {
        return Err(Error::invalid(
            "maglev table size",
            format!("{size} is outside 3..={MAX_TABLE_SIZE}"),
        ));
    }
    if !is_prime(size) {
        return Err(Error::invalid(
            "maglev table size",
            format!("{size} is not a prime (Maglev needs one, e.g. 1021, 4093, 16381, 65521)"),
        ));
    }
    Ok(())
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// FNV-1a (64-bit) of `bytes` after `seed`: stable across builds and machines.
fn fnv1a(seed: u8, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(&seed).chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The table of `backends` with `size` entries (a prime, see [`validate_table_size`]):
/// entry `i` is the index in `backends` that slot `i` serves. Empty without backends.
/// The backends' order does not matter.
pub fn table(backends: &[BackendAddr], size: u32) -> Vec<usize> {
    if backends.is_empty() {
        return Vec::new();
    }
    let m = u64::from(size);
    // (offset, skip) of each backend's permutation: slot j = (offset + j * skip) mod m.
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| {
            let mut name = b.addr.octets().to_vec();
            name.extend(b.port.to_be_bytes());
            name.push(b.proto.number());
            (fnv1a(1, &name) % m, fnv1a(2, &name) % (m - 1) + 1)
        })
        .collect();
    // The backends take turns in a fixed order (by address), whatever order they came in.
    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_by_key(|i| backends[*i]);
    let mut entries = vec![usize::MAX; size as usize];
    let mut next = vec![0u64; backends.len()];
    let mut filled = 0;
    while filled < entries.len() {
        for &i in &order {
            let (offset, skip) = perms[i];
            let slot = loop {
                let slot = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if entries[slot] == usize::MAX {
                    break slot;
                }
            };
            entries[slot] = i;
            filled += 1;
            if filled == entries.len() {
                break;
            }
        }
    }
    entries
}

/// How many of `flows` (hashes, as [`flow_hash`] gives them) reach another backend with
/// the tables of `after` than with those of `before` (both of `size` entries).
pub fn flows_moved(
    before: &[BackendAddr],
    after: &[BackendAddr],
    size: u32,
    flows: &[u32],
) -> usize {
    let (t0, t1) = (table(before, size), table(after, size));
    let at = |t: &[usize], all: &[BackendAddr], h: u32| {
        (!t.is_empty()).then(|| all[t[(h % size) as usize]])
    };
    flows
        .iter()
        .filter(|h| at(&t0, before, **h) != at(&t1, after, **h))
        .count()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::Protocol;

    fn backends(n: u8) -> Vec<BackendAddr> {
        (0..n)
            .map(|i| BackendAddr {
                addr: Ipv4Addr::new(10, 244, i / 4, 10 + i),
                port: 8080,
                proto: Protocol::Tcp,
            })
            .collect()
    }

    /// 10,000 client flows (address and port) to a NodePort, hashed as the programs do.
    fn flows() -> Vec<u32> {
        (0..10_000u32)
            .map(|i| {
                let client = Ipv4Addr::new(10, 250, (i / 250) as u8, (i % 250) as u8 + 1);
                let sport = 32768 + (i * 7919 % 28000) as u16;
                flow_hash(
                    u32::from_ne_bytes(client.octets()),
                    sport.to_be(),
                    30080u16.to_be(),
                    6,
                )
            })
            .collect()
    }

    /// Of 10,000 flows, the fraction whose backend changes when `gone` leaves.
    fn moved_when_one_goes(n: u8, gone: usize, size: u32) -> f64 {
        let before = backends(n);
        let mut after = before.clone();
        after.remove(gone);
        let flows = flows();
        flows_moved(&before, &after, size, &flows) as f64 / flows.len() as f64
    }

    #[test]
    fn one_backend_going_moves_at_most_one_nth_plus_five_percent() {
        for n in [2u8, 3, 4, 5, 8, 16, 32] {
            for gone in [0, usize::from(n) / 2, usize::from(n) - 1] {
                let moved = moved_when_one_goes(n, gone, DEFAULT_TABLE_SIZE);
                let bound = 1.0 / f64::from(n) + 0.05;
                assert!(
                    moved <= bound,
                    "N={n}, backend {gone} gone: {moved:.4} moved, over {bound:.4}"
                );
                // The removed backend's own flows must move: about 1/N.
                assert!(moved >= 0.5 / f64::from(n), "N={n}: only {moved:.4} moved");
            }
        }
    }

    #[test]
    fn every_backend_gets_a_fair_share_and_order_does_not_matter() {
        let all = backends(7);
        let t = table(&all, 1021);
        assert_eq!(t.len(), 1021);
        for i in 0..all.len() {
            let share = t.iter().filter(|e| **e == i).count();
            assert!((140..=152).contains(&share), "backend {i}: {share} of 1021");
        }
        let mut reversed = all.clone();
        reversed.reverse();
        let r = table(&reversed, 1021);
        for (a, b) in t.iter().zip(&r) {
            assert_eq!(all[*a], reversed[*b]);
        }
        assert!(table(&[], 1021).is_empty());
    }

    #[test]
    fn table_size_must_be_a_prime_in_range() {
        assert!(validate_table_size(4093).is_ok());
        assert!(validate_table_size(16381).is_ok());
        for bad in [0, 1, 4, 4096, 65535, MAX_TABLE_SIZE + 2] {
            let err = validate_table_size(bad).unwrap_err().to_string();
            assert!(err.contains("maglev table size"), "{bad}: {err}");
        }
        assert!(validate_table_size(4096)
            .unwrap_err()
            .to_string()
            .contains("not a prime"));
    }
}
