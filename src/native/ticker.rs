//! A thread that asks for the configuration's periodic work: Envoy gives
//! HTTP filters no timer, but a scheduler that any thread may ask to run a
//! hook on the main thread. The thread only asks; the work runs there.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The thread, until [`Ticker::stop`] (or drop) stops and joins it.
pub struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Calls `tick` after `first`, then every `every`, on a thread of its
    /// own, until stopped.
    pub fn start(
        first: Duration,
        every: Duration,
        mut tick: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let seen = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sesame-ticker".into())
            .spawn(move || {
                let (lock, wake) = &*seen;
                let mut wait = first;
                loop {
                    let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let (stopped, _) = wake
                        .wait_timeout_while(stopped, wait, |s| !*s)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    tick();
                    wait = every;
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it: no tick comes after this returns.
    pub fn stop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    #[test]
    fn ticks_until_stopped_and_never_after() {
        let ticks = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&ticks);
        let mut ticker = Ticker::start(
            Duration::from_millis(1),
            Duration::from_millis(5),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ticks.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the ticker did not tick");
            std::thread::sleep(Duration::from_millis(2));
        }
        ticker.stop();
        let at_stop = ticks.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(ticks.load(Ordering::SeqCst), at_stop);
    }

    #[test]
    fn stopping_does_not_wait_for_the_next_tick() {
        let mut ticker =
            Ticker::start(Duration::from_secs(60), Duration::from_secs(60), || {}).unwrap();
        let start = Instant::now();
        ticker.stop();
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
