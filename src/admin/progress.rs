//! The CLI's view of long work (`deploy`, `rollback`, `takeover`): the
//! daemon's `GET /v1/progress` updates, drawn as progress bars (indicatif)
//! on a terminal, or as plain lines, at most one per few seconds per item,
//! elsewhere and under systemd. Updates about other services are skipped;
//! pulls name only their image, so every pull shows.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dispenser_actors::progress::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shortest time between two plain lines about one pull or one wait.
const LINE_EVERY: Duration = Duration::from_secs(3);
/// How often a spinner turns.
const TICK: Duration = Duration::from_millis(120);

/// Draws the updates about `service` on stderr.
pub struct View {
    service: Option<String>,
    style: Style,
}

enum Style {
    /// A terminal: one bar per pull and per wait.
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    /// Anything else: lines, each kind of item at most every `LINE_EVERY`.
    Lines { last: HashMap<String, Instant> },
}

/// This process's own progress drawn in the background (`takeover` without
/// a daemon, `dispenser dev`); `finish` ends it.
pub struct Local {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The bars of this process: one set, so log lines can be written above
/// them (`suspend`).
fn shared_bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Runs `write` with the bars out of the way, when there are any: the
/// logger writes its lines through it, so bars and log lines do not mix.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    match BARS_IN_USE.load(std::sync::atomic::Ordering::Relaxed) {
        true => shared_bars().suspend(write),
        false => write(),
    }
}

/// Set once a view draws bars.
static BARS_IN_USE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Draws this process's updates (every service's when `service` is `None`).
pub fn draw_local(service: Option<String>) -> Local {
    let mut receiver = dispenser_actors::progress::subscribe();
    let mut view = View::for_stderr(service);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let update = tokio::select! {
                _ = &mut stopped => break,
                update = receiver.recv() => update,
            };
            match update {
                Ok(update) => view.show(&update),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        view.finish();
    });
    Local { stop, task }
}

impl Local {
    /// Stops drawing and clears what is still drawn.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl View {
    /// Bars when stderr is a terminal and not systemd's journal, else lines.
    pub fn for_stderr(service: Option<String>) -> View {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var_os("JOURNAL_STREAM").is_none();
        View::new(service, terminal)
    }

    fn new(service: Option<String>, terminal: bool) -> View {
        let style = match terminal {
            true => {
                BARS_IN_USE.store(true, std::sync::atomic::Ordering::Relaxed);
                Style::Bars {
                    multi: shared_bars().clone(),
                    bars: HashMap::new(),
                }
            }
            false => Style::Lines {
                last: HashMap::new(),
            },
        };
        View { service, style }
    }

    /// Shows one update.
    pub fn show(&mut self, update: &Progress) {
        if let (Some(wanted), Some(about)) = (&self.service, update.service()) {
            if wanted != about {
                return;
            }
        }
        match &mut self.style {
            Style::Bars { multi, bars } => show_bar(multi, bars, update),
            Style::Lines { last } => {
                if let Some(line) = line(last, update, Instant::now()) {
                    let mut stderr = std::io::stderr().lock();
                    let _ = writeln!(stderr, "{line}");
                }
            }
        }
    }

    /// Ends every bar still drawn (the work is over).
    pub fn finish(&mut self) {
        if let Style::Bars { bars, .. } = &mut self.style {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
            }
        }
    }
}

