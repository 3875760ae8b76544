//! Publishing JSON lines to an MQTT broker without ever blocking the video
//! thread: [`Publisher::push`] appends to a bounded queue (the oldest
//! message goes when it is full, and is counted), and a background thread
//! with its own single-threaded tokio runtime drives rumqttc: it connects,
//! publishes one message at a time, takes it off the books only once the
//! broker confirmed it (PUBACK at QoS 1; written to the socket at QoS 0),
//! puts it back at the head of the queue when the connection drops, and
//! reconnects with exponential backoff. So every pushed message ends up
//! either published or counted as dropped; at QoS 1 that is exact (a
//! message whose PUBACK was lost may arrive twice), at QoS 0 a message
//! written just before the connection died can be lost uncounted.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, TlsError, Transport,
};

use super::credentials::Credentials;
use super::location::MqttTarget;
use super::queue::DropOldest;

/// First wait after a failed connection; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest message: far above any frame's results, below brokers' limits.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

pub struct MqttConfig {
    pub target: MqttTarget,
    pub qos1: bool,
    pub client_id: String,
    pub credentials: Option<Credentials>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_queued: usize,
}

/// What the background thread reports to the element.
#[derive(Debug)]
pub enum MqttEvent {
    Connected,
    /// Connecting failed or the connection was lost; retried after `retry_in`.
    Unreachable {
        error: String,
        retry_in: Duration,
    },
    /// The broker answered the connection with a refusal (credentials,
    /// client id, protocol); retried all the same.
    Refused(&'static str),
    /// The TLS handshake failed on the broker's certificate (untrusted,
    /// wrong name, expired): a setting to fix, retried all the same.
    CertificateRejected(rustls::CertificateError),
}

/// What became of a pushed message.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and the oldest queued message was dropped for it.
    DroppedOldest,
    /// Larger than [`MAX_MESSAGE`]: dropped.
    TooLarge,
}

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Every queued message was confirmed.
    All,
    /// This many were still waiting at the timeout.
    TimedOut(usize),
    /// This many were waiting when the broker refused the connection or
    /// its certificate was rejected.
    Refused(usize),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub published: u64,
    pub dropped: u64,
}

struct State {
    queue: DropOldest,
    /// The message handed to rumqttc and not yet confirmed.
    in_flight: Option<Vec<u8>>,
    connected: bool,
    /// The last attempt was refused or the broker's certificate rejected:
    /// nothing will be delivered until a setting changes, so flush need not wait.
    refused: bool,
    stop: bool,
    counts: Counts,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a message is confirmed or dropped (for flush).
    settled: Condvar,
    wake_feeder: tokio::sync::Notify,
    stop_poller: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn confirm(&self) {
        let mut s = self.lock();
        if s.in_flight.take().is_some() {
            s.counts.published += 1;
        }
        drop(s);
        self.settled.notify_all();
        self.wake_feeder.notify_one();
    }

    /// The connection is gone: the unconfirmed message goes back to the
    /// head of the queue (dropped, and counted, if the queue filled up).
    fn disconnected(&self) {
        let mut s = self.lock();
        s.connected = false;
        if let Some(msg) = s.in_flight.take() {
            if !s.queue.push_front(msg) {
                s.counts.dropped += 1;
            }
        }
        drop(s);
        self.settled.notify_all();
    }
}

