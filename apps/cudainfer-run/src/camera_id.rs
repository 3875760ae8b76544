//! Camera ids and shards. A camera's id is given in the config, or derived
//! from its URI without credentials, so that it keeps its id across restarts and edits
//! of the camera list (metrics series, JSON `source`, recordings), and so
//! that instances sharing one list agree on which instance runs it: the
//! shard `I/N` runs the cameras whose id hashes to `I` modulo `N`.

use std::fmt;
use std::str::FromStr;

/// Longest id: a Prometheus label value and a file name prefix.
pub const MAX_LEN: usize = 64;

/// Instances a list can be shared among; more would leave most empty.
pub const MAX_SHARDS: u32 = 1024;

/// An id is 1 to 64 of `a-z 0-9 - _`, starting with a letter or a digit:
/// safe in URLs, label values, log fields and file names as it is.
pub fn is_valid(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// 64-bit FNV-1a: small, fixed for good (ids and shards must not change
/// with a library's version), and spread well enough for a few thousand
/// short strings.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The id of a camera that was given none: `cam-` and 8 hex digits of its
/// URI without user information (`CameraUri::identity`), so that neither a
/// password nor its change is part of it.
pub fn derived(identity: &str) -> String {
    format!("cam-{:08x}", fnv1a(identity.as_bytes()) >> 32)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("camera id '{0}' is not valid: use 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or a digit")]
    Invalid(String),
    #[error("camera id '{0}' is given to two cameras: ids must be unique")]
    Duplicate(String),
}

/// The ids of a camera list, in its order: the given ones (checked), and
/// for the others the derived id, with `-2`, `-3`… for the second and later
/// cameras of the same redacted URI (or a derived id taken by a given one).
/// `cameras` is `(given id, URI identity)`.
pub fn assign(cameras: &[(Option<&str>, String)]) -> Result<Vec<String>, IdError> {
    let mut taken = std::collections::HashSet::new();
    for given in cameras.iter().filter_map(|(g, _)| *g) {
        if !is_valid(given) {
            return Err(IdError::Invalid(given.to_string()));
        }
        if !taken.insert(given.to_string()) {
            return Err(IdError::Duplicate(given.to_string()));
        }
    }
    let mut ids = Vec::with_capacity(cameras.len());
    for (given, uri) in cameras {
        match given {
            Some(id) => ids.push(id.to_string()),
            None => {
                let id = first_free(&derived(uri), |id| taken.contains(id));
                taken.insert(id.clone());
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// `base`, or `base-2`, `base-3`… : the first that `taken` does not hold.
pub fn first_free(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !taken(id))
        .expect("an unbounded range has a free id")
}

/// One instance's share of a camera list: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this shard runs the camera of this id.
    pub fn runs(&self, id: &str) -> bool {
        fnv1a(id.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Shard, Self::Err> {
        const HOW: &str = "give I/N: this instance's number I (from 0) of N instances, e.g. 0/3";
        let (i, n) = s.trim().split_once('/').ok_or(HOW)?;
        let number = |t: &str| {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u32>().ok())
                .flatten()
        };
        let (index, count) = (number(i).ok_or(HOW)?, number(n).ok_or(HOW)?);
        if count == 0 || count > MAX_SHARDS {
            return Err("N must be 1 to 1024");
        }
        if index >= count {
            return Err("I must be less than N (instances count from 0)");
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_fixed_and_valid() {
        // Fixed values: an id must not change between versions.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let id = derived("rtsp://10.0.0.5/stream1");
        assert!(is_valid(&id), "{id}");
        assert_eq!(id.len(), 12);
        assert_eq!(id, derived("rtsp://10.0.0.5/stream1"));
        assert_ne!(id, derived("rtsp://10.0.0.6/stream1"));
    }

    #[test]
    fn ids_are_checked() {
        for good in ["gate-north", "cam-1", "a", "0_b", &"x".repeat(64)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Gate",
            "a b",
            "a/b",
            "a.b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn repeats_and_given_ids() {
        let uri = "file:///v/a.mkv".to_string();
        let base = derived(&uri);
        let ids = assign(&[
            (None, uri.clone()),
            (Some("door"), "rtsp://h/x".into()),
            (None, uri.clone()),
            (None, uri.clone()),
        ])
        .unwrap();
        assert_eq!(
            ids,
            [
                base.clone(),
                "door".into(),
                format!("{base}-2"),
                format!("{base}-3")
            ]
        );
        // A given id that a derived one would take pushes the derived one on.
        let ids = assign(&[
            (None, uri.clone()),
            (Some(base.as_str()), "rtsp://h/y".into()),
        ])
        .unwrap();
        assert_eq!(ids, [format!("{base}-2"), base.clone()]);
        assert_eq!(
            assign(&[(Some("x"), uri.clone()), (Some("x"), uri.clone())]),
            Err(IdError::Duplicate("x".into()))
        );
        assert_eq!(
            assign(&[(Some("Bad"), uri)]),
            Err(IdError::Invalid("Bad".into()))
        );
    }

    #[test]
    fn shards_split_a_list_exactly() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        for bad in [
            "3/3", "1/0", "1", "/3", "a/3", "-1/3", "1/3/4", "1/2000", "+1/3",
        ] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let ids: Vec<String> = (0..300)
            .map(|n| derived(&format!("rtsp://h/{n}")))
            .collect();
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        let mut sizes = [0; 3];
        for id in &ids {
            let owners: Vec<_> = shards.iter().filter(|s| s.runs(id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0].index as usize] += 1;
        }
        // Spread: each of 3 shards gets a fair part of 300 cameras.
        assert!(sizes.iter().all(|&n| (70..=130).contains(&n)), "{sizes:?}");
        assert!(Shard { index: 0, count: 1 }.runs("anything"));
    }
}
