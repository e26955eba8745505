//! Flags shared by the registry commands, and the terminal progress
//! display they use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::registry::{ClientOptions, RegistrySettings};

#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Require HTTPS and verify certificates (loopback registries may still use plain HTTP)
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
}

impl RegistryArgs {
    /// Client options: Docker's config.json for credentials,
    /// `/etc/docker/certs.d` (or `$STRATA_CERTS_D`) for registry CAs, and
    /// timeouts and attempts from the store's `config.json`.
    pub fn client_options(&self, root: &Path) -> anyhow::Result<ClientOptions> {
        let settings = RegistrySettings::for_root(root).map_err(anyhow::Error::msg)?;
        let mut options = settings.apply(ClientOptions {
            tls_verify: self.tls_verify,
            ..ClientOptions::default()
        });
        if let Some(dir) = std::env::var_os("STRATA_CERTS_D").filter(|d| !d.is_empty()) {
            options.certs_dir = PathBuf::from(dir);
        }
        Ok(options)
    }
}

/// One progress bar per layer on a terminal.
pub struct LayerBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    order: Mutex<Vec<String>>,
}

impl LayerBars {
    pub fn new() -> Self {
        LayerBars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            order: Mutex::new(Vec::new()),
        }
    }

    /// Shows `status` (and a bar while `progress` is given) on the layer's line.
    pub fn update(&self, id: &str, status: &str, progress: Option<(u64, u64)>) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(id.to_string()).or_insert_with(|| {
            if let Ok(mut order) = self.order.lock() {
                order.push(id.to_string());
            }
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(id.to_string());
            bar
        });
        match progress {
            Some((done, total)) => {
                if bar.length() != Some(total) {
                    bar.set_length(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                }
                bar.set_message(status.to_string());
                bar.set_position(done);
            }
            None => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_message(status.to_string());
                bar.tick();
            }
        }
    }

    /// Replaces the bars with one plain line per layer, its last status.
    pub fn finish(&self) {
        let (Ok(bars), Ok(order)) = (self.bars.lock(), self.order.lock()) else {
            return;
        };
        for id in order.iter() {
            if let Some(bar) = bars.get(id) {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
        for id in order.iter() {
            if let Some(bar) = bars.get(id) {
                outln!("{id}: {}", bar.message());
            }
        }
    }
}