pub struct Publisher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Publisher {
    /// Starts the background thread; it connects on its own.
    pub fn start(
        config: MqttConfig,
        on_event: impl Fn(MqttEvent) + Send + 'static,
    ) -> std::io::Result<Publisher> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: DropOldest::new(config.max_queued),
                in_flight: None,
                connected: false,
                refused: false,
                stop: false,
                counts: Counts::default(),
            }),
            settled: Condvar::new(),
            wake_feeder: tokio::sync::Notify::new(),
            stop_poller: tokio::sync::Notify::new(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("inferpublish-mqtt".into())
            .spawn(move || runtime.block_on(run(thread_shared, config, on_event)))?;
        Ok(Publisher {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `message`; never waits.
    pub fn push(&self, message: Vec<u8>) -> Pushed {
        let mut s = self.shared.lock();
        let result = if message.len() > MAX_MESSAGE {
            s.counts.dropped += 1;
            Pushed::TooLarge
        } else if s.queue.push(message) {
            s.counts.dropped += 1;
            Pushed::DroppedOldest
        } else {
            Pushed::Queued
        };
        drop(s);
        self.shared.wake_feeder.notify_one();
        result
    }

    pub fn counts(&self) -> Counts {
        self.shared.lock().counts
    }

    /// Waits up to `timeout` for every queued message to be confirmed, or
    /// until the broker refuses us.
    pub fn flush(&self, timeout: Duration) -> Flushed {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        loop {
            let waiting = s.queue.len() + usize::from(s.in_flight.is_some());
            let now = Instant::now();
            if waiting == 0 {
                return Flushed::All;
            }
            if s.refused {
                return Flushed::Refused(waiting);
            }
            if now >= deadline {
                return Flushed::TimedOut(waiting);
            }
            s = self
                .shared
                .settled
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the thread; what was never confirmed counts as dropped.
    pub fn stop(&self) -> Counts {
        self.shared.lock().stop = true;
        self.shared.stop_poller.notify_one();
        self.shared.wake_feeder.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        let mut s = self.shared.lock();
        let left = s.queue.len() + usize::from(s.in_flight.is_some());
        s.counts.dropped += left as u64;
        while s.queue.pop().is_some() {}
        s.in_flight = None;
        s.counts
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn options(config: &MqttConfig) -> MqttOptions {
    let t = &config.target;
    let mut options = MqttOptions::new(config.client_id.clone(), t.host.clone(), t.port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_MESSAGE + 1024, MAX_MESSAGE + 1024);
    if let Some(c) = &config.credentials {
        options.set_credentials(c.username.clone(), c.password.clone());
    }
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    options
}

fn refusal(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorised",
        ConnectReturnCode::BadClientId => "client id rejected",
        ConnectReturnCode::ServiceUnavailable => "service unavailable",
        ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not accepted",
        ConnectReturnCode::Success => "accepted",
    }
}

/// The certificate check that failed, when that is why connecting failed.
/// rustls' error reaches us inside the io::Error of the TLS stream.
fn rejected_certificate(error: &ConnectionError) -> Option<rustls::CertificateError> {
    let io = match error {
        ConnectionError::Tls(TlsError::TLS(rustls::Error::InvalidCertificate(e))) => {
            return Some(e.clone())
        }
        ConnectionError::Tls(TlsError::Io(io)) | ConnectionError::Io(io) => io,
        _ => return None,
    };
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(e) => Some(e.clone()),
        _ => None,
    }
}

/// The thread: polls the connection (which the feeder task publishes on)
/// until stopped, reconnecting after errors.
async fn run(shared: Arc<Shared>, config: MqttConfig, on_event: impl Fn(MqttEvent)) {
    let (client, mut eventloop) = AsyncClient::new(options(&config), 8);
    let qos = if config.qos1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let feeder = tokio::spawn(feed(
        shared.clone(),
        client,
        config.target.topic.clone(),
        qos,
    ));
    let mut backoff = MIN_BACKOFF;
    loop {
        let event = tokio::select! {
            _ = shared.stop_poller.notified() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                let mut s = shared.lock();
                s.connected = true;
                s.refused = false;
                drop(s);
                shared.wake_feeder.notify_one();
                on_event(MqttEvent::Connected);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) if config.qos1 => shared.confirm(),
            Ok(Event::Outgoing(Outgoing::Publish(_))) if !config.qos1 => shared.confirm(),
            Ok(_) => {}
            Err(error) => {
                shared.disconnected();
                let rejected = rejected_certificate(&error);
                let event = match (error, rejected) {
                    (_, Some(certificate)) => MqttEvent::CertificateRejected(certificate),
                    (ConnectionError::ConnectionRefused(code), _) => {
                        MqttEvent::Refused(refusal(code))
                    }
                    (error, None) => MqttEvent::Unreachable {
                        error: error.to_string(),
                        retry_in: backoff,
                    },
                };
                let refused = !matches!(event, MqttEvent::Unreachable { .. });
                // Reported first: the error is on the bus before a flush it ends lets EOS on.
                on_event(event);
                shared.lock().refused = refused;
                if refused {
                    shared.settled.notify_all();
                }
                tokio::select! {
                    _ = shared.stop_poller.notified() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    feeder.abort();
}

/// Hands the queue's head to rumqttc whenever connected and nothing is in
/// flight. Only while connected: rumqttc would otherwise keep the request
/// across the reconnect and send it after the copy put back in the queue.
async fn feed(shared: Arc<Shared>, client: AsyncClient, topic: String, qos: QoS) {
    loop {
        let message = {
            let mut s = shared.lock();
            if s.stop {
                return;
            }
            if s.connected && s.in_flight.is_none() {
                s.queue.pop().inspect(|m| s.in_flight = Some(m.clone()))
            } else {
                None
            }
        };
        match message {
            Some(m) => {
                if client.publish(topic.clone(), qos, false, m).await.is_err() {
                    return;
                }
            }
            None => shared.wake_feeder.notified().await,
        }
    }
}
