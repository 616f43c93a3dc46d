//! [`Debounce`]: when a template whose inputs changed is rendered.
//!
//! `wait.min` is a quiet period (each change pushes the render back by it) and `wait.max` caps
//! the delay after the first change of a burst, so a steady stream of changes still renders at
//! least once per `wait.max` (consul-template's `wait = "min:max"`). Pure: the caller passes
//! the time in.

use std::time::Duration;

use tokio::time::Instant;

/// The pending render of one template.
#[derive(Debug, Clone)]
pub struct Debounce {
    min: Duration,
    max: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    immediate: bool,
}

impl Debounce {
    /// Nothing pending, with these bounds.
    pub fn new(min: Duration, max: Duration) -> Debounce {
        Debounce {
            min,
            max: max.max(min),
            first: None,
            last: None,
            immediate: false,
        }
    }

    /// An input changed at `now`.
    pub fn touch(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Render at once (the first render, or a source change).
    pub fn now(&mut self, now: Instant) {
        self.first = Some(now);
        self.last = Some(now);
        self.immediate = true;
    }

    /// When the pending render is due, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        if self.immediate {
            return Some(first);
        }
        Some((last + self.min).min(first + self.max))
    }

    /// Whether a render is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }

    /// The render happened.
    pub fn clear(&mut self) {
        self.first = None;
        self.last = None;
        self.immediate = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_period_and_cap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(100), ms(1000));
        assert_eq!(d.deadline(), None);
        d.touch(t0);
        assert_eq!(d.deadline(), Some(t0 + ms(100)));
        // A change every 50 ms keeps pushing it back, up to the cap.
        for i in 1..40 {
            d.touch(t0 + ms(50 * i));
        }
        assert_eq!(d.deadline(), Some(t0 + ms(1000)));
        assert!(d.due(t0 + ms(1000)));
        d.clear();
        assert!(!d.due(t0 + ms(5000)));
        let mut zero = Debounce::new(ms(0), ms(0));
        zero.touch(t0);
        assert!(zero.due(t0));
    }
}
