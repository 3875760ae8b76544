//! The `location` property: where the JSON lines go.

use std::fmt;
use std::path::PathBuf;

/// A parsed `location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The process's standard output (`-` or `stdout`).
    Stdout,
    /// A file, created or truncated at start.
    File(PathBuf),
    /// An MQTT broker and topic (`mqtt://` or, over TLS, `mqtts://`).
    Mqtt(MqttTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub topic: String,
}

impl fmt::Display for MqttTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.topic)
    }
}

/// Why a `location` was refused. The text never repeats a URL's user
/// information, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationError {
    Empty,
    UnknownScheme(String),
    Credentials,
    NoHost,
    BadPort(String),
    NoTopic,
    Wildcard(String),
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMS: &str =
            "a file path, '-' or 'stdout', mqtt://host:port/topic or mqtts://host:port/topic";
        match self {
            LocationError::Empty => write!(f, "location is empty: set it to {FORMS}"),
            LocationError::UnknownScheme(s) => {
                write!(f, "location scheme '{s}://' is not supported: use {FORMS}")
            }
            LocationError::Credentials => write!(
                f,
                "location must not hold a user name or password (locations are logged): \
                 put them in the file named by credentials-file, or in CUDAINFER_MQTT_USERNAME \
                 and CUDAINFER_MQTT_PASSWORD"
            ),
            LocationError::NoHost => {
                write!(f, "location has no broker host: use mqtt://host:port/topic")
            }
            LocationError::BadPort(p) => write!(
                f,
                "location port '{p}' is not a port number (1-65535): use mqtt://host:port/topic"
            ),
            LocationError::NoTopic => write!(
                f,
                "location has no topic: use mqtt://host:port/topic (for example mqtt://localhost:1883/cudainfer/results)"
            ),
            LocationError::Wildcard(t) => write!(
                f,
                "location topic '{t}' holds a wildcard (+ or #), which MQTT allows only in subscriptions: \
                 publish to a plain topic"
            ),
        }
    }
}

impl std::error::Error for LocationError {}

impl std::str::FromStr for Location {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        if s == "-" || s == "stdout" {
            return Ok(Location::Stdout);
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Location::File(PathBuf::from(s)));
        };
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            "file" => return Ok(Location::File(PathBuf::from(rest))),
            _ => return Err(LocationError::UnknownScheme(scheme.to_string())),
        };
        let (authority, topic) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(LocationError::Credentials);
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal is bracketed: [::1]:1883.
            Some((h, p)) if !p.contains(']') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| LocationError::BadPort(p.to_string()))?;
                (h, port)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(LocationError::NoHost);
        }
        if topic.is_empty() {
            return Err(LocationError::NoTopic);
        }
        if topic.contains(['+', '#']) {
            return Err(LocationError::Wildcard(topic.to_string()));
        }
        Ok(Location::Mqtt(MqttTarget {
            tls,
            host: host.to_string(),
            port,
            topic: topic.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt(s: &str) -> MqttTarget {
        match s.parse::<Location>().unwrap() {
            Location::Mqtt(t) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn forms() {
        assert_eq!("-".parse(), Ok(Location::Stdout));
        assert_eq!("stdout".parse(), Ok(Location::Stdout));
        assert_eq!(
            "/tmp/r.jsonl".parse(),
            Ok(Location::File("/tmp/r.jsonl".into()))
        );
        assert_eq!(
            "file:///tmp/r.jsonl".parse(),
            Ok(Location::File("/tmp/r.jsonl".into()))
        );
        let t = mqtt("mqtt://127.0.0.1:1884/cams/a/results");
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.topic.as_str()),
            (false, "127.0.0.1", 1884, "cams/a/results")
        );
        let t = mqtt("mqtts://broker.example/r");
        assert_eq!((t.tls, t.port), (true, 8883));
        assert_eq!(mqtt("mqtt://h/r").port, 1883);
        let t = mqtt("mqtt://[::1]:1999/r");
        assert_eq!((t.host.as_str(), t.port), ("::1", 1999));
        assert_eq!(t.to_string(), "mqtt://::1:1999/r");
    }

    #[test]
    fn refusals() {
        let err = |s: &str| s.parse::<Location>().unwrap_err();
        assert_eq!(err(""), LocationError::Empty);
        assert_eq!(
            err("http://x/y"),
            LocationError::UnknownScheme("http".into())
        );
        assert_eq!(err("mqtt://u:secret@h:1883/t"), LocationError::Credentials);
        assert!(!err("mqtt://u:secret@h:1883/t")
            .to_string()
            .contains("secret"));
        assert_eq!(err("mqtt://h:1883"), LocationError::NoTopic);
        assert_eq!(err("mqtt://h:1883/"), LocationError::NoTopic);
        assert_eq!(err("mqtt://:1883/t"), LocationError::NoHost);
        assert_eq!(
            err("mqtt://h:99999/t"),
            LocationError::BadPort("99999".into())
        );
        assert_eq!(
            err("mqtt://h:1883/a/#"),
            LocationError::Wildcard("a/#".into())
        );
    }
}
