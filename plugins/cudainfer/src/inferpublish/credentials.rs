//! MQTT credentials: from the file named by `credentials-file`, else from
//! CUDAINFER_MQTT_USERNAME / CUDAINFER_MQTT_PASSWORD. Never in a location
//! and never in a log or an error text: Debug shows the user name only.

use std::fmt;
use std::path::{Path, PathBuf};

pub const USERNAME_ENV: &str = "CUDAINFER_MQTT_USERNAME";
pub const PASSWORD_ENV: &str = "CUDAINFER_MQTT_PASSWORD";
/// A credentials file is one short line; anything bigger is the wrong file.
const MAX_FILE: u64 = 64 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

#[derive(Debug)]
pub enum CredentialsError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    TooLarge(PathBuf),
    /// Says what is wrong with the file's form, never what it holds.
    Form(PathBuf),
    PasswordWithoutUser,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Read { path, source } => write!(
                f,
                "cannot read the credentials file '{}': {source}: set credentials-file to a readable file",
                path.display()
            ),
            CredentialsError::TooLarge(path) => write!(
                f,
                "the credentials file '{}' is larger than 64 KiB: it must hold one line user:password",
                path.display()
            ),
            CredentialsError::Form(path) => write!(
                f,
                "the credentials file '{}' must hold one line user:password (a non-empty user name, \
                 then a colon, then the password)",
                path.display()
            ),
            CredentialsError::PasswordWithoutUser => write!(
                f,
                "{PASSWORD_ENV} is set but {USERNAME_ENV} is not: set both, or use credentials-file"
            ),
        }
    }
}

impl std::error::Error for CredentialsError {}

/// The credentials to connect with, if any.
pub fn load(file: Option<&Path>) -> Result<Option<Credentials>, CredentialsError> {
    match file {
        Some(path) => from_file(path).map(Some),
        None => from_env(
            std::env::var(USERNAME_ENV).ok(),
            std::env::var(PASSWORD_ENV).ok(),
        ),
    }
}

fn from_file(path: &Path) -> Result<Credentials, CredentialsError> {
    let read = |source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_FILE {
        return Err(CredentialsError::TooLarge(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse_line(&text).ok_or_else(|| CredentialsError::Form(path.to_path_buf()))
}

/// `user:password` on the first line; the password may hold colons.
fn parse_line(text: &str) -> Option<Credentials> {
    let line = text.lines().next()?.trim_end_matches('\r');
    let (user, password) = line.split_once(':')?;
    (!user.is_empty()).then(|| Credentials {
        username: user.to_string(),
        password: password.to_string(),
    })
}

fn from_env(
    user: Option<String>,
    password: Option<String>,
) -> Result<Option<Credentials>, CredentialsError> {
    match (user.filter(|u| !u.is_empty()), password) {
        (Some(username), password) => Ok(Some(Credentials {
            username,
            password: password.unwrap_or_default(),
        })),
        (None, Some(p)) if !p.is_empty() => Err(CredentialsError::PasswordWithoutUser),
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_forms() {
        let c = parse_line("cam:pa:ss word\r\nignored").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("cam", "pa:ss word")
        );
        assert_eq!(parse_line("cam:").unwrap().password, "");
        assert!(parse_line("no colon").is_none());
        assert!(parse_line(":pw").is_none());
        assert!(parse_line("").is_none());
        assert!(!format!("{c:?}").contains("pa:ss"));
    }

    #[test]
    fn environment() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(from_env(None, None).unwrap(), None);
        assert_eq!(
            from_env(s("u"), s("p")).unwrap(),
            Some(Credentials {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert!(matches!(
            from_env(None, s("p")),
            Err(CredentialsError::PasswordWithoutUser)
        ));
    }

    #[test]
    fn file_errors_do_not_show_the_content() {
        let dir = std::env::temp_dir().join(format!("cudainfer-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, "hunter2\n").unwrap();
        let err = from_file(&bad).unwrap_err().to_string();
        assert!(
            err.contains("user:password") && !err.contains("hunter2"),
            "{err}"
        );
        let missing = from_file(&dir.join("missing")).unwrap_err().to_string();
        assert!(
            missing.contains("cannot read the credentials file"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
