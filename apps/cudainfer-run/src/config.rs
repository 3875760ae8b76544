//! The service's settings: the command line, or a TOML file (`--config`)
//! whose values the command line overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use cudainfer_run::camera_id::{self, IdError, Shard};
use cudainfer_run::camera_uri::{CameraUri, UriError};

pub const USAGE: &str = "\
usage: cudainfer-run --model M [options] [URI...]
       cudainfer-run --config FILE [options] [URI...]

A camera is a URI: rtsp://[user:pass@]host[:port]/path, http(s)://..., file:///path.

options:
  --model PATH          ONNX model (required here or in the config file)
  --model-type T        yolox (default), yolov8, ssd
  --labels PATH         class names, one per line
  --json FILE|-         write every frame's results as JSON lines (appended) or to stdout
  --mqtt URL            publish results to mqtt://host[:port]/topic (one topic for all cameras)
  --record DIR          record annotated video in MP4 segments, DIR/<camera>-NNNNN.mp4
                        (DIR must exist)
  --record-segment S    length of a recorded segment in seconds (default 60)
  --http ADDR           REST API and /metrics on ADDR (port alone: 127.0.0.1:PORT)
  --token-file FILE     bearer token for the API (else $CUDAINFER_RUN_TOKEN); required
                        when --http is not a loopback address
  --allow-dir DIR       file:// cameras added through the API must lie under DIR (repeatable)
  --max-cameras N       most cameras at once; the API answers 409 beyond (default 512)
  --metrics-without-token  GET /metrics without the token (for scrapers that send none;
                        the rest of the API still needs it)
  --shard I/N           run only this instance's share (I of N, from 0) of the cameras listed:
                        those whose id hashes to I modulo N (also $CUDAINFER_SHARD); a sharded
                        instance refuses POST /cameras (add cameras to the shared list instead)
  --decode auto|gpu|cpu hardware decoding when a GPU is there (auto, default), or forced
  --device-id N         GPU for decoding and inference (default 0)
  --gpus LIST           spread the cameras over these GPUs (e.g. 0,1; instead of --device-id):
                        each camera starts on the GPU with the fewest cameras, the first on ties
  --providers LIST      ONNX Runtime providers (default: cuda,cpu with a GPU, else cpu)
  --overload P          when inference cannot keep up: skip (frames whose result would be later
                        than --latency-budget pass on uninferred, with the tracker's boxes), block
                        (every frame inferred, cameras fall behind) or auto (default: skip for
                        live sources such as RTSP, block for files)
  --latency-budget MS   latency budget of --overload skip, in milliseconds (default 100)
  --once                play file cameras once (default: loop them)
  --no-sync             process files as fast as possible instead of in real time
  --status / --no-status  live status table on stderr (default: when stderr is a terminal)
  --config FILE         TOML file with the same settings (keys as above; cameras =
                        [\"rtsp://...\", { uri = \"rtsp://...\", id = \"gate-north\" }, ...])

A camera's id is the one given in the config file, else cam- and 8 hex digits derived from its
URI without credentials (-2, -3... for repeats): it stays the same across restarts.
The API also answers GET /healthz and GET /readyz without the token.
  -h, --help            this text
";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}\n\n{USAGE}")]
    Args(#[from] lexopt::Error),
    #[error("cannot read the config file '{0}': {1}")]
    ReadConfig(PathBuf, std::io::Error),
    #[error("config file '{0}': {1}")]
    ParseConfig(PathBuf, String),
    #[error("no model: give --model PATH (or model = \"...\" in the config file)")]
    NoModel,
    #[error("model '{0}' does not exist")]
    ModelMissing(PathBuf),
    #[error("--{0}: '{1}' is not valid: {2}")]
    Value(&'static str, String, &'static str),
    #[error("camera: {0}")]
    Camera(#[from] UriError),
    #[error("--http {0}: the API is bound beyond loopback, so it needs a token: put it in a file given with --token-file, or in $CUDAINFER_RUN_TOKEN")]
    TokenRequired(SocketAddr),
    #[error("cannot read the token file '{0}': {1}")]
    ReadToken(PathBuf, std::io::Error),
    #[error("the token is empty or shorter than 16 characters: use a long random token")]
    WeakToken,
    #[error("the token holds a space, a line break or a character outside ASCII, which no client can send in a header: use one line of letters, digits and punctuation (e.g. openssl rand -hex 24)")]
    TokenCharacters,
    #[error("--record '{0}' is not a directory: create it first")]
    RecordDir(PathBuf),
    #[error("--record '{0}': cannot write there ({1}): give a directory the service may write")]
    RecordWrite(PathBuf, std::io::Error),
    #[error("--json '{0}': {1}")]
    Json(PathBuf, String),
    #[error(
        "--labels '{0}' is not a readable file: give the class names file, or leave --labels out"
    )]
    Labels(PathBuf),
    #[error("{0}")]
    CameraId(#[from] IdError),
}

/// Most cameras at once unless `--max-cameras` says otherwise: each holds a
/// pipeline and its threads.
const DEFAULT_MAX_CAMERAS: usize = 512;
/// Beyond this a host runs out of threads long before.
const HARD_MAX_CAMERAS: usize = 4096;

/// Seconds per recorded segment unless `--record-segment` says otherwise.
const DEFAULT_RECORD_SEGMENT: u64 = 60;
/// A day: longer segments would hold an unfinalised file for too long.
const MAX_RECORD_SEGMENT: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decode {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// The config file's shape; every key optional (the command line may give it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    model: Option<PathBuf>,
    #[serde(alias = "model_type")]
    model_type: Option<String>,
    labels: Option<PathBuf>,
    json: Option<String>,
    mqtt: Option<String>,
    record: Option<PathBuf>,
    #[serde(alias = "record_segment")]
    record_segment: Option<u64>,
    http: Option<String>,
    #[serde(alias = "token_file")]
    token_file: Option<PathBuf>,
    #[serde(alias = "allow_dirs", alias = "allow-dir")]
    allow_dirs: Option<Vec<PathBuf>>,
    #[serde(alias = "max_cameras")]
    max_cameras: Option<usize>,
    decode: Option<Decode>,
    #[serde(alias = "device_id")]
    device_id: Option<u32>,
    gpus: Option<Vec<u32>>,
    providers: Option<String>,
    overload: Option<String>,
    #[serde(alias = "latency_budget")]
    latency_budget: Option<u32>,
    once: Option<bool>,
    sync: Option<bool>,
    status: Option<bool>,
    #[serde(alias = "metrics_without_token")]
    metrics_without_token: Option<bool>,
    shard: Option<String>,
    cameras: Option<Vec<CameraEntry>>,
}

/// A camera of the config file: its URI, or a table with its id too.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum CameraEntry {
    Uri(String),
    Named(NamedCamera),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedCamera {
    uri: String,
    id: Option<String>,
}

/// A camera this instance runs, with its id.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub uri: CameraUri,
}

