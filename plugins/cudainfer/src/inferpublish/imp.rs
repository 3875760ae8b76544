use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::location::{Location, MqttTarget};
use super::mqtt::{Counts, Flushed, MqttConfig, MqttEvent, Publisher, Pushed};
use super::record::{self, FrameInfo};
use super::{credentials, tls};
use crate::properties::{may_change_now, path_property, MUTABLE_READY};
use crate::FrameDetections;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "inferpublish",
        gst::DebugColorFlags::empty(),
        Some("Inference results as JSON lines"),
    )
});

const DEFAULT_LOCATION: &str = "-";
const DEFAULT_MQTT_QOS: u32 = 1;
const DEFAULT_MAX_QUEUED: u32 = 1000;
const DEFAULT_FLUSH_TIMEOUT_MS: u32 = 5000;
/// Drops are reported at most this often (a broker outage drops a frame's
/// message per frame).
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    source: Option<String>,
    mqtt_qos: u32,
    max_queued: u32,
    credentials_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    client_id: Option<String>,
    flush_timeout_ms: u32,
    append: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: DEFAULT_LOCATION.into(),
            source: None,
            mqtt_qos: DEFAULT_MQTT_QOS,
            max_queued: DEFAULT_MAX_QUEUED,
            credentials_file: None,
            ca_file: None,
            client_id: None,
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            append: false,
        }
    }
}

enum Output {
    Lines {
        writer: Box<dyn Write + Send>,
        /// The path, or "stdout", for error messages.
        name: String,
        /// The file written, which `reopen` opens again (none for stdout).
        path: Option<PathBuf>,
    },
    Mqtt {
        publisher: Arc<Publisher>,
        target: MqttTarget,
    },
}

struct State {
    output: Output,
    source: String,
    stream_id: Option<String>,
    seq: u64,
    width: u32,
    height: u32,
    last_drop_report: Option<Instant>,
}

#[derive(Default)]
pub struct InferPublish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Lines written or messages the broker confirmed; kept after stop.
    published: AtomicU64,
    dropped: AtomicU64,
    /// One warning per broker outage, one error per refusal or rejected
    /// certificate: shared with the MQTT thread's event handler.
    events: Arc<EventFlags>,
}

