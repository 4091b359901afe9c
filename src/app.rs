//! App: the running RoomManager's parts, wired together once at start.
//!
//! Owns: the validated config, the store handle and the metrics. Later parts (accounts, rooms,
//! mailer, media plane) join here. Calls: config, store, metrics. The web layer receives an
//! `Arc<App>` and reaches every domain part through it.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub started: Instant,
}

impl App {
    /// Opens the store in the configured data dir and builds the parts around it.
    pub fn open(config: Config) -> Result<Arc<App>, StoreError> {
        let store = Store::open(&config.storage.data_dir)?;
        Ok(Arc::new(App {
            config,
            store,
            metrics: Metrics::default(),
            started: Instant::now(),
        }))
    }

    /// Closes what must be closed in order. Called once, after the server stopped serving.
    pub fn close(self: Arc<App>) {
        match Arc::try_unwrap(self) {
            Ok(app) => match app.store.close() {
                Ok(()) => tracing::info!("store closed"),
                Err(e) => tracing::error!(error = %e, "closing the store failed"),
            },
            // A connection forced closed at the end of the grace period may still be unwinding;
            // the store is then closed when its last handle drops (every commit is already durable).
            Err(_) => tracing::warn!("requests still unwinding; the store closes when they end"),
        }
    }
}