/// Everything the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub model: PathBuf,
    pub model_type: String,
    pub labels: Option<PathBuf>,
    pub json: Option<String>,
    pub mqtt: Option<String>,
    pub record: Option<PathBuf>,
    /// Seconds per recorded segment.
    pub record_segment: u64,
    pub http: Option<SocketAddr>,
    pub token: Option<String>,
    pub allow_dirs: Vec<PathBuf>,
    pub max_cameras: usize,
    pub decode: Decode,
    /// The first of `gpus`.
    pub device_id: u32,
    /// The GPUs the cameras are spread over (one: `--device-id`).
    pub gpus: Vec<u32>,
    pub providers: Option<String>,
    pub overload: String,
    pub latency_budget: u32,
    pub loop_files: bool,
    pub sync: bool,
    pub status: Option<bool>,
    pub metrics_without_token: bool,
    pub shard: Option<Shard>,
    /// Cameras listed in all (this instance runs those in `cameras`).
    pub listed: usize,
    pub cameras: Vec<Listed>,
}

/// What the command line asks for.
pub enum Command {
    Run(Box<Config>),
    Help,
}

pub fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut cli = FileConfig::default();
    let mut config_file = None;
    let mut allow_dirs = Vec::new();
    let mut cameras = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("config") => config_file = Some(PathBuf::from(parser.value()?)),
            Long("model") => cli.model = Some(parser.value()?.into()),
            Long("model-type") => cli.model_type = Some(parser.value()?.string()?),
            Long("labels") => cli.labels = Some(parser.value()?.into()),
            Long("json") => cli.json = Some(parser.value()?.string()?),
            Long("mqtt") => cli.mqtt = Some(parser.value()?.string()?),
            Long("record") => cli.record = Some(parser.value()?.into()),
            Long("record-segment") => cli.record_segment = Some(parser.value()?.parse()?),
            Long("http") => cli.http = Some(parser.value()?.string()?),
            Long("token-file") => cli.token_file = Some(parser.value()?.into()),
            Long("allow-dir") => allow_dirs.push(PathBuf::from(parser.value()?)),
            Long("max-cameras") => cli.max_cameras = Some(parser.value()?.parse()?),
            Long("decode") => {
                let v = parser.value()?.string()?;
                cli.decode = Some(match v.as_str() {
                    "auto" => Decode::Auto,
                    "gpu" => Decode::Gpu,
                    "cpu" => Decode::Cpu,
                    _ => return Err(ConfigError::Value("decode", v, "use auto, gpu or cpu")),
                });
            }
            Long("device-id") => cli.device_id = Some(parser.value()?.parse()?),
            Long("gpus") => {
                let v = parser.value()?.string()?;
                let list: Result<Vec<u32>, _> = v.split(',').map(|d| d.trim().parse()).collect();
                cli.gpus = Some(list.map_err(|_| {
                    ConfigError::Value(
                        "gpus",
                        v,
                        "give device numbers separated by commas, e.g. 0,1",
                    )
                })?);
            }
            Long("providers") => cli.providers = Some(parser.value()?.string()?),
            Long("overload") => cli.overload = Some(parser.value()?.string()?),
            Long("latency-budget") => cli.latency_budget = Some(parser.value()?.parse()?),
            Long("once") => cli.once = Some(true),
            Long("no-sync") => cli.sync = Some(false),
            Long("status") => cli.status = Some(true),
            Long("no-status") => cli.status = Some(false),
            Long("metrics-without-token") => cli.metrics_without_token = Some(true),
            Long("shard") => cli.shard = Some(parser.value()?.string()?),
            Value(v) => cameras.push(CameraEntry::Uri(v.string()?)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let file = match &config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::ReadConfig(path.clone(), e))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| ConfigError::ParseConfig(path.clone(), toml_error(&text, &e)))?
        }
        None => FileConfig::default(),
    };
    if !allow_dirs.is_empty() {
        cli.allow_dirs = Some(allow_dirs);
    }
    let mut all_cameras = file.cameras.clone().unwrap_or_default();
    all_cameras.extend(cameras);
    if cli.shard.is_none() {
        cli.shard = std::env::var("CUDAINFER_SHARD")
            .ok()
            .filter(|s| !s.is_empty());
    }
    resolve(cli, file, all_cameras).map(|c| Command::Run(Box::new(c)))
}