#[derive(Default)]
struct EventFlags {
    unreachable_warned: AtomicBool,
    error_reported: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for InferPublish {
    const NAME: &'static str = "GstInferPublish";
    type Type = super::InferPublish;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for InferPublish {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_passthrough(true);
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![glib::subclass::Signal::builder("reopen")
                .action()
                .return_type::<bool>()
                .class_handler(|args| {
                    let element = args[0]
                        .get::<super::InferPublish>()
                        .expect("the signal's instance");
                    Some(element.imp().reopen().to_value())
                })
                .build()]
        });
        SIGNALS.as_ref()
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("Where the JSON lines go: a file path (created or truncated at start), '-' or \
                            'stdout', mqtt://host:port/topic, or mqtts://host:port/topic over TLS. No user \
                            name or password here: see credentials-file")
                    .default_value(Some(DEFAULT_LOCATION))
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("source")
                    .nick("Source name")
                    .blurb("The 'source' field of every line, naming the camera or stream; unset: the element's name")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("mqtt-qos")
                    .nick("MQTT QoS")
                    .blurb("MQTT quality of service: 1, at least once (a message leaves the queue when the \
                            broker acknowledges it, so 'dropped' counts exactly what was lost); 0, at most once \
                            (a message leaves the queue once written to the connection)")
                    .maximum(1)
                    .default_value(DEFAULT_MQTT_QOS)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("max-queued")
                    .nick("Maximum queued messages")
                    .blurb("MQTT messages kept while the broker is slow or unreachable; when full, the oldest \
                            is dropped (counted in 'dropped', with a warning): the video thread never waits")
                    .minimum(1)
                    .maximum(1_000_000)
                    .default_value(DEFAULT_MAX_QUEUED)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("credentials-file")
                    .nick("Credentials file")
                    .blurb("File whose first line is user:password for the MQTT broker; unset: the environment \
                            variables CUDAINFER_MQTT_USERNAME and CUDAINFER_MQTT_PASSWORD, else none. \
                            Never logged")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("ca-file")
                    .nick("CA file")
                    .blurb("PEM file of the CA certificate(s) that sign the broker's certificate (mqtts://); \
                            unset: the system's CA certificates")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("client-id")
                    .nick("MQTT client id")
                    .blurb("MQTT client identifier; unset: cudainfer-<host name>-<process id>-<element name>")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("flush-timeout")
                    .nick("Flush timeout (ms)")
                    .blurb("At EOS, longest wait in milliseconds for queued MQTT messages to be acknowledged \
                            before EOS goes on; what is left then counts as dropped")
                    .maximum(600_000)
                    .default_value(DEFAULT_FLUSH_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("append")
                    .nick("Append")
                    .blurb("Open the results file for appending instead of truncating it, so that several \
                            elements (cameras) and restarts write to one file; each line is one write, so \
                            lines of different elements do not interleave")
                    .default_value(false)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt64::builder("published")
                    .nick("Published")
                    .blurb("Lines written, or MQTT messages the broker accepted (acknowledged at QoS 1), \
                            since start (kept after stop)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("dropped")
                    .nick("Dropped")
                    .blurb("MQTT messages dropped since start (queue full, or not delivered by stop); \
                            frames = published + dropped once stopped at QoS 1 (kept after stop)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if !may_change_now(self.obj().upcast_ref(), *CAT, pspec) {
            return;
        }
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => {
                s.location = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "source" => {
                s.source = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty())
            }
            "mqtt-qos" => s.mqtt_qos = value.get().expect("type checked upstream"),
            "max-queued" => s.max_queued = value.get().expect("type checked upstream"),
            "credentials-file" => s.credentials_file = path_property(value),
            "ca-file" => s.ca_file = path_property(value),
            "client-id" => {
                s.client_id = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty())
            }
            "flush-timeout" => s.flush_timeout_ms = value.get().expect("type checked upstream"),
            "append" => s.append = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match pspec.name() {
            "location" => s.location.to_value(),
            "source" => s
                .source
                .clone()
                .unwrap_or_else(|| self.obj().name().to_string())
                .to_value(),
            "mqtt-qos" => s.mqtt_qos.to_value(),
            "max-queued" => s.max_queued.to_value(),
            "credentials-file" => path(&s.credentials_file).to_value(),
            "ca-file" => path(&s.ca_file).to_value(),
            "client-id" => s.client_id.to_value(),
            "flush-timeout" => s.flush_timeout_ms.to_value(),
            "append" => s.append.to_value(),
            "published" | "dropped" => {
                drop(s);
                let counts = self.counts();
                if pspec.name() == "published" {
                    counts.published.to_value()
                } else {
                    counts.dropped.to_value()
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl InferPublish {
    /// Live counts while running, the final ones after stop.
    fn counts(&self) -> Counts {
        let publisher = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| match &s.output {
                Output::Mqtt { publisher, .. } => Some(publisher.clone()),
                Output::Lines { .. } => None,
            });
        match publisher {
            Some(p) => p.counts(),
            None => Counts {
                published: self.published.load(Ordering::Relaxed),
                dropped: self.dropped.load(Ordering::Relaxed),
            },
        }
    }

    /// The `reopen` action: a results file is opened again by its path,
    /// for appending, so that lines go to a new file once the old one was
    /// moved away (log rotation). True when a file was reopened; false for
    /// stdout, MQTT or a stopped element. What is at the path must be a
    /// regular file (or nothing, then one is made); anything else (a FIFO,
    /// which would block the caller until a reader came, a device, a
    /// directory) or a failed open keeps the old file, with a warning. The
    /// open happens outside the element's lock, so lines go on meanwhile.
    fn reopen(&self) -> bool {
        let path = match self.state.lock().unwrap().as_ref().map(|s| &s.output) {
            Some(Output::Lines {
                path: Some(path), ..
            }) => path.clone(),
            _ => return false,
        };
        let opened = open_regular_for_append(&path);
        let mut guard = self.state.lock().unwrap();
        let Some(Output::Lines {
            writer,
            name,
            path: Some(current),
        }) = guard.as_mut().map(|s| &mut s.output)
        else {
            return false;
        };
        if *current != path {
            return false;
        }
        match opened {
            Ok(file) => {
                *writer = Box::new(file);
                true
            }
            Err(e) => {
                let name = name.clone();
                drop(guard);
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::OpenWrite,
                    ("cannot reopen the results file {name}, still writing the old one: {e}")
                );
                false
            }
        }
    }

    fn open(&self, settings: &Settings) -> Result<Output, gst::ErrorMessage> {
        let location: Location = settings
            .location
            .parse()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?;
        match location {
            Location::Stdout => Ok(Output::Lines {
                writer: Box::new(std::io::stdout()),
                name: "stdout".into(),
                path: None,
            }),
            Location::File(path) => {
                let file = open_for_writing(&path, settings.append).map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::OpenWrite,
                        (
                            "cannot open the results file '{}' for writing: {e}: set location to a writable \
                             file path, '-' for stdout, or mqtt://host:port/topic",
                            path.display()
                        )
                    )
                })?;
                Ok(Output::Lines {
                    // Unbuffered: each line goes out in one write (below).
                    writer: Box::new(file),
                    name: format!("'{}'", path.display()),
                    path: Some(path),
                })
            }
            Location::Mqtt(target) => self.connect(settings, target),
        }
    }

