//! The process's shutdown token: a cheap, cloneable handle whose
//! `cancelled().await` resolves when the process starts to stop. A leaf
//! module, so the services that watch it (connections, transcode jobs) do
//! not import the lifecycle code that fires it.

use tokio::sync::watch;

/// The shutdown token.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Starts a shutdown (held by `run`).
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A token that never fires (tests, embedding).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // The sender is kept alive forever, so `changed` never errors.
        std::mem::forget(tx);
        Shutdown { rx }
    }

    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the shutdown started.
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_token() {
        let (trigger, token) = shutdown_pair();
        let t2 = token.clone();
        let waiter = tokio::spawn(async move { t2.cancelled().await });
        assert!(!token.is_stopping());
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(token.is_stopping());
        assert!(!Shutdown::never().is_stopping());
    }
}