fn resolve(
    cli: FileConfig,
    file: FileConfig,
    cameras: Vec<CameraEntry>,
) -> Result<Config, ConfigError> {
    let model = cli.model.or(file.model).ok_or(ConfigError::NoModel)?;
    if !model.is_file() {
        return Err(ConfigError::ModelMissing(model));
    }
    let http = match cli.http.or(file.http) {
        Some(a) => Some(parse_addr(&a)?),
        None => None,
    };
    let token = match cli.token_file.or(file.token_file) {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::ReadToken(path.clone(), e))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("CUDAINFER_RUN_TOKEN").ok(),
    };
    if let Some(t) = &token {
        // One line of visible ASCII: what a client can send in a header.
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::TokenCharacters);
        }
        if t.len() < 16 {
            return Err(ConfigError::WeakToken);
        }
    }
    if let Some(addr) = http {
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(ConfigError::TokenRequired(addr));
        }
    }
    let record = cli.record.or(file.record);
    if let Some(dir) = &record {
        check_record_dir(dir)?;
    }
    let json = cli.json.or(file.json);
    // /dev/null: results discarded (metrics and recordings only).
    if let Some(path) = json
        .as_deref()
        .filter(|j| !["-", "stdout", "/dev/null"].contains(j))
    {
        check_json_file(std::path::Path::new(path))?;
    }
    let labels = cli.labels.or(file.labels);
    if let Some(path) = &labels {
        if std::fs::File::open(path)
            .and_then(|f| f.metadata())
            .map(|m| m.is_file())
            .ok()
            != Some(true)
        {
            return Err(ConfigError::Labels(path.clone()));
        }
    }
    let record_segment = cli
        .record_segment
        .or(file.record_segment)
        .unwrap_or(DEFAULT_RECORD_SEGMENT);
    if !(1..=MAX_RECORD_SEGMENT).contains(&record_segment) {
        return Err(ConfigError::Value(
            "record-segment",
            record_segment.to_string(),
            "give whole seconds from 1 to 86400",
        ));
    }
    let shard = match cli.shard.or(file.shard) {
        Some(text) => Some(
            text.parse::<Shard>()
                .map_err(|why| ConfigError::Value("shard", text, why))?,
        ),
        None => None,
    };
    let (cameras, listed) = list_cameras(&cameras, shard)?;
    let overload = cli
        .overload
        .or(file.overload)
        .unwrap_or_else(|| "auto".into());
    if !["auto", "skip", "block"].contains(&overload.as_str()) {
        return Err(ConfigError::Value(
            "overload",
            overload,
            "use auto, skip or block",
        ));
    }
    let latency_budget = cli.latency_budget.or(file.latency_budget).unwrap_or(100);
    if !(1..=60_000).contains(&latency_budget) {
        return Err(ConfigError::Value(
            "latency-budget",
            latency_budget.to_string(),
            "give milliseconds from 1 to 60000",
        ));
    }
    let max_cameras = cli
        .max_cameras
        .or(file.max_cameras)
        .unwrap_or(DEFAULT_MAX_CAMERAS);
    if !(1..=HARD_MAX_CAMERAS).contains(&max_cameras) || cameras.len() > max_cameras {
        return Err(ConfigError::Value(
            "max-cameras",
            max_cameras.to_string(),
            "give 1 to 4096, and at least as many as the cameras listed",
        ));
    }
    let gpus = gpu_list(cli.gpus.or(file.gpus), cli.device_id.or(file.device_id))?;
    Ok(Config {
        model,
        model_type: cli
            .model_type
            .or(file.model_type)
            .unwrap_or_else(|| "yolox".into()),
        labels,
        json,
        mqtt: cli.mqtt.or(file.mqtt),
        record,
        record_segment,
        http,
        token,
        allow_dirs: cli.allow_dirs.or(file.allow_dirs).unwrap_or_default(),
        max_cameras,
        decode: cli.decode.or(file.decode).unwrap_or_default(),
        device_id: gpus[0],
        gpus,
        providers: cli.providers.or(file.providers),
        overload,
        latency_budget,
        loop_files: !cli.once.or(file.once).unwrap_or(false),
        sync: cli.sync.or(file.sync).unwrap_or(true),
        status: cli.status.or(file.status),
        metrics_without_token: cli
            .metrics_without_token
            .or(file.metrics_without_token)
            .unwrap_or(false),
        shard,
        listed,
        cameras,
    })
}

