//! Progress on stderr: one bar a blob (bytes and rate) when stderr is a
//! terminal, plain lines otherwise, nothing when quiet.

use crate::digest::Digest;
use crate::ops::progress::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

pub enum Reporter {
    Quiet,
    Lines,
    Bars { multi: MultiProgress, bars: Mutex<HashMap<Digest, ProgressBar>> },
}

impl Reporter {
    /// Bars on a terminal, lines elsewhere, nothing with `quiet`.
    pub fn new(quiet: bool) -> Reporter {
        if quiet {
            Reporter::Quiet
        } else if std::io::stderr().is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb") {
            Reporter::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Reporter::Lines
        }
    }
}

impl Progress for Reporter {
    fn line(&self, msg: &str) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!("{msg}"),
            Reporter::Bars { multi, .. } => {
                // Per-blob lines are shown by the bars.
                if !msg.starts_with("Copying blob ") && !msg.starts_with("Copying config ") {
                    let _ = multi.println(msg);
                }
            }
        }
    }

    fn blob_start(&self, d: &Digest, size: u64, done: u64) {
        if let Reporter::Bars { multi, bars } = self {
            let bar = multi.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template(
                "{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(format!("blob {}", d.short()));
            bar.set_position(done);
            if let Ok(mut b) = bars.lock() {
                b.insert(d.clone(), bar);
            }
        }
    }

    fn blob_bytes(&self, d: &Digest, done: u64) {
        if let Reporter::Bars { bars, .. } = self {
            if let Some(b) = bars.lock().ok().and_then(|b| b.get(d).cloned()) {
                b.set_position(done);
            }
        }
    }

    fn blob_end(&self, d: &Digest, ok: bool) {
        if let Reporter::Bars { bars, .. } = self {
            if let Some(b) = bars.lock().ok().and_then(|mut b| b.remove(d)) {
                if ok {
                    b.finish();
                } else {
                    b.abandon();
                }
            }
        }
    }
}
