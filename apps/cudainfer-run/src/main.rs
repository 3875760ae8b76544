//! cudainfer-run: the cudainfer elements as a multi-camera service.
//!
//! Each camera is its own GstPipeline (see `pipeline`) run and restarted by
//! its own thread (see `camera`); inference sessions are shared by all of
//! them inside `trtinfer`. A REST API changes the set while running and
//! serves Prometheus metrics (`http`); SIGINT/SIGTERM end every camera with
//! EOS so that the outputs are flushed; SIGHUP reopens the results file
//! (log rotation).

mod camera;
mod config;
mod http;
mod locked;
mod log;
mod metrics;
mod pipeline;
mod service;
mod snapshot;
mod stats;
mod status;

use std::io::IsTerminal;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Command;
use crate::log::Level;
use crate::stats::CameraState;

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("GStreamer: {0}")]
    Gst(#[from] glib::Error),
    #[error("cannot register the cudainfer elements: {0}")]
    Register(#[from] glib::BoolError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("cannot watch SIGINT/SIGTERM/SIGHUP: {0}")]
    Signals(std::io::Error),
    #[error("no cameras: give camera URIs, or --http to add them through the API")]
    NoCameras,
    #[error("the model cannot run with these settings: {0}")]
    Inference(String),
    #[error("camera {0}: {1}")]
    Camera(String, service::AddError),
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("cudainfer-run: {e}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<(), RunError> {
    let config = match config::parse_args(std::env::args_os())? {
        Command::Help => {
            print!("{}", config::USAGE);
            return Ok(());
        }
        Command::Run(c) => *c,
    };
    if config.listed == 0 && config.http.is_none() {
        return Err(RunError::NoCameras);
    }
    gst::init()?;
    gstcudainfer::plugin_register_static()?;
    let gpu = pipeline::rank_decoders(config.decode, &config.gpus);
    let gpus = config::device_list(&config.gpus);
    if config.decode == config::Decode::Gpu && !gpu {
        log::event(
            Level::Warn,
            "no_gpu_decoder",
            &[("gpus", &gpus), ("using", &"cpu decoding")],
        );
    }
    let settings = pipeline::PipelineSettings::new(&config, gpu);
    // Each GPU's session, once: a device without the model's provider
    // stops the start as one GPU would.
    let devices = if gpu {
        config.gpus.clone()
    } else {
        vec![config.device_id]
    };
    for device in devices {
        let on = pipeline::PipelineSettings {
            device_id: device,
            ..settings.clone()
        };
        pipeline::check_inference(&on).map_err(|e| {
            // trtinfer's advice names its ort-library property, which the
            // service does not have: here the environment is the way.
            RunError::Inference(e.replace(
                "the ort-library property or ORT_DYLIB_PATH",
                "ORT_DYLIB_PATH (cudainfer-run's environment)",
            ))
        })?;
    }
    let fd_limit = raise_fd_limit();
    log::event(
        Level::Info,
        "service_starting",
        &[
            ("model", &settings.model),
            ("decode", &if gpu { "gpu" } else { "cpu" }),
            ("providers", &settings.providers),
            ("gpus", &if gpu { gpus.as_str() } else { "none" }),
            ("cameras", &config.cameras.len()),
            ("listed", &config.listed),
            ("open_files", &fd_limit),
            (
                "shard",
                &config
                    .shard
                    .map_or_else(|| "none".to_string(), |s| s.to_string()),
            ),
        ],
    );
    let service = Arc::new(service::Service::new(
        settings,
        config.loop_files,
        config.allow_dirs.clone(),
        config.max_cameras,
        config.shard,
    ));

    let (tx, signals_rx) = mpsc::channel();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(RunError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let _ = tx.send(signal);
            }
        })
        .map_err(RunError::Signals)?;

    for listed in config.cameras.iter().cloned() {
        let shown = format!("{} ({})", listed.id, listed.uri.redacted());
        if let Err(e) = service.add_listed(listed.id, listed.uri) {
            service.shutdown();
            return Err(RunError::Camera(shown, e));
        }
    }
    let api = match config.http {
        Some(addr) => match http::serve(
            addr,
            config.token.clone(),
            config.metrics_without_token,
            service.clone(),
            fd_limit,
        ) {
            Ok(api) => {
                log::event(
                    Level::Info,
                    "api_listening",
                    &[("addr", &api.addr), ("token", &config.token.is_some())],
                );
                Some(api)
            }
            Err(e) => {
                service.shutdown();
                return Err(e.into());
            }
        },
        None => None,
    };
    if config
        .status
        .unwrap_or_else(|| std::io::stderr().is_terminal())
    {
        status::spawn(service.clone());
    }

    loop {
        match signals_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(SIGHUP) => {
                let reopened = service.reopen_outputs();
                log::event(
                    Level::Info,
                    "outputs_reopened",
                    &[("signal", &"SIGHUP"), ("elements", &reopened)],
                );
            }
            Ok(signal) => {
                log::event(Level::Info, "shutting_down", &[("signal", &signal)]);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Without the API nothing can come: end once every camera has. A
        // shard that got none of the list idles as a member of its set.
        let cameras = service.list();
        if config.http.is_none()
            && !config.cameras.is_empty()
            && cameras
                .iter()
                .all(|c| c.stats.state() == CameraState::Finished)
        {
            log::event(Level::Info, "all_cameras_finished", &[]);
            break;
        }
    }
    if let Some(api) = api {
        api.shutdown();
    }
    service.shutdown();
    log::event(Level::Info, "service_stopped", &[]);
    Ok(())
}

/// Raises the soft limit on open files to the hard one (as Go's runtime
/// does: the soft default of 1,024 is for programs that `select()`), and
/// returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given, which lives here.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    limit.rlim_cur
}