    fn connect(
        &self,
        settings: &Settings,
        target: MqttTarget,
    ) -> Result<Output, gst::ErrorMessage> {
        let credentials = credentials::load(settings.credentials_file.as_deref())
            .map_err(|e| gst::error_msg!(gst::ResourceError::NotAuthorized, ("{e}")))?;
        let tls = if target.tls {
            Some(
                tls::client_config(settings.ca_file.as_deref())
                    .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?,
            )
        } else {
            None
        };
        let client_id = settings.client_id.clone().unwrap_or_else(|| {
            // The host name too: in containers every process may be pid 1.
            format!(
                "cudainfer-{}-{}-{}",
                glib::host_name(),
                std::process::id(),
                self.obj().name()
            )
        });
        gst::info!(
            CAT,
            imp = self,
            "publishing to {target} as client {client_id} at QoS {}, {}",
            settings.mqtt_qos,
            if credentials.is_some() {
                "with a user name and password"
            } else {
                "anonymously"
            }
        );
        self.events
            .unreachable_warned
            .store(false, Ordering::Relaxed);
        self.events.error_reported.store(false, Ordering::Relaxed);
        let weak = self.obj().downgrade();
        let events = self.events.clone();
        let shown = target.to_string();
        let ca_file = settings.ca_file.clone();
        let publisher = Publisher::start(
            MqttConfig {
                target: target.clone(),
                qos1: settings.mqtt_qos == 1,
                client_id,
                credentials,
                tls,
                max_queued: settings.max_queued as usize,
            },
            move |event| {
                if let Some(obj) = weak.upgrade() {
                    obj.imp()
                        .on_mqtt_event(event, &shown, ca_file.as_deref(), &events);
                }
            },
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Failed,
                ("cannot start the MQTT thread: {e}")
            )
        })?;
        Ok(Output::Mqtt {
            publisher: Arc::new(publisher),
            target,
        })
    }

    /// Runs on the MQTT thread.
    fn on_mqtt_event(
        &self,
        event: MqttEvent,
        target: &str,
        ca_file: Option<&Path>,
        flags: &EventFlags,
    ) {
        match event {
            MqttEvent::Connected => {
                gst::info!(CAT, imp = self, "connected to {target}");
                if flags.unreachable_warned.swap(false, Ordering::Relaxed) {
                    gst::element_imp_info!(
                        self,
                        gst::ResourceError::Write,
                        ("reconnected to the MQTT broker at {target}")
                    );
                }
            }
            MqttEvent::Unreachable { error, retry_in } => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "{target}: {error}; retrying in {retry_in:?}"
                );
                if !flags.unreachable_warned.swap(true, Ordering::Relaxed) {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        (
                            "cannot reach the MQTT broker at {target} ({error}): retrying; results are queued \
                             up to max-queued, then the oldest are dropped"
                        )
                    );
                }
            }
            MqttEvent::Refused(reason) => {
                gst::debug!(CAT, imp = self, "{target} refused the connection: {reason}");
                if !flags.error_reported.swap(true, Ordering::Relaxed) {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::NotAuthorized,
                        (
                            "the MQTT broker at {target} refused the connection: {reason}: check credentials-file \
                             (or CUDAINFER_MQTT_USERNAME and CUDAINFER_MQTT_PASSWORD) and client-id"
                        )
                    );
                }
            }
            MqttEvent::CertificateRejected(error) => {
                let rejected = tls::Rejected {
                    error: &error,
                    ca_file,
                };
                gst::debug!(CAT, imp = self, "{target}: {rejected}");
                if !flags.error_reported.swap(true, Ordering::Relaxed) {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Settings,
                        ("cannot connect to the MQTT broker at {target} over TLS: {rejected}")
                    );
                }
            }
        }
    }

    /// Tells the application that messages were dropped: a warning and an
    /// element message `inferpublish-dropped` (fields `dropped`, `reason`).
    fn report_drop(&self, pushed: &Pushed, dropped: u64) {
        let reason = match pushed {
            Pushed::TooLarge => "a frame's results are larger than 4 MiB",
            _ => "the queue is full (max-queued): the broker is unreachable or slower than the frames",
        };
        gst::element_imp_warning!(
            self,
            gst::ResourceError::Write,
            ("dropped MQTT results ({reason}); {dropped} dropped so far")
        );
        let obj = self.obj();
        let s = gst::Structure::builder("inferpublish-dropped")
            .field("dropped", dropped)
            .field("reason", reason)
            .build();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }
}