/// GPUs as `--gpus` takes them: `0,1`.
pub fn device_list(gpus: &[u32]) -> String {
    gpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The GPUs cameras are spread over: `--gpus` (distinct devices, at most
/// 16), or the one of `--device-id` (default 0); not both.
fn gpu_list(gpus: Option<Vec<u32>>, device_id: Option<u32>) -> Result<Vec<u32>, ConfigError> {
    const MOST: usize = 16;
    let Some(gpus) = gpus else {
        return Ok(vec![device_id.unwrap_or(0)]);
    };
    let shown = || device_list(&gpus);
    if device_id.is_some() {
        return Err(ConfigError::Value(
            "gpus",
            shown(),
            "give --gpus or --device-id, not both",
        ));
    }
    let mut seen = gpus.clone();
    seen.sort_unstable();
    seen.dedup();
    if gpus.is_empty() || gpus.len() > MOST || seen.len() != gpus.len() {
        return Err(ConfigError::Value(
            "gpus",
            shown(),
            "give 1 to 16 distinct device numbers, e.g. 0,1",
        ));
    }
    Ok(gpus)
}

/// The cameras of the whole list with their ids, then those of this shard;
/// and how many are listed in all. Ids are assigned over the whole list,
/// so that every instance sharing it gives a camera the same id.
fn list_cameras(
    entries: &[CameraEntry],
    shard: Option<Shard>,
) -> Result<(Vec<Listed>, usize), ConfigError> {
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let (uri, id) = match entry {
            CameraEntry::Uri(uri) => (uri, None),
            CameraEntry::Named(named) => (&named.uri, named.id.as_deref()),
        };
        parsed.push((id, CameraUri::parse(uri)?));
    }
    let keys: Vec<(Option<&str>, String)> = parsed
        .iter()
        .map(|(id, uri)| (*id, uri.identity().to_string()))
        .collect();
    let ids = camera_id::assign(&keys)?;
    let listed = parsed.len();
    let cameras = ids
        .into_iter()
        .zip(parsed)
        .filter(|(id, _)| shard.is_none_or(|s| s.runs(id)))
        .map(|(id, (_, uri))| Listed { id, uri })
        .collect();
    Ok((cameras, listed))
}

/// A TOML error without its excerpt of the file, whose line may hold a
/// secret (a camera's password, a token): where it is, and the message
/// with any quoted value left out.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let place = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        })
        .unwrap_or_default();
    format!("{place}{}", without_quoted(e.message().trim()))
}

