//! A camera's address: its scheme checked, its credentials split off so that
//! nothing but the source element ever sees them, and a redacted form for
//! every place a person or a program reads (logs, API, metrics, JSON).

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a camera URI is refused. No variant echoes text that may hold
/// credentials: only parsed, credential-free parts are shown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
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
    #[error(
        "the address's port is not a number from 1 to 65535; a user name or password holding \
         '/', '?', '#' or '@' must be percent-encoded (%2F, %3F, %23, %40)"
    )]
    Port,
    #[error(
        "an '@' after the host: percent-encode it as %40 (in a password too, with any '/' in it as %2F)"
    )]
    AtAfterHost,
    #[error("file camera '{0}': {1}")]
    File(String, String),
    #[error("only local files (file:///path) are cameras: a file URI names no host or user")]
    FileHost,
    #[error("file camera '{0}' is outside the allowed directories: start the service with --allow-dir for its folder")]
    NotAllowed(String),
    #[error(
        "file camera '{0}' is not a regular file (a FIFO, device or directory): give a video file"
    )]
    NotRegular(String),
    #[error("the URI holds a control character or space")]
    Control,
    #[error("the URI is longer than {MAX_URI_LEN} characters")]
    TooLong,
}

/// Longest camera URI taken: far beyond any real one, and it is stored
/// and shown for every camera.
pub const MAX_URI_LEN: usize = 2048;

/// Query keys whose values are credentials (Dahua's, Hikvision's and
/// others' `?user=…&password=…`), compared without case.
const SECRET_QUERY_KEYS: &[&str] = &[
    "user",
    "username",
    "usr",
    "login",
    "password",
    "pass",
    "passwd",
    "pwd",
    "token",
    "auth",
    "key",
    "apikey",
    "api_key",
    "access_token",
    "secret",
    "sig",
    "signature",
];

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
    /// `bare` with the values of credential query keys replaced.
    shown: String,
    user: Option<String>,
    password: Option<String>,
    /// Values of credential query keys, as written and decoded.
    query_secrets: Vec<String>,
}

impl fmt::Debug for CameraUri {
    // Never the credentials, not even in a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CameraUri({})", self.redacted())
    }
}

/// RFC 3986's scheme: a letter, then letters, digits, '+', '-', '.'.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && s.len() <= 32
}

/// Splits `host[:port]` (the host possibly a bracketed IPv6 address) and
/// checks the port.
fn check_host_port(host_port: &str) -> Result<(), UriError> {
    let after_host = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(i) => &host_port[i + 1..],
            None => return Err(UriError::NotAUri),
        }
    } else {
        match host_port.find(':') {
            Some(i) => &host_port[i..],
            None => "",
        }
    };
    if after_host.is_empty() {
        return Ok(());
    }
    let port = after_host.strip_prefix(':').ok_or(UriError::Port)?;
    // An empty port is allowed by RFC 3986 and means the default.
    if port.is_empty()
        || (port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)))
    {
        Ok(())
    } else {
        Err(UriError::Port)
    }
}

