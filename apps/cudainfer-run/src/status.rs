//! The live status table: one line per camera, redrawn in place on stderr
//! every second (only on a terminal, or with --status).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::log::{self, printable, Level};
use crate::service::Service;

pub fn spawn(service: Arc<Service>) {
    let spawned = std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            let mut drawn = 0;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let table = render(&service);
                let mut err = std::io::stderr().lock();
                // Up over the last table and clear to the end of the screen.
                if drawn > 0 {
                    let _ = write!(err, "\x1b[{drawn}A\x1b[J");
                }
                let _ = err.write_all(table.as_bytes());
                drawn = table.lines().count();
            }
        });
    if let Err(e) = spawned {
        log::event(Level::Warn, "no_status_table", &[("error", &e)]);
    }
}

pub fn render(service: &Service) -> String {
    let mut out = format!(
        "{:<8} {:<10} {:>7} {:>9} {:>9} {:>7} {:>6} {:>8} {:>8}  {}\n",
        "camera", "state", "fps", "in", "out", "dropped", "reconn", "p50 ms", "p99 ms", "uri"
    );
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
    };
    for c in service.list() {
        let s = c.stats.snapshot();
        // A URI or error may hold any character a file name can: shown
        // escaped, never as terminal control sequences.
        let mut uri = printable(&c.uri.redacted());
        if uri.chars().count() > 48 {
            uri = format!(
                "…{}",
                uri.chars()
                    .rev()
                    .take(47)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            );
        }
        out.push_str(&format!(
            "{:<8} {:<10} {:>7.1} {:>9} {:>9} {:>7} {:>6} {:>8} {:>8}  {}\n",
            c.id,
            s.state.name(),
            s.fps,
            s.frames_in,
            s.frames_out,
            s.dropped,
            s.reconnects,
            ms(s.p50),
            ms(s.p99),
            uri
        ));
    }
    out
}
