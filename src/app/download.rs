//! What the page's downloads need to decide without a browser: when a copy in the browser's cache may stand
//! for a file on the server, and how a download's progress reads in the status line. The fetching itself
//! (Cache API, streamed bodies) is in `fetch.rs`, built for wasm32 only.

/// What identifies one version of a file on a server, from its response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
    /// `Content-Length`.
    pub length: Option<u64>,
}

impl Version {
    /// Whether the server says anything that tells versions apart (an ETag, or a modification time).
    pub fn is_known(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// Whether a cached copy of version `self` may stand for the file the server now has at `current`:
    /// the same ETag, or, where either lacks one, the same modification time and length. Never for a file
    /// whose version the server does not tell.
    pub fn matches(&self, current: &Version) -> bool {
        match (&self.etag, &current.etag) {
            (Some(a), Some(b)) => a == b && self.length == current.length,
            _ => {
                current.last_modified.is_some()
                    && self.last_modified == current.last_modified
                    && self.length == current.length
            }
        }
    }
}

/// The status line during a download: the file, the megabytes so far (and of how many, when the server
/// said), and whether it comes from the browser's cache.
pub fn progress_text(file: &str, loaded: u64, total: Option<u64>, cached: bool) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let amount = match total {
        Some(t) => format!("{:.1} of {:.1} MB", mb(loaded), mb(t)),
        None => format!("{:.1} MB", mb(loaded)),
    };
    let how = if cached { "Loading from the browser's cache" } else { "Fetching" };
    format!("{how} {file}: {amount}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(etag: Option<&str>, modified: Option<&str>, length: Option<u64>) -> Version {
        Version { etag: etag.map(String::from), last_modified: modified.map(String::from), length }
    }

    #[test]
    fn a_cached_copy_stands_only_for_the_same_version() {
        let day = Some("Fri, 04 Dec 2026 10:00:00 GMT");
        assert!(v(Some("\"a\""), None, Some(5)).matches(&v(Some("\"a\""), None, Some(5))));
        assert!(!v(Some("\"a\""), day, Some(5)).matches(&v(Some("\"b\""), day, Some(5))), "a new ETag");
        assert!(v(None, day, Some(5)).matches(&v(None, day, Some(5))));
        assert!(v(Some("\"a\""), day, Some(5)).matches(&v(None, day, Some(5))), "no ETag now: the date decides");
        assert!(!v(None, day, Some(5)).matches(&v(None, Some("Sat, 05 Dec 2026 10:00:00 GMT"), Some(5))));
        assert!(!v(None, day, Some(5)).matches(&v(None, day, Some(6))), "another length");
        assert!(!v(None, None, Some(5)).matches(&v(None, None, Some(5))), "nothing tells versions apart");
        assert!(!Version::default().is_known() && v(None, day, None).is_known());
    }

    #[test]
    fn progress_reads_in_megabytes() {
        assert_eq!(
            progress_text("model/unet/w.safetensors", 3_200_000, Some(11_100_000), false),
            "Fetching model/unet/w.safetensors: 3.2 of 11.1 MB"
        );
        assert_eq!(progress_text("a", 0, None, true), "Loading from the browser's cache a: 0.0 MB");
    }
}