impl CameraUri {
    /// Parses `uri` as RFC 3986 does: the authority ends at the first '/',
    /// '?' or '#', its user information at its last '@'. What is shown
    /// afterwards is rebuilt from these parts, so redaction does not depend
    /// on spotting credentials in text.
    pub fn parse(uri: &str) -> Result<CameraUri, UriError> {
        if uri.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UriError::Control);
        }
        if uri.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        let (scheme, rest) = uri.split_once("://").ok_or(UriError::NotAUri)?;
        if !is_scheme(scheme) {
            return Err(UriError::NotAUri);
        }
        let scheme = scheme.to_ascii_lowercase();
        let kind = match scheme.as_str() {
            "rtsp" | "rtsps" | "rtspt" => SourceKind::Rtsp,
            "http" | "https" => SourceKind::Http,
            "file" => SourceKind::File,
            _ => return Err(UriError::Scheme(scheme)),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
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
        if kind != SourceKind::File {
            check_host_port(host)?;
            // A password with an unencoded '/' puts its end, and the '@',
            // in the path: refused rather than guessed at.
            if path.contains('@') {
                return Err(UriError::AtAfterHost);
            }
        }
        let bare = format!("{scheme}://{host}{path}");
        if kind != SourceKind::File && host.is_empty() {
            return Err(UriError::NoHost(bare));
        }
        if kind == SourceKind::File
            && (userinfo.is_some() || !(host.is_empty() || host == "localhost"))
        {
            // Not quoted: what stands before the host may be credentials.
            return Err(UriError::FileHost);
        }
        let (shown, mut query_secrets) = if kind == SourceKind::File {
            (bare.clone(), Vec::new())
        } else {
            mask_query(&bare)
        };
        // The credentials as written too (percent-encoded as the user wrote
        // them, which need not be how a message would encode them).
        if let Some(info) = userinfo {
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            query_secrets.extend(
                [u, p]
                    .iter()
                    .filter(|v| v.contains('%'))
                    .map(|v| v.to_string()),
            );
        }
        Ok(CameraUri {
            kind,
            bare,
            shown,
            user: user.filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()),
            query_secrets,
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

    /// The URI without user information and with secrets in its query
    /// redacted: a camera's id derives from it, so that a changed password
    /// keeps the id.
    pub fn identity(&self) -> &str {
        &self.shown
    }

    /// What is shown anywhere: the URI with its user information replaced.
    pub fn redacted(&self) -> String {
        if self.user.is_none() && self.password.is_none() {
            return self.shown.clone();
        }
        let (scheme, rest) = self.shown.split_once("://").expect("made with ://");
        format!("{scheme}://<redacted>@{rest}")
    }

    /// The secrets a text about this camera must not show.
    pub fn secrets(&self) -> Vec<&str> {
        self.user
            .iter()
            .chain(self.password.iter())
            .chain(self.query_secrets.iter())
            .map(String::as_str)
            .collect()
    }

    /// The local path of a file camera as written (percent-decoded, not
    /// resolved).
    fn written_path(&self) -> PathBuf {
        let raw = self.bare.strip_prefix("file://").unwrap_or(&self.bare);
        let raw = raw.strip_prefix("localhost").unwrap_or(raw);
        PathBuf::from(percent_decode(raw))
    }

    /// The local path of a file camera, made absolute with symbolic links and
    /// `..` resolved; an error when it does not exist or is not a regular
    /// file (a FIFO would block its reader, and with it the camera's stop,
    /// forever).
    pub fn file_path(&self) -> Result<PathBuf, UriError> {
        let path = std::fs::canonicalize(self.written_path())
            .map_err(|e| UriError::File(self.bare.clone(), e.to_string()))?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(UriError::NotRegular(self.bare.clone())),
            Err(e) => Err(UriError::File(self.bare.clone(), e.to_string())),
        }
    }

    /// A file camera is allowed when its resolved path lies under one of
    /// `dirs` (themselves resolved); other kinds always are. A path that
    /// does not resolve is judged by its written form with `..` taken
    /// lexically, so that a missing file outside the directories gets the
    /// same refusal as an existing one (no probing for files).
    pub fn check_allowed(&self, dirs: &[PathBuf]) -> Result<(), UriError> {
        if self.kind != SourceKind::File {
            return Ok(());
        }
        let resolved_dirs: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        let inside = |p: &Path| resolved_dirs.iter().any(|d| p.starts_with(d));
        match std::fs::canonicalize(self.written_path()) {
            Ok(path) if inside(&path) => {
                self.file_path()?;
                Ok(())
            }
            Ok(_) => Err(UriError::NotAllowed(self.bare.clone())),
            Err(_) if inside(&lexical(&self.written_path())) => self.file_path().map(|_| ()),
            Err(_) => Err(UriError::NotAllowed(self.bare.clone())),
        }
    }

    /// What the source element reads at each (re)start. A file is opened
    /// here, once, without blocking (a FIFO does not hold the open), and
    /// checked on what was opened: a regular file, and, with `allowed`,
    /// inside those directories by the path the kernel resolved. The
    /// source then reads that open file through `/proc/self/fd`, so a
    /// file, link or directory swapped in after the check is never what
    /// plays. The returned [`Source`] keeps the file open while it lives.
    pub fn open_source(&self, allowed: Option<&[PathBuf]>) -> Result<Source, UriError> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        if self.kind != SourceKind::File {
            return Ok(Source {
                uri: self.bare.clone(),
                file: None,
            });
        }
        if let Some(dirs) = allowed {
            // The same refusal for missing and existing files outside.
            self.check_allowed(dirs)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.written_path())
            .map_err(|e| UriError::File(self.bare.clone(), e.to_string()))?;
        let meta = file
            .metadata()
            .map_err(|e| UriError::File(self.bare.clone(), e.to_string()))?;
        if !meta.is_file() {
            return Err(UriError::NotRegular(self.bare.clone()));
        }
        let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Some(dirs) = allowed {
            let opened = std::fs::read_link(&fd_path)
                .map_err(|e| UriError::File(self.bare.clone(), e.to_string()))?;
            let inside = dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d).ok())
                .any(|d| opened.starts_with(d));
            if !inside {
                return Err(UriError::NotAllowed(self.bare.clone()));
            }
        }
        Ok(Source {
            uri: format!("file://{fd_path}"),
            file: Some(file),
        })
    }
}

