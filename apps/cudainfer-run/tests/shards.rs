//! Many instances sharing one camera list (`--shard I/N`), and what an
//! orchestrator sees of one: the probes, the refusal of API cameras in a
//! sharded set, the metrics of its share. The three-shard test runs the
//! instances as processes under a restart loop (what a restart policy
//! does), or, with `CUDAINFER_SHARDS_RUNNER=podman`, as containers of the
//! CPU image (`deploy/container/build-images.sh cpu`) with podman's
//! restart policy.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use cudainfer_run::camera_id::Shard;

const TOKEN: &str = "shard-test-token-0123456789";
const SHARDS: u32 = 3;
const FRAMES: u32 = 15;

fn write_token(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

/// An HTTP "camera" that accepts connections and never answers: its
/// camera stays in its first connection.
fn silent_server() -> (u16, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (listener.local_addr().unwrap().port(), listener)
}

/// The probes need no token; readiness waits for every camera's first
/// connection; a sharded instance runs its share (also from
/// `$CUDAINFER_SHARD`), says so in /metrics, refuses to add or remove
/// cameras through the API (409),
/// and opens /metrics alone with `--metrics-without-token`.
#[test]
fn probes_and_a_sharded_instance() {
    let dir = temp_dir("probes");
    let token_file = write_token(&dir);
    let clip = small_clip(&dir, 30);
    let (port, _silent) = silent_server();
    let slow = format!("http://127.0.0.1:{port}/never.mkv");
    let file = format!("file://{}", clip.display());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{}\"\ntoken-file = \"{}\"\nhttp = \"127.0.0.1:0\"\ncameras = [\"{slow}\", {{ uri = \"{file}\", id = \"door\" }}]\n",
            model(),
            token_file.display()
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    // Unsharded: both cameras; the silent one keeps the instance unready.
    let service = Service::start(&["--config", &config_s, "--http", "0"], &[]);
    let addr = service.addr.unwrap();
    let (status, body) = http(addr, "GET", "/healthz", None, None);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let slow_id = ids_for(&[slow.as_str()]).remove(0);
    // The file camera runs at once; the silent one stays in its first
    // connection (souphttpsrc waits its timeout for an answer).
    let mut body = String::new();
    wait_until(
        "only the silent camera connecting",
        Duration::from_secs(10),
        || {
            let (status, text) = http(addr, "GET", "/readyz", None, None);
            body = text;
            status == 503 && !body.contains("door")
        },
    );
    assert!(body.contains(&slow_id), "{body}");
    let (status, _) = http(addr, "GET", "/metrics", None, None);
    assert_eq!(status, 401);
    let (_, metrics) = http(addr, "GET", "/metrics", None, Some(TOKEN));
    let metrics = Metrics::parse(&metrics);
    assert_eq!(metrics.0["cudainfer_ready"], 0.0);
    assert_eq!(metrics.0["cudainfer_shard_count"], 1.0);
    drop(service);
    drop(_silent);

    // Without the silent camera: ready once the file cameras run.
    let others: Vec<String> = (31..34)
        .map(|n| format!("file://{}", small_clip(&dir, n).display()))
        .collect();
    let quoted: Vec<String> = others.iter().map(|u| format!("\"{u}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "model = \"{}\"\ntoken-file = \"{}\"\nmetrics-without-token = true\ncameras = [{{ uri = \"{file}\", id = \"door\" }}, {}]\n",
            model(),
            token_file.display(),
            quoted.join(", ")
        ),
    )
    .unwrap();
    let listed = ["door".to_string()]
        .into_iter()
        .chain(ids_for(
            &others.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .collect::<Vec<_>>();
    let mut seen = Vec::new();
    for index in 0..2 {
        let shard = Shard { index, count: 2 };
        // The second instance takes its shard from the environment.
        let (args, env): (Vec<&str>, Vec<(&str, String)>) = if index == 0 {
            (
                vec!["--config", &config_s, "--http", "0", "--shard", "0/2"],
                vec![],
            )
        } else {
            (
                vec!["--config", &config_s, "--http", "0"],
                vec![("CUDAINFER_SHARD", "1/2".to_string())],
            )
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut service = Service::start(&args, &env);
        let addr = service.addr.unwrap();
        service.wait_log(&format!("shard={index}/2"), Duration::from_secs(5));
        wait_until("ready", Duration::from_secs(60), || {
            http(addr, "GET", "/readyz", None, None).0 == 200
        });
        let (status, cameras) = http(addr, "GET", "/cameras", None, Some(TOKEN));
        assert_eq!(status, 200);
        let ids: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&cameras)
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = listed.iter().filter(|id| shard.runs(id)).cloned().collect();
        assert_eq!(ids, expected, "shard {shard}");
        seen.extend(ids.iter().cloned());
        // /metrics opened alone: the rest still needs the token.
        let (status, metrics) = http(addr, "GET", "/metrics", None, None);
        assert_eq!(status, 200);
        let metrics = Metrics::parse(&metrics);
        assert_eq!(metrics.0["cudainfer_shard_index"], f64::from(index));
        assert_eq!(metrics.0["cudainfer_shard_count"], 2.0);
        assert_eq!(metrics.0["cudainfer_ready"], 1.0);
        assert_eq!(http(addr, "GET", "/cameras", None, None).0, 401);
        let body = format!("{{\"uri\": \"{file}\"}}");
        let (status, reply) = http(addr, "POST", "/cameras", Some(body.as_bytes()), Some(TOKEN));
        assert_eq!(status, 409, "{reply}");
        assert!(reply.contains("shard"), "{reply}");
        if let Some(first) = ids.first() {
            let path = format!("/cameras/{first}");
            let (status, reply) = http(addr, "DELETE", &path, None, Some(TOKEN));
            assert_eq!(status, 409, "{reply}");
            assert_eq!(http(addr, "GET", &path, None, Some(TOKEN)).0, 200);
        }
        let status = service.terminate(Duration::from_secs(15));
        assert!(status.success());
    }
    seen.sort();
    let mut all = listed.clone();
    all.sort();
    assert_eq!(seen, all, "two shards together run the list once");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// How the instances are run: as processes, each under a loop that starts
/// it again when it dies, or as podman containers with a restart policy.
#[derive(Clone)]
enum Runner {
    Processes,
    /// `flags` go before `run` (`--runtime runc`), `run_flags` after it
    /// (`--ulimit …`), from `$PODMAN_FLAGS` and `$PODMAN_RUN_FLAGS`.
    Podman {
        image: String,
        flags: Vec<String>,
        run_flags: Vec<String>,
    },
}

impl Runner {
    fn from_env() -> Runner {
        let words = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        match std::env::var("CUDAINFER_SHARDS_RUNNER").as_deref() {
            Ok("podman") => Runner::Podman {
                image: std::env::var("CUDAINFER_IMAGE")
                    .unwrap_or_else(|_| "localhost/cudainfer-run:cpu".into()),
                flags: words("PODMAN_FLAGS"),
                run_flags: words("PODMAN_RUN_FLAGS"),
            },
            _ => Runner::Processes,
        }
    }
}

/// One instance of the set, kept running by its runner.
struct Instance {
    name: String,
    runner: Runner,
    /// The process of the current run (processes), for the kill.
    pid: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    fn start(runner: &Runner, name: &str, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let pid = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let supervisor = match runner {
            Runner::Processes => {
                let (pid, stop) = (pid.clone(), stop.clone());
                Some(std::thread::spawn(move || {
                    let (k, v) = ort_env();
                    while !stop.load(Ordering::Relaxed) {
                        let mut child = Command::new(env!("CARGO_BIN_EXE_cudainfer-run"))
                            .args(&args)
                            .env(&k, &v)
                            .envs(env.iter().map(|(k, v)| (k, v)))
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .expect("cudainfer-run starts");
                        pid.store(child.id(), Ordering::Relaxed);
                        while !stop.load(Ordering::Relaxed) && child.try_wait().unwrap().is_none() {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        let _ = Command::new("kill")
                            .args(["-TERM", &child.id().to_string()])
                            .stderr(Stdio::null())
                            .status();
                        let _ = child.wait();
                        // A restart policy's back-off.
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }))
            }
            Runner::Podman {
                image,
                flags,
                run_flags,
            } => {
                let _ = Command::new("podman").args(["rm", "-f", name]).output();
                let mut cmd = Command::new("podman");
                cmd.args(flags)
                    .args(["run", "-d", "--name", name, "--restart", "on-failure"])
                    // The broker and Prometheus are on the host's loopback.
                    .args(["--network", "host"])
                    .args(run_flags.iter().filter(|f| !f.starts_with("--network")));
                for (k, v) in &env {
                    cmd.args(["-e", &format!("{k}={v}")]);
                }
                for dir in mounts(&args) {
                    cmd.args(["-v", &format!("{0}:{0}:ro", dir.display())]);
                }
                let out = cmd.arg(image).args(&args).output().expect("podman runs");
                assert!(
                    out.status.success(),
                    "podman run: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
        };
        Instance {
            name: name.to_string(),
            runner: runner.clone(),
            pid,
            stop,
            supervisor,
        }
    }

    /// Kills the instance's process as a crash would (SIGKILL).
    fn crash(&self) {
        let pid = match &self.runner {
            Runner::Processes => self.pid.load(Ordering::Relaxed).to_string(),
            Runner::Podman { .. } => {
                let out = Command::new("podman")
                    .args(["inspect", "--format", "{{.State.Pid}}", &self.name])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        };
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success(), "kill {pid}");
    }

    fn logs(&self) -> String {
        match &self.runner {
            Runner::Processes => String::new(),
            Runner::Podman { .. } => {
                let out = Command::new("podman")
                    .args(["logs", "--tail", "20", &self.name])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stderr).into_owned()
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.supervisor.take() {
            let _ = s.join();
        }
        if let Runner::Podman { .. } = self.runner {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "15", &self.name])
                .output();
        }
    }
}

/// The shared models' folder without `..`, which a container's view of the
/// path could not walk.
fn canonical_models() -> PathBuf {
    std::fs::canonicalize(shared_dir().join("models")).expect("the models' folder")
}

/// The folders a container needs to see: those of the paths in `args` and
/// of the files the config names (all under the test's folder, the model's
/// and ONNX Runtime's).
fn mounts(args: &[String]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = args
        .iter()
        .filter(|a| a.starts_with('/'))
        .filter_map(|a| Path::new(a).parent().map(Path::to_path_buf))
        .collect();
    dirs.push(canonical_models());
    dirs.sort();
    dirs.dedup();
    dirs
}

/// A mosquitto of the test's own on 127.0.0.1, and `mosquitto_sub` on
/// every topic under `cudainfer/`, keeping (topic, camera) per message.
struct Broker {
    child: Child,
    sub: Child,
    port: u16,
    received: Arc<Mutex<Vec<(String, String)>>>,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        // `user root`: run as root (CI), mosquitto would switch to a user
        // who cannot read the test's folder; a listener of a config file
        // takes anonymous clients only when told.
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts (scripts/setup-deps.sh installs it)");
        wait_until("mosquitto listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let mut sub = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "cudainfer/#", "-v", "-q", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts (package mosquitto-clients)");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (out, store) = (sub.stdout.take().unwrap(), received.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Some((topic, payload)) = line.split_once(' ') else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
                let source = v["source"].as_str().unwrap_or("?").to_string();
                store.lock().unwrap().push((topic.to_string(), source));
            }
        });
        // The subscription is in place before anything is published.
        std::thread::sleep(Duration::from_millis(500));
        Broker {
            child,
            sub,
            port,
            received,
        }
    }

    /// Messages per camera, and the topics each camera's came on.
    fn by_camera(&self) -> BTreeMap<String, (usize, Vec<String>)> {
        let mut map: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for (topic, camera) in self.received.lock().unwrap().iter() {
            let e = map.entry(camera.clone()).or_default();
            e.0 += 1;
            if !e.1.contains(topic) {
                e.1.push(topic.clone());
            }
        }
        map
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.sub.kill();
        let _ = self.sub.wait();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus (Debian's package) scraping the instances every second with
/// the API token.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Prometheus {
    fn start(
        dir: &Path,
        token_file: &Path,
        targets: &[std::net::SocketAddr],
    ) -> Option<Prometheus> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("SKIPPED the Prometheus part: prometheus is not installed (scripts/setup-deps.sh installs it)");
            return None;
        }
        let port = free_port();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cudainfer\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: [{}]\n",
                token_file.display(),
                list.join(", ")
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        wait_until("prometheus listening", Duration::from_secs(30), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Some(Prometheus { child, addr })
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http(self.addr, "GET", path, None, None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three instances share a list of six file cameras, each publishing to one
/// broker on a topic of its own: every camera's results come from exactly
/// one instance, the one its id hashes to; Prometheus finds the three up and
/// their frame counters equal the messages received; an instance killed is
/// started again and its cameras publish again.
#[test]
fn three_shards_share_a_list() {
    // Like the publisher's MQTT tests: where no broker is installed (the
    // GStreamer 1.26 chroot), say so and pass on.
    let missing: Vec<&str> = ["mosquitto", "mosquitto_sub"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if !missing.is_empty() {
        println!(
            "SKIPPED: {} not installed (scripts/setup-deps.sh installs mosquitto and mosquitto-clients)",
            missing.join(" and ")
        );
        return;
    }
    let runner = Runner::from_env();
    let dir = temp_dir("shards");
    let token_file = write_token(&dir);
    let uris: Vec<String> = (0..6)
        .map(|i| {
            // Six clips of their own: six different cameras.
            let clip = small_clip(&dir, FRAMES + i);
            format!("file://{}", clip.display())
        })
        .collect();
    let ids = ids_for(&uris.iter().map(String::as_str).collect::<Vec<_>>());
    let frames: BTreeMap<&str, u32> = ids.iter().map(String::as_str).zip(FRAMES..).collect();
    let list: Vec<String> = uris.iter().map(|u| format!("\"{u}\"")).collect();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{}\"\ntoken-file = \"{}\"\nonce = true\ncameras = [{}]\n",
            canonical_models().join("yolox_nano.onnx").display(),
            token_file.display(),
            list.join(", ")
        ),
    )
    .unwrap();
    let broker = Broker::start(&dir);
    let ports: Vec<u16> = (0..SHARDS).map(|_| free_port()).collect();
    let instances: Vec<Instance> = (0..SHARDS)
        .map(|i| {
            let mut args = vec![
                "--config".to_string(),
                config.display().to_string(),
                "--http".into(),
                format!("127.0.0.1:{}", ports[i as usize]),
                "--mqtt".into(),
                format!("mqtt://127.0.0.1:{}/cudainfer/shard-{i}", broker.port),
            ];
            // The last takes its shard from the environment, as a
            // StatefulSet's pod does.
            let mut env = Vec::new();
            if i + 1 == SHARDS {
                env.push(("CUDAINFER_SHARD".to_string(), format!("{i}/{SHARDS}")));
            } else {
                args.extend(["--shard".to_string(), format!("{i}/{SHARDS}")]);
            }
            Instance::start(&runner, &format!("cudainfer-shard-{i}"), args, env)
        })
        .collect();
    let apis: Vec<std::net::SocketAddr> = ports
        .iter()
        .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let prometheus = Prometheus::start(&dir, &token_file, &apis);

    // Every camera's clip, once, from one instance: the one of its shard.
    let complete = |times: usize| {
        let got = broker.by_camera();
        frames.iter().all(|(id, n)| {
            got.get(*id)
                .is_some_and(|(count, _)| *count >= times * *n as usize)
        })
    };
    wait_until(
        "every camera's clip over MQTT",
        Duration::from_secs(120),
        || complete(1),
    );
    std::thread::sleep(Duration::from_secs(1));
    let got = broker.by_camera();
    println!("messages by camera: {got:?}");
    assert_eq!(got.len(), ids.len(), "a camera from nowhere: {got:?}");
    for (id, n) in &frames {
        let (count, topics) = &got[*id];
        assert_eq!(*count, *n as usize, "{id}: {count} messages for {n} frames");
        let owner = (0..SHARDS)
            .find(|&index| {
                Shard {
                    index,
                    count: SHARDS,
                }
                .runs(id)
            })
            .unwrap();
        assert_eq!(topics, &[format!("cudainfer/shard-{owner}")], "{id}");
    }

    if let Some(prometheus) = &prometheus {
        // Every target up, and the counters equal the messages received.
        wait_until("the counters scraped", Duration::from_secs(30), || {
            let targets = prometheus.api("/api/v1/targets");
            let up = targets["data"]["activeTargets"]
                .as_array()
                .is_some_and(|t| t.len() == apis.len() && t.iter().all(|t| t["health"] == "up"));
            let result = prometheus.api("/api/v1/query?query=cudainfer_camera_frames_out_total");
            let counted: BTreeMap<String, f64> = result["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r["metric"]["camera"].as_str().unwrap_or("").to_string(),
                        r["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0),
                    )
                })
                .collect();
            up && frames
                .iter()
                .all(|(id, n)| counted.get(*id) == Some(&f64::from(*n)))
        });
        println!("prometheus: 3 targets up, frame counters equal the MQTT messages");
    }

    // A crash: the instance is started again, and its cameras play again.
    let victim = (0..SHARDS as usize)
        .find(|&i| {
            ids.iter().any(|id| {
                Shard {
                    index: i as u32,
                    count: SHARDS,
                }
                .runs(id)
            })
        })
        .unwrap();
    instances[victim].crash();
    let theirs: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| {
            Shard {
                index: victim as u32,
                count: SHARDS,
            }
            .runs(id)
        })
        .collect();
    let resumed = std::time::Instant::now();
    wait_until(
        "the crashed instance's cameras publishing again",
        Duration::from_secs(90),
        || {
            let got = broker.by_camera();
            theirs
                .iter()
                .all(|id| got[*id].0 >= 2 * frames[id] as usize)
        },
    );
    println!(
        "instance {victim} ({} cameras) crashed and its cameras played again within {:.1} s",
        theirs.len(),
        resumed.elapsed().as_secs_f64()
    );
    wait_until("the instance ready again", Duration::from_secs(30), || {
        http(apis[victim], "GET", "/readyz", None, None).0 == 200
    });
    // The other instances' cameras did not play again.
    let got = broker.by_camera();
    for (id, n) in frames.iter().filter(|(id, _)| !theirs.contains(id)) {
        assert_eq!(got[*id].0, *n as usize, "{id}: {:?}", instances[0].logs());
    }
    drop(prometheus);
    drop(instances);
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}