/// `text` with the content of every "…" replaced by `…` (serde writes a
/// value with its quotes and backslashes escaped, `\"` inside).
fn without_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"…\"");
        // Up to the closing quote; an escaped one does not close.
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
}

/// The recordings' directory exists and takes a file.
fn check_record_dir(dir: &std::path::Path) -> Result<(), ConfigError> {
    if !dir.is_dir() {
        return Err(ConfigError::RecordDir(dir.to_path_buf()));
    }
    let probe = dir.join(format!(".cudainfer-run-write-check-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| ConfigError::RecordWrite(dir.to_path_buf(), e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The results file: a regular file (or none yet) that opens for
/// appending. A device (/dev/full), FIFO or directory is refused: a
/// camera would fail on its first line and retry forever.
fn check_json_file(path: &std::path::Path) -> Result<(), ConfigError> {
    let refuse = |why: String| ConfigError::Json(path.to_path_buf(), why);
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(refuse(
            "not a regular file (a directory, device or FIFO): give a file path, or - for stdout"
                .into(),
        )),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(format!("{e}"))),
    }
    std::fs::File::options()
        .append(true)
        .create(true)
        .open(path)
        .map(drop)
        .map_err(|e| {
            refuse(format!(
                "cannot open it for appending ({e}): give a writable file path, or - for stdout"
            ))
        })
}

/// `HOST:PORT`, or a port alone for 127.0.0.1 (the safe default).
fn parse_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let bad = || ConfigError::Value("http", text.to_string(), "use HOST:PORT or PORT");
    if let Ok(port) = text.trim_start_matches(':').parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let with_local = text.replace("localhost:", "127.0.0.1:");
    with_local.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    fn model() -> String {
        // Any existing file stands for the model here.
        env!("CARGO_MANIFEST_DIR").to_string() + "/Cargo.toml"
    }

    #[test]
    fn port_alone_binds_loopback() {
        assert_eq!(parse_addr("8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(parse_addr(":8080").unwrap().to_string(), "127.0.0.1:8080");
        assert!(parse_addr("nowhere").is_err());
    }

    #[test]
    fn gpus_are_a_list_of_distinct_devices_or_one_device_id() {
        let m = model();
        let run = |extra: &[&str]| {
            let mut list = vec!["x", "--model", &m];
            list.extend_from_slice(extra);
            match parse_args(args(&list)) {
                Ok(Command::Run(c)) => Ok((c.gpus, c.device_id)),
                Ok(Command::Help) => panic!("help"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(run(&[]), Ok((vec![0], 0)));
        assert_eq!(run(&["--device-id", "1"]), Ok((vec![1], 1)));
        assert_eq!(run(&["--gpus", "1,0"]), Ok((vec![1, 0], 1)));
        assert_eq!(run(&["--gpus", "0, 1"]), Ok((vec![0, 1], 0)));
        for (bad, why) in [
            (&["--gpus", "0,0"][..], "distinct device numbers"),
            (&["--gpus", "0,x"][..], "separated by commas"),
            (&["--gpus", ""][..], "separated by commas"),
            (&["--gpus", "0,1", "--device-id", "1"][..], "not both"),
        ] {
            let err = run(bad).unwrap_err();
            assert!(
                err.contains("--gpus") && err.contains(why),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn beyond_loopback_needs_a_token() {
        let m = model();
        let err = match parse_args(args(&["x", "--model", &m, "--http", "0.0.0.0:9"])) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted without a token"),
        };
        assert!(err.contains("needs a token"), "{err}");
    }

    #[test]
    fn recording_settings_are_checked() {
        let m = model();
        let dir = env!("CARGO_MANIFEST_DIR");
        let run = |extra: &[&str]| {
            let mut list = vec!["x", "--model", &m];
            list.extend_from_slice(extra);
            parse_args(args(&list))
        };
        match run(&["--record", dir]).unwrap() {
            Command::Run(c) => assert_eq!(c.record_segment, 60),
            Command::Help => panic!("help"),
        }
        match run(&["--record", dir, "--record-segment", "5"]).unwrap() {
            Command::Run(c) => assert_eq!(c.record_segment, 5),
            Command::Help => panic!("help"),
        }
        let err = run(&["--record", dir, "--record-segment", "0"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--record-segment: '0' is not valid"), "{err}");
        let err = run(&["--record", "/nonexistent/recordings"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not a directory: create it first"), "{err}");
    }

    #[test]
    fn config_file_and_command_line() {
        let dir = std::env::temp_dir().join(format!("cudainfer-run-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            format!(
                "model = \"{}\"\nmodel-type = \"yolov8\"\njson = \"-\"\ncameras = [\"rtsp://u:p@h/a\"]\n",
                model()
            ),
        )
        .unwrap();
        let cfg = match parse_args(args(&[
            "x",
            "--config",
            path.to_str().unwrap(),
            "--model-type",
            "yolox",
            "file:///tmp/b.mp4",
        ]))
        .unwrap()
        {
            Command::Run(c) => c,
            Command::Help => panic!("help"),
        };
        assert_eq!(cfg.model_type, "yolox");
        assert_eq!(cfg.json.as_deref(), Some("-"));
        assert_eq!(cfg.cameras.len(), 2);
        assert_eq!(cfg.cameras[0].uri.redacted(), "rtsp://<redacted>@h/a");
        std::fs::write(&path, "modell = \"x\"\n").unwrap();
        let err = parse_args(args(&["x", "--config", path.to_str().unwrap()]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn camera_ids_and_shards() {
        let dir = std::env::temp_dir().join(format!("cudainfer-run-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        let cameras: Vec<String> = (0..12).map(|n| format!("\"rtsp://u:p@h/{n}\"")).collect();
        std::fs::write(
            &path,
            format!(
                "model = \"{}\"\ncameras = [{{ uri = \"rtsp://u:p@door/x\", id = \"door\" }}, {}, \"rtsp://h/0\"]\n",
                model(),
                cameras.join(", ")
            ),
        )
        .unwrap();
        let run = |extra: &[&str]| {
            let mut list = vec!["x", "--config", path.to_str().unwrap()];
            list.extend_from_slice(extra);
            match parse_args(args(&list)) {
                Ok(Command::Run(c)) => Ok(c),
                Ok(Command::Help) => panic!("help"),
                Err(e) => Err(e.to_string()),
            }
        };
        let all = run(&[]).unwrap();
        let ids: Vec<&str> = all.cameras.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(all.listed, 14);
        assert_eq!(ids[0], "door");
        // The credentials are no part of the id: h/0 twice is a repeat.
        let first = camera_id::derived("rtsp://h/0");
        assert_eq!(ids[1], first);
        assert_eq!(ids[13], format!("{first}-2"));
        // Three shards run every camera exactly once, with the same ids.
        let mut seen: Vec<String> = (0..3)
            .flat_map(|i| {
                let c = run(&["--shard", &format!("{i}/3")]).unwrap();
                assert_eq!(c.listed, 14);
                c.cameras.into_iter().map(|c| c.id).collect::<Vec<_>>()
            })
            .collect();
        seen.sort();
        let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(seen, expected);
        let err = run(&["--shard", "3/3"]).unwrap_err();
        assert!(
            err.contains("--shard: '3/3' is not valid: I must be less than N"),
            "{err}"
        );
        std::fs::write(
            &path,
            format!(
                "model = \"{}\"\ncameras = [{{ uri = \"rtsp://h/a\", id = \"Door 1\" }}]\n",
                model()
            ),
        )
        .unwrap();
        assert!(run(&[])
            .unwrap_err()
            .contains("camera id 'Door 1' is not valid"));
        std::fs::write(
            &path,
            format!(
                "model = \"{}\"\ncameras = [{{ uri = \"rtsp://h/a\", name = \"x\" }}]\n",
                model()
            ),
        )
        .unwrap();
        assert!(run(&[]).unwrap_err().contains("line 2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_errors_show_no_secret() {
        let dir =
            std::env::temp_dir().join(format!("cudainfer-run-cfg-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        for text in [
            "cameras = \"rtsp://admin:secretpass@10.0.0.5/s\"\n".to_string(),
            "cameras = 'rtsp://admin:se\"cretpass@10.0.0.5/s'\n".to_string(),
            "cameras = 'rtsp://admin:se\\\\\"cretpass@10.0.0.5/s'\n".to_string(),
            format!(
                "model = \"{}\"\ntoken = \"secretpass-secretpass\"\n",
                model()
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = parse_args(args(&["x", "--config", path.to_str().unwrap()]))
                .err()
                .unwrap()
                .to_string();
            assert!(!err.contains("cretpass"), "{err}");
            assert!(err.contains("line "), "{err}");
        }
        let err = parse_args(args(&["x", "--model", &model(), "secretpass://admin:x@h/"]))
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("admin:x"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_are_checked_at_start() {
        let dir =
            std::env::temp_dir().join(format!("cudainfer-run-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let m = model();
        let run = |extra: &[&str]| {
            let mut list = vec!["x", "--model", &m];
            list.extend_from_slice(extra);
            parse_args(args(&list)).err().map(|e| e.to_string())
        };
        let missing = dir.join("no/such/dir/r.jsonl");
        let cases = [
            (
                missing.to_str().unwrap().to_string(),
                "cannot open it for appending",
            ),
            (dir.to_str().unwrap().to_string(), "not a regular file"),
            ("/dev/full".to_string(), "not a regular file"),
        ];
        assert_eq!(run(&["--json", "/dev/null"]), None);
        for (json, expected) in &cases {
            let err = run(&["--json", json]).unwrap_or_else(|| panic!("{json} accepted"));
            assert!(err.contains(expected), "{json}: {err}");
        }
        let ok = dir.join("r.jsonl");
        assert_eq!(run(&["--json", ok.to_str().unwrap()]), None);
        assert_eq!(run(&["--json", "-"]), None);
        let err = run(&["--labels", dir.join("none.txt").to_str().unwrap()]).unwrap();
        assert!(err.contains("is not a readable file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
