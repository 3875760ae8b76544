//! A camera's address: its scheme checked, its credentials split off so that
//! nothing but the source element ever sees them, and a redacted form for
//! every place a person or a program reads (logs, API, metrics, JSON).

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a camera URI is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    // The text is not echoed: it may hold credentials in a form not parsed.
    #[error(
        "not a URI: give rtsp://, rtsps://, http://, https:// or file:// followed by the address"
    )]
    NotAUri,
    #[error(
        "scheme '{0}' is not a camera source: use rtsp://, rtsps://, http://, https:// or file://"
    )]
    Scheme(String),
    #[error("'{0}' has no host")]
    NoHost(String),
    #[error("file camera '{0}': {1}")]
    File(String, String),
    #[error("file camera '{0}' is outside the allowed directories: start the service with --allow-dir for its folder")]
    NotAllowed(String),
    #[error("the URI holds a control character or space")]
    Control,
}

/// The kind of source, which decides what an end of stream means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// rtsp:// and rtsps://: live; an end of stream is a failure to retry.
    Rtsp,
    /// http:// and https://: a stream (MJPEG, HLS, …); an end is a failure.
    Http,
    /// file://: played once or looped.
    File,
}

/// A parsed camera URI.
#[derive(Clone, PartialEq, Eq)]
pub struct CameraUri {
    kind: SourceKind,
    /// The URI without user information: what the source element gets.
    bare: String,
    user: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for CameraUri {
    // Never the credentials, not even in a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CameraUri({})", self.redacted())
    }
}

impl CameraUri {
    pub fn parse(uri: &str) -> Result<CameraUri, UriError> {
        if uri.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UriError::Control);
        }
        let (scheme, rest) = uri.split_once("://").ok_or(UriError::NotAUri)?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "rtsp" | "rtsps" | "rtspt" => SourceKind::Rtsp,
            "http" | "https" => SourceKind::Http,
            "file" => SourceKind::File,
            other => return Err(UriError::Scheme(other.to_string())),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        // The last '@' ends the user information: a password may hold '@'.
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(info)), None),
            },
            None => (None, None),
        };
        let bare = format!("{}://{host}{path}", scheme.to_ascii_lowercase());
        if kind != SourceKind::File && host.is_empty() {
            return Err(UriError::NoHost(bare));
        }
        if kind == SourceKind::File && (user.is_some() || !(host.is_empty() || host == "localhost"))
        {
            return Err(UriError::File(
                bare,
                "only local files (file:///path) are cameras".into(),
            ));
        }
        Ok(CameraUri {
            kind,
            bare,
            user: user.filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()),
        })
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The URI without credentials, for the source element.
    pub fn bare(&self) -> &str {
        &self.bare
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// What is shown anywhere: the URI with its user information replaced.
    pub fn redacted(&self) -> String {
        if self.user.is_none() && self.password.is_none() {
            return self.bare.clone();
        }
        let (scheme, rest) = self.bare.split_once("://").expect("made with ://");
        format!("{scheme}://<redacted>@{rest}")
    }

    /// The secrets a text about this camera must not show.
    pub fn secrets(&self) -> Vec<&str> {
        self.user
            .iter()
            .chain(self.password.iter())
            .map(String::as_str)
            .collect()
    }

    /// The local path of a file camera, made absolute with symbolic links and
    /// `..` resolved; an error when it does not exist.
    pub fn file_path(&self) -> Result<PathBuf, UriError> {
        let raw = self.bare.strip_prefix("file://").unwrap_or(&self.bare);
        let raw = raw.strip_prefix("localhost").unwrap_or(raw);
        let path = PathBuf::from(percent_decode(raw));
        std::fs::canonicalize(&path).map_err(|e| UriError::File(self.bare.clone(), e.to_string()))
    }

    /// A file camera is allowed when its resolved path lies under one of
    /// `dirs` (themselves resolved); other kinds always are.
    pub fn check_allowed(&self, dirs: &[PathBuf]) -> Result<(), UriError> {
        if self.kind != SourceKind::File {
            return Ok(());
        }
        let path = self.file_path()?;
        let inside = |dir: &Path| {
            std::fs::canonicalize(dir)
                .map(|d| path.starts_with(d))
                .unwrap_or(false)
        };
        if dirs.iter().any(|d| inside(d)) {
            Ok(())
        } else {
            Err(UriError::NotAllowed(self.bare.clone()))
        }
    }
}

/// `text` with every secret (and its percent-encoded form) replaced: for
/// messages that come from elsewhere (GStreamer errors) and may quote a URI.
pub fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 2) {
        out = out.replace(secret, "<redacted>");
        let encoded = percent_encode(secret);
        if encoded != *secret {
            out = out.replace(&encoded, "<redacted>");
        }
    }
    // Any user information left in a URI in the text.
    redact_userinfo(&out)
}

/// Replaces `scheme://user:pass@` in free text by `scheme://<redacted>@`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_off_and_redacted() {
        let uri = CameraUri::parse("rtsp://admin:s3cr%40t@10.0.0.5:554/stream1").unwrap();
        assert_eq!(uri.kind(), SourceKind::Rtsp);
        assert_eq!(uri.bare(), "rtsp://10.0.0.5:554/stream1");
        assert_eq!(uri.user(), Some("admin"));
        assert_eq!(uri.password(), Some("s3cr@t"));
        assert_eq!(uri.redacted(), "rtsp://<redacted>@10.0.0.5:554/stream1");
        assert!(!format!("{uri:?}").contains("s3cr"));
    }

    #[test]
    fn text_is_redacted() {
        let text = "Could not open rtsp://admin:pw%21x@host/a (pw!x)";
        let out = redact_text(text, &["pw!x", "admin"]);
        assert!(!out.contains("pw"), "{out}");
        assert!(!out.contains("admin"), "{out}");
        assert!(out.contains("@host/a"), "{out}");
    }

    #[test]
    fn bad_uris_are_refused() {
        assert!(matches!(
            CameraUri::parse("ftp://x/y"),
            Err(UriError::Scheme(_))
        ));
        assert!(matches!(
            CameraUri::parse("/tmp/a.mp4"),
            Err(UriError::NotAUri)
        ));
        assert!(matches!(
            CameraUri::parse("rtsp:///a"),
            Err(UriError::NoHost(_))
        ));
        assert!(matches!(
            CameraUri::parse("file://host/etc/passwd"),
            Err(UriError::File(..))
        ));
        assert_eq!(CameraUri::parse("rtsp://a b"), Err(UriError::Control));
    }

    #[test]
    fn file_cameras_stay_in_allowed_directories() {
        let dir = std::env::temp_dir().join(format!("cudainfer-run-uri-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("in/a.mp4"), b"x").unwrap();
        std::fs::write(dir.join("b.mp4"), b"x").unwrap();
        let allowed = [dir.join("in")];
        let inside = CameraUri::parse(&format!("file://{}/in/a.mp4", dir.display())).unwrap();
        assert_eq!(inside.check_allowed(&allowed), Ok(()));
        // `..` does not climb out.
        let escape = CameraUri::parse(&format!("file://{}/in/../b.mp4", dir.display())).unwrap();
        assert!(matches!(
            escape.check_allowed(&allowed),
            Err(UriError::NotAllowed(_))
        ));
        let missing = CameraUri::parse(&format!("file://{}/in/none.mp4", dir.display())).unwrap();
        assert!(matches!(
            missing.check_allowed(&allowed),
            Err(UriError::File(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