fn show_bar(multi: &MultiProgress, bars: &mut HashMap<String, ProgressBar>, update: &Progress) {
    match update {
        Progress::Pulling {
            image,
            layers_done,
            layers,
            bytes_done,
            bytes,
        } => {
            let bar = bars.entry(format!("pull {image}")).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} pulling {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.enable_steady_tick(TICK);
                bar
            });
            bar.set_length(*bytes);
            bar.set_position(*bytes_done);
            bar.set_message(format!("{image} ({layers_done}/{layers} layers)"));
        }
        Progress::Pulled { image } => {
            if let Some(bar) = bars.remove(&format!("pull {image}")) {
                bar.finish_and_clear();
            }
            let _ = multi.println(format!("pulled {image}"));
        }
        Progress::Waiting {
            service,
            elapsed_secs,
            limit_secs,
        } => {
            let bar = bars.entry(format!("wait {service}")).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(TICK);
                bar
            });
            bar.set_message(format!(
                "waiting for {service} to be ready: {elapsed_secs}s of {limit_secs}s"
            ));
        }
        Progress::Ready { service } => {
            if let Some(bar) = bars.remove(&format!("wait {service}")) {
                bar.finish_and_clear();
            }
            let _ = multi.println(format!("{service} is ready"));
        }
    }
}

/// The plain line for `update`, unless one about the same item was printed
/// less than `LINE_EVERY` before `now` (ends are always printed).
fn line(last: &mut HashMap<String, Instant>, update: &Progress, now: Instant) -> Option<String> {
    let (key, text, always) = match update {
        Progress::Pulling {
            image,
            layers_done,
            layers,
            bytes_done,
            bytes,
        } => (
            format!("pull {image}"),
            format!(
                "pulling {image}: {layers_done}/{layers} layers, {} of {}",
                megabytes(*bytes_done),
                megabytes(*bytes)
            ),
            false,
        ),
        Progress::Pulled { image } => (format!("pull {image}"), format!("pulled {image}"), true),
        Progress::Waiting {
            service,
            elapsed_secs,
            limit_secs,
        } => (
            format!("wait {service}"),
            format!("waiting for {service} to be ready: {elapsed_secs}s of {limit_secs}s"),
            false,
        ),
        Progress::Ready { service } => (
            format!("wait {service}"),
            format!("{service} is ready"),
            true,
        ),
    };
    let recent = last
        .get(&key)
        .is_some_and(|at| now.duration_since(*at) < LINE_EVERY);
    if recent && !always {
        return None;
    }
    last.insert(key, now);
    Some(text)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_at_most_every_few_seconds_and_always_at_the_end() {
        let mut last = HashMap::new();
        let start = Instant::now();
        let waiting = |elapsed_secs| Progress::Waiting {
            service: "web".into(),
            elapsed_secs,
            limit_secs: 60,
        };
        assert_eq!(
            line(&mut last, &waiting(0), start).as_deref(),
            Some("waiting for web to be ready: 0s of 60s")
        );
        assert_eq!(
            line(&mut last, &waiting(1), start + Duration::from_secs(1)),
            None
        );
        assert!(line(&mut last, &waiting(3), start + LINE_EVERY).is_some());
        let ready = Progress::Ready {
            service: "web".into(),
        };
        assert_eq!(
            line(&mut last, &ready, start + LINE_EVERY).as_deref(),
            Some("web is ready")
        );
        let pulling = Progress::Pulling {
            image: "web:2".into(),
            layers_done: 1,
            layers: 3,
            bytes_done: 2_500_000,
            bytes: 10_000_000,
        };
        assert_eq!(
            line(&mut last, &pulling, start).as_deref(),
            Some("pulling web:2: 1/3 layers, 2.5 MB of 10.0 MB")
        );
    }

    #[test]
    fn updates_about_another_service_are_skipped() {
        let mut view = View::new(Some("web".into()), false);
        let Style::Lines { last } = &view.style else {
            panic!("lines off a terminal")
        };
        assert!(last.is_empty());
        view.show(&Progress::Ready {
            service: "db".into(),
        });
        let Style::Lines { last } = &view.style else {
            panic!("lines")
        };
        assert!(last.is_empty(), "db's update was not shown");
        view.show(&Progress::Ready {
            service: "web".into(),
        });
        let Style::Lines { last } = &view.style else {
            panic!("lines")
        };
        assert_eq!(last.len(), 1);
    }
}