impl GstObjectImpl for InferPublish {}

impl ElementImpl for InferPublish {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Inference results publisher",
                "Filter/Analyzer/Video",
                "Writes each frame's inference results as a JSON line to a file, stdout or an MQTT broker; \
                 the frame passes through",
                "gst-cudainfer developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::metadata_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for InferPublish {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let output = self.open(&settings)?;
        self.published.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        *self.state.lock().unwrap() = Some(State {
            output,
            source: settings
                .source
                .clone()
                .unwrap_or_else(|| self.obj().name().to_string()),
            stream_id: None,
            seq: 0,
            width: 0,
            height: 0,
            last_drop_report: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(state) = self.state.lock().unwrap().take() else {
            return Ok(());
        };
        match state.output {
            Output::Lines {
                mut writer, name, ..
            } => {
                // Every line was flushed when written; what is left is a line whose write
                // failed, already reported as an element error.
                if let Err(e) = writer.flush() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "{name}: unwritten data dropped at stop: {e}"
                    );
                }
            }
            Output::Mqtt { publisher, .. } => {
                let counts = publisher.stop();
                self.published.store(counts.published, Ordering::Relaxed);
                self.dropped.store(counts.dropped, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "caps {incaps} are not video"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.width = info.width();
            state.height = info.height();
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::StreamStart(s) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.stream_id = Some(s.stream_id().to_string());
                }
            }
            gst::EventView::Eos(_) => self.flush_at_eos(),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buffer: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let running_time = self
            .obj()
            .segment()
            .downcast_ref::<gst::ClockTime>()
            .and_then(|segment| segment.to_running_time(buffer.pts()));
        let results = FrameDetections::from_buffer(buffer);
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let line = record::to_json_line(
            &FrameInfo {
                source: &state.source,
                stream_id: state.stream_id.as_deref(),
                seq: state.seq,
                pts: buffer.pts(),
                running_time,
                width: state.width,
                height: state.height,
            },
            results.as_deref(),
        );
        state.seq += 1;
        match &mut state.output {
            Output::Lines { writer, name, .. } => {
                // One write per line, flushed: a reader tailing the file sees whole frames, lines
                // of elements sharing stdout or an appended file do not interleave, and a full
                // disk fails this frame rather than one much later.
                let mut line = line;
                line.push(b'\n');
                let written = writer.write_all(&line).and_then(|_| writer.flush());
                if let Err(e) = written {
                    let name = name.clone();
                    drop(guard);
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        ("cannot write results to {name}: {e}")
                    );
                    return Err(gst::FlowError::Error);
                }
                self.published.fetch_add(1, Ordering::Relaxed);
            }
            Output::Mqtt { publisher, .. } => {
                let pushed = publisher.push(line);
                if pushed != Pushed::Queued {
                    let now = Instant::now();
                    let due = state
                        .last_drop_report
                        .is_none_or(|t| now.duration_since(t) >= DROP_REPORT_INTERVAL);
                    if due {
                        state.last_drop_report = Some(now);
                        let dropped = publisher.counts().dropped;
                        // Posted without the state lock: a bus handler may read our properties.
                        drop(guard);
                        self.report_drop(&pushed, dropped);
                    }
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl InferPublish {
    /// EOS: wait (up to flush-timeout) for the broker to take the queue.
    fn flush_at_eos(&self) {
        let publisher = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| match &s.output {
                Output::Mqtt { publisher, target } => Some((publisher.clone(), target.to_string())),
                Output::Lines { .. } => None,
            });
        let Some((publisher, target)) = publisher else {
            return;
        };
        let timeout_ms = self.settings.lock().unwrap().flush_timeout_ms;
        match publisher.flush(Duration::from_millis(timeout_ms.into())) {
            Flushed::All => {}
            Flushed::TimedOut(left) => gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "{left} results were not delivered to {target} within flush-timeout ({timeout_ms} ms): \
                     they count as dropped"
                )
            ),
            // Already an error: waiting out flush-timeout would only delay the stop.
            Flushed::Refused(left) => gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "{left} results were not delivered to {target}, which refused the connection (see the \
                     error): they count as dropped"
                )
            ),
        }
    }
}