/// What a camera's source element reads, and the file held open for it.
#[derive(Debug)]
pub struct Source {
    pub uri: String,
    file: Option<std::fs::File>,
}

impl Source {
    /// Whether a file is held open for the source.
    pub fn is_open_file(&self) -> bool {
        self.file.is_some()
    }
}

/// `bare` with the values of credential query keys replaced by
/// `<redacted>`, and those values (as written and decoded).
fn mask_query(bare: &str) -> (String, Vec<String>) {
    let Some((head, rest)) = bare.split_once('?') else {
        return (bare.to_string(), Vec::new());
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let mut secrets = Vec::new();
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value))
                if !value.is_empty()
                    && SECRET_QUERY_KEYS
                        .iter()
                        .any(|k| percent_decode(key).eq_ignore_ascii_case(k)) =>
            {
                secrets.push(value.to_string());
                let decoded = percent_decode(value);
                if decoded != value {
                    secrets.push(decoded);
                }
                format!("{key}=<redacted>")
            }
            _ => pair.to_string(),
        })
        .collect();
    let mut shown = format!("{head}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        shown.push('#');
        shown.push_str(f);
    }
    (shown, secrets)
}

/// `path` with `.` and `..` taken away lexically (no file system access).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `text` with every secret (and its percent-encoded form) replaced: for
/// messages that come from elsewhere (GStreamer errors) and may quote a URI.
pub fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 2) {
        out = out.replace(secret, "<redacted>");
        let encoded = percent_encode(secret.as_bytes(), b"");
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

/// Every byte outside RFC 3986's unreserved set and `keep` as `%XX`.
fn percent_encode(s: &[u8], keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
            Err(UriError::FileHost)
        ));
        let err = CameraUri::parse("file://user:secret/pass@host/x").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let uri = CameraUri::parse("rtsp://u%73er:p%61ss-word@host/x").unwrap();
        let text = redact_text(
            "could not open rtsp://u%73er'x:p%61ss-word@host/x",
            &uri.secrets(),
        );
        assert!(!text.contains("p%61ss-word"), "{text}");
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

    #[test]
    fn userinfo_is_parsed_not_guessed() {
        // A '/' in the password ends the authority: the port is then no
        // number, and the error quotes nothing.
        let err = CameraUri::parse("rtsp://user:secret/pass@127.0.0.1:18554/x").unwrap_err();
        assert_eq!(err, UriError::Port);
        assert!(!err.to_string().contains("secret"), "{err}");
        // Without a ':' the '@' lands in the path.
        let err = CameraUri::parse("rtsp://user/secretpass@127.0.0.1/x").unwrap_err();
        assert_eq!(err, UriError::AtAfterHost);
        assert!(!err.to_string().contains("secretpass"), "{err}");
        // Encoded, it is a password like any other.
        let uri = CameraUri::parse("rtsp://user:secret%2Fpass@127.0.0.1:18554/x").unwrap();
        assert_eq!(uri.password(), Some("secret/pass"));
        assert_eq!(uri.redacted(), "rtsp://<redacted>@127.0.0.1:18554/x");
        assert!(CameraUri::parse("rtsp://[::1]:554/x").is_ok());
        assert!(CameraUri::parse("rtsp://h:/x").is_ok());
        assert_eq!(CameraUri::parse("rtsp://h:70000/x"), Err(UriError::Port));
    }

    #[test]
    fn scheme_errors_quote_only_schemes() {
        let err = CameraUri::parse("admin:secretpass@cam://x").unwrap_err();
        assert_eq!(err, UriError::NotAUri);
        let err = CameraUri::parse("rtmp://admin:secretpass@h/x").unwrap_err();
        assert_eq!(err, UriError::Scheme("rtmp".into()));
        assert!(!err.to_string().contains("secretpass"));
    }

    #[test]
    fn missing_and_existing_files_outside_are_refused_alike() {
        let dir = std::env::temp_dir().join(format!("cudainfer-run-oracle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("secret.mp4"), b"x").unwrap();
        let allowed = [dir.join("in")];
        for name in ["secret.mp4", "nonexistent.mp4", "in/../nonexistent.mp4"] {
            let uri = CameraUri::parse(&format!("file://{}/{name}", dir.display())).unwrap();
            assert!(
                matches!(uri.check_allowed(&allowed), Err(UriError::NotAllowed(_))),
                "{name}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn special_files_and_swapped_files_are_refused() {
        let dir =
            std::env::temp_dir().join(format!("cudainfer-run-special-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        let allowed = [dir.join("in")];
        let fifo = dir.join("in/fifo.mp4");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let uri = CameraUri::parse(&format!("file://{}", fifo.display())).unwrap();
        assert!(matches!(
            uri.check_allowed(&allowed),
            Err(UriError::NotRegular(_))
        ));
        // Opened without blocking, refused on what was opened.
        assert!(matches!(
            uri.open_source(None),
            Err(UriError::NotRegular(_))
        ));
        let dir_uri = CameraUri::parse(&format!("file://{}/in", dir.display())).unwrap();
        assert!(matches!(
            dir_uri.open_source(None),
            Err(UriError::NotRegular(_))
        ));
        // Allowed when added; the source reads the file opened then, even
        // once its name points elsewhere.
        let clip = dir.join("in/a b.mp4");
        std::fs::write(&clip, b"inside").unwrap();
        std::fs::write(dir.join("outside.mp4"), b"outside").unwrap();
        let uri = CameraUri::parse(&format!("file://{}/in/a%20b.mp4", dir.display())).unwrap();
        let source = uri.open_source(Some(&allowed)).unwrap();
        assert!(
            source.uri.starts_with("file:///proc/self/fd/"),
            "{}",
            source.uri
        );
        assert!(source.is_open_file());
        let through = source.uri.strip_prefix("file://").unwrap().to_string();
        std::fs::remove_file(&clip).unwrap();
        std::os::unix::fs::symlink(dir.join("outside.mp4"), &clip).unwrap();
        assert_eq!(std::fs::read(&through).unwrap(), b"inside");
        drop(source);
        // The next start opens the link and refuses it.
        assert!(matches!(
            uri.open_source(Some(&allowed)),
            Err(UriError::NotAllowed(_))
        ));
        // A trusted camera (the command line) may be a link.
        let source = uri.open_source(None).unwrap();
        let through = source.uri.strip_prefix("file://").unwrap();
        assert_eq!(std::fs::read(through).unwrap(), b"outside");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn credentials_in_the_query_are_redacted() {
        let uri = CameraUri::parse(
            "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&Password=s%2Fecret9",
        )
        .unwrap();
        assert_eq!(
            uri.redacted(),
            "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=<redacted>&Password=<redacted>"
        );
        // The source gets the query as it is.
        assert!(uri.bare().ends_with("&user=admin&Password=s%2Fecret9"));
        assert!(uri.secrets().contains(&"s/ecret9"));
        let text = redact_text(
            "cannot open ...&Password=s%2Fecret9 (s/ecret9)",
            &uri.secrets(),
        );
        assert!(!text.contains("ecret9"), "{text}");
        let long = format!("rtsp://h/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(CameraUri::parse(&long), Err(UriError::TooLong));
    }
}