/// Opens `path` for writing (made if missing; appended to or truncated)
/// without waiting: a FIFO must already have its reader (else an error that
/// says so), where a plain open would block its caller until one came. The
/// file's writes then block as usual.
fn open_for_writing(path: &Path, append: bool) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = File::options()
        .write(true)
        .append(append)
        .truncate(!append)
        .create(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                std::io::Error::other("a FIFO with no reader: start its reader first")
            } else {
                e
            }
        })?;
    // SAFETY: fcntl on a descriptor this function owns and keeps open; it
    // only changes the file status flags.
    let cleared = unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        flags >= 0 && libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(std::io::Error::last_os_error());
    }
    if append {
        end_the_last_line(&mut file)?;
    }
    Ok(file)
}

/// Ends a regular file's last line if it has no newline (a write cut short
/// by a full disk or a crash): the next record then starts a line of its
/// own instead of being glued to the fragment.
fn end_the_last_line(file: &mut File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    // Read through a descriptor of its own: the file is opened write-only,
    // since a FIFO opened for reading too would need no reader and then
    // fill and block.
    use std::os::fd::AsRawFd;
    let reader = File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let mut last = [0u8];
    reader.read_exact_at(&mut last, meta.len() - 1)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// Opens `path` for appending (made if missing) without blocking, and only
/// if it is a regular file.
fn open_regular_for_append(path: &Path) -> std::io::Result<File> {
    let file = open_for_writing(path, true)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory)",
        ));
    }
    Ok(file)
}
